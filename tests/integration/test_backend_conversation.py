"""Control plane end to end: a real engine, the reference backend, real HTTP and SQLite.

The assistant used here exists only where each test puts it (the backend's database or
a temporary directory), never in the bundled agents, so the source a session reports
is the source it really used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient, expect_rpc_error
from tests.helpers.engine_process import http_backend_env
from tests.helpers.refbackend import RefBackend, running_refbackend

ASSISTANT_ID = "remote-desk"
GREETING = "Remote desk here. How can I help?"
PARCEL_REPLY = "Your parcel arrives on Friday."
REFUND_REPLY = "Your refund was sent this morning."
FALLBACK = "Sorry, I only know about parcels and refunds."
REMOTE_DESK: dict[str, Any] = {
    "id": ASSISTANT_ID,
    "name": "Remote desk",
    "greeting": GREETING,
    "llm": {
        "provider": "scripted",
        "rules": [
            {"patterns": [r"\bparcel\b"], "reply": PARCEL_REPLY},
            {"patterns": [r"\brefund\b"], "reply": REFUND_REPLY},
        ],
        "fallback": FALLBACK,
    },
}
TURNS = (("where is my parcel", PARCEL_REPLY), ("did you send my refund", REFUND_REPLY))

ChannelTo = Callable[[str], grpc.aio.Channel]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    """The reference backend, holding the only copy of the `remote-desk` assistant.

    Requested before `start_engine` in every test, so the engines stop before it does.
    """
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(REMOTE_DESK)
        await ref.reset()  # the PUT above is set-up, not something the engine did
        try:
            yield ref
        finally:
            await ref.reset()  # no delayed request may hold up the backend's cleanup


async def backend_engine(start_engine: StartEngine, backend: RefBackend, **env: str) -> str:
    return await start_engine(BACKEND_MODE="http", BACKEND_URL=backend.url, **env)


async def next_response(client: ConverseClient) -> pb.ResponseDone:
    return (await client.until("response_done")).response_done


async def talk(client: ConverseClient) -> list[str]:
    """Greeting plus the two turns of TURNS; returns the reply texts the caller got."""
    replies = [(await next_response(client)).text]
    for question, answer in TURNS:
        client.send(text=pb.TextInput(text=question))
        done = await next_response(client)
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        assert done.text.strip() == answer
        replies.append(done.text)
    return replies


async def end_call(client: ConverseClient) -> pb.SessionEnded:
    client.send(end=pb.EndSession(reason="caller hung up"))
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_CLIENT_ENDED
    assert await client.status() == grpc.StatusCode.OK
    return ended


async def wait_for_call(
    backend: RefBackend,
    call_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll GET /v1/calls/{id} until ``done(call)``; fails with the last state seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[str, Any] | None = None
    while True:
        try:
            last = await backend.get_call(call_id)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
        if last is not None and done(last):
            return last
        if loop.time() > deadline:
            raise AssertionError(f"call {call_id} never reached the expected state: {last}")
        await asyncio.sleep(0.05)


async def test_a_backend_assistant_holds_a_conversation_recorded_in_the_backend(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await backend_engine(start_engine, backend)
    client = ConverseClient(channel_to(target))
    client.start(
        ASSISTANT_ID,
        options=pb.SessionOptions(text_only=True),
        metadata={"caller": "+15550100"},
    )
    started = (await client.until("started")).started
    assert started.assistant.id == ASSISTANT_ID
    assert started.assistant.name == "Remote desk"
    assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
    assert started.call_id and started.session_id

    replies = await talk(client)
    assert replies[0].strip() == GREETING
    ended = await end_call(client)

    call = await wait_for_call(backend, started.call_id, lambda c: c["summary"] is not None)
    assert call["call"]["call_id"] == started.call_id
    assert call["call"]["assistant_id"] == ASSISTANT_ID
    assert call["call"]["session_id"] == started.session_id
    assert call["call"]["metadata"] == {"caller": "+15550100"}
    entries = [(e["sequence"], e["role"], e["text"]) for e in call["transcripts"]]
    assert entries == [
        (1, "assistant", replies[0]),
        (2, "user", TURNS[0][0]),
        (3, "assistant", replies[1]),
        (4, "user", TURNS[1][0]),
        (5, "assistant", replies[2]),
    ]
    assert all(e["call_id"] == started.call_id for e in call["transcripts"])
    assert call["summary"]["end_reason"] == "client_ended"
    # A working backend: everything was acknowledged before `ended` was sent.
    assert ended.history.enabled
    assert (ended.history.enqueued, ended.history.delivered) == (5, 5)
    assert ended.history.pending == ended.history.spooled == ended.history.dropped == 0
    assert ended.history.finalized


async def test_disabled_mode_serves_the_local_file_and_never_calls_the_backend(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / f"{ASSISTANT_ID}.yaml").write_text(yaml.safe_dump(REMOTE_DESK))
    target = await start_engine(
        BACKEND_MODE="disabled", BACKEND_URL=backend.url, ASSISTANT_LOCAL_CONFIG_DIR=str(agents)
    )
    client = ConverseClient(channel_to(target))
    client.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
    started = (await client.until("started")).started
    assert started.assistant.config_source == pb.CONFIG_SOURCE_LOCAL
    assert started.assistant.name == "Remote desk"

    await talk(client)
    ended = await end_call(client)

    assert not ended.history.enabled
    assert (await backend.stats()).get("total", 0) == 0


async def test_a_backend_refusing_writes_does_not_stop_the_conversation(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(**http_backend_env(backend.url))
    client = ConverseClient(channel_to(target))
    client.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
    started = (await client.until("started")).started
    assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
    # The config is in; from now on every request fails.
    await backend.faults(fail_next=1000, status=500)

    replies = await talk(client)
    assert len(replies) == 3
    ended = await end_call(client)

    history = ended.history
    assert history.enabled and not history.finalized
    assert history.enqueued == 5
    assert history.pending + history.spooled > 0
    assert history.dropped == 0
    stats = await backend.stats()
    assert sum(v for k, v in stats.items() if k.startswith("POST /v1/calls")) > 0


async def test_an_assistant_the_backend_does_not_know_is_not_found(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await backend_engine(start_engine, backend)
    client = ConverseClient(channel_to(target))
    client.start("nobody-here")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nobody-here" in (error.details() or "")


async def test_a_backend_failing_twice_then_answering_starts_the_session(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await backend_engine(start_engine, backend)
    await backend.faults(fail_next=2, status=503)
    client = ConverseClient(channel_to(target))
    client.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
    started = (await client.until("started")).started
    assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
    assert (await backend.stats())["GET /v1/assistants/{assistant_id}"] == 3
    assert (await next_response(client)).text.strip() == GREETING
    await end_call(client)


async def test_a_backend_slower_than_the_timeout_is_unavailable(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await backend_engine(start_engine, backend, BACKEND_TIMEOUT_SEC="0.2")
    await backend.faults(delay_sec=1.0)
    client = ConverseClient(channel_to(target))
    client.start(ASSISTANT_ID)
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "no cached copy" in (error.details() or "")


async def test_a_backend_answering_malformed_json_is_unavailable(
    backend: RefBackend,
    start_engine: StartEngine,
    channel_to: ChannelTo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = await backend_engine(start_engine, backend)
    await backend.faults(malformed_next=1)
    client = ConverseClient(channel_to(target))
    client.start(ASSISTANT_ID)
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    # The backend's words stay in the server log; the client gets a safe message.
    assert "not JSON" not in details and "/v1/assistants" not in details, details
    assert "not JSON" in caplog.text and "/v1/assistants/remote-desk" in caplog.text


@pytest.mark.parametrize("outage", ["failing", "stopped"])
async def test_a_backend_outage_after_a_good_session_serves_the_cached_copy(
    outage: str, start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        backend = await stack.enter_async_context(
            running_refbackend(tmp_path / f"{outage}.sqlite3")
        )
        await backend.put_assistant(REMOTE_DESK)
        target = await start_engine(**http_backend_env(backend.url))

        first = ConverseClient(channel_to(target))
        first.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
        started = (await first.until("started")).started
        assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
        await next_response(first)
        await end_call(first)

        if outage == "failing":
            await backend.faults(fail_next=100_000, status=503)
        else:
            await stack.aclose()  # the backend process is gone: connection refused

        second = ConverseClient(channel_to(target))
        second.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
        started = (await second.until("started")).started
        assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND_CACHED
        assert started.assistant.name == "Remote desk"
        assert (await next_response(second)).text.strip() == GREETING
        second.send(text=pb.TextInput(text=TURNS[0][0]))
        assert (await next_response(second)).text.strip() == PARCEL_REPLY
        await end_call(second)
        if outage == "failing":
            await backend.reset()


@pytest.mark.parametrize(
    "assistant_id",
    ["../etc/passwd", "..", "a/../../b", "..%2F..%2Fetc", "remote-desk/../x", "remote desk"],
)
async def test_a_path_traversal_id_is_rejected_before_reaching_the_backend(
    assistant_id: str, backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await backend_engine(start_engine, backend)
    client = ConverseClient(channel_to(target))
    client.start(assistant_id)
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "assistant_id" in (error.details() or "")
    assert (await backend.stats()).get("total", 0) == 0
