"""Call history end to end: a real engine writing to the reference backend under faults.

What the backend's database holds is read straight from its SQLite file (read-only), so
checking it neither goes through the injected faults nor shows up in the request stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from adapters.control_plane.backend import HttpControlPlane
from adapters.history.spool import HistorySpool
from engine.runtime.history import HistoryBridge
from engine.runtime.ports.control_plane import CallRecord, CallSummary
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import engine_processes, http_backend_env, spawn_engine
from tests.helpers.refbackend import RefBackend, running_refbackend

ASSISTANT_ID = "history-desk"
GREETING = "History desk, how can I help?"
REPLIES = {
    "order": "Your order ships tomorrow.",
    "invoice": "Your invoice is in your inbox.",
    "address": "We changed your address.",
}
FALLBACK = "Sorry, I can help with orders, invoices and addresses."
ASSISTANT: dict[str, Any] = {
    "id": ASSISTANT_ID,
    "name": "History desk",
    "greeting": GREETING,
    "llm": {
        "provider": "scripted",
        "rules": [{"patterns": [rf"\b{k}\b"], "reply": v} for k, v in REPLIES.items()],
        "fallback": FALLBACK,
    },
}
QUESTIONS = ("where is my order", "did you send the invoice")
ALWAYS = 1_000_000  # fail_next for "every request from now on"
ChannelTo = Callable[[str], grpc.aio.Channel]
Entry = tuple[int, str, str]  # (sequence, role, text)


class BackendDb:
    """Read-only view of the reference backend's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        uri = f"file:{self.path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return db.execute(sql, args).fetchall()

    def entries(self, call_id: str) -> list[Entry]:
        rows = self._rows(
            "SELECT body FROM transcripts WHERE call_id = ? ORDER BY sequence", call_id
        )
        bodies = [json.loads(body) for (body,) in rows]
        return [(b["sequence"], b["role"], b["text"]) for b in bodies]

    def summaries(self, call_id: str) -> list[dict[str, Any]]:
        rows = self._rows("SELECT body FROM summaries WHERE call_id = ?", call_id)
        return [json.loads(body) for (body,) in rows]

    def has_call(self, call_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM calls WHERE call_id = ?", call_id))

    async def wait_complete(
        self, call_id: str, expected: list[Entry], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll until the call holds ``expected`` and its finalize; returns the summary."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entries, summaries = self.entries(call_id), self.summaries(call_id)
            if entries == expected and summaries:
                assert self.has_call(call_id)
                assert len(summaries) == 1
                return summaries[0]
            if loop.time() > deadline:
                raise AssertionError(
                    f"call {call_id} incomplete after {timeout} s:\n"
                    f"  entries   {entries}\n  expected  {expected}\n  summaries {summaries}"
                )
            await asyncio.sleep(0.05)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    """The reference backend with the test assistant (requested before any engine)."""
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(ASSISTANT)
        await ref.reset()
        try:
            yield ref
        finally:
            await ref.reset()


@pytest.fixture
def db(tmp_path: Path, backend: RefBackend) -> BackendDb:
    return BackendDb(tmp_path / "backend.sqlite3")


async def open_session(client: ConverseClient) -> pb.SessionStarted:
    client.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
    started = (await client.until("started")).started
    assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
    return started


async def response_text(client: ConverseClient) -> str:
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    return done.text


async def converse(client: ConverseClient, questions: tuple[str, ...]) -> list[Entry]:
    """Greeting plus one reply per question; returns the entries the call must hold."""
    entries: list[Entry] = [(1, "assistant", await response_text(client))]
    assert entries[0][2].strip() == GREETING
    for question in questions:
        client.send(text=pb.TextInput(text=question))
        reply = await response_text(client)
        entries.append((len(entries) + 1, "user", question))
        entries.append((len(entries) + 1, "assistant", reply))
    return entries


async def hang_up(client: ConverseClient) -> pb.SessionEnded:
    client.send(end=pb.EndSession(reason="caller hung up"))
    ended = (await client.until("ended")).ended
    assert await client.status() == grpc.StatusCode.OK
    return ended


async def poll(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_backend_down_for_the_whole_call_gets_everything_once_it_is_back(
    backend: RefBackend, db: BackendDb, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(**http_backend_env(backend.url))
    client = ConverseClient(channel_to(target))
    started = await open_session(client)
    await backend.faults(fail_next=ALWAYS, status=503)  # down once the config is in

    expected = await converse(client, QUESTIONS)
    ended = await hang_up(client)
    assert ended.history.enqueued == len(expected)
    assert ended.history.delivered < len(expected)
    assert ended.history.pending + ended.history.spooled > 0
    assert ended.history.dropped == ended.history.dead_lettered == 0
    assert not ended.history.finalized
    assert not db.summaries(started.call_id)

    await backend.reset()  # the backend is back
    summary = await db.wait_complete(started.call_id, expected)
    assert summary["end_reason"] == "client_ended"


@pytest.mark.parametrize("failures", [2, 7])
async def test_writes_answered_500_are_all_delivered_in_the_end(
    failures: int,
    backend: RefBackend,
    db: BackendDb,
    start_engine: StartEngine,
    channel_to: ChannelTo,
) -> None:
    # 2: absorbed by the live retries (3 attempts); 7: more than a retry budget, so the
    # spool and its replayer take over.
    target = await start_engine(**http_backend_env(backend.url))
    client = ConverseClient(channel_to(target))
    started = await open_session(client)
    await backend.faults(fail_next=failures, status=500)

    expected = await converse(client, QUESTIONS)
    ended = await hang_up(client)
    assert ended.history.dropped == ended.history.dead_lettered == 0

    summary = await db.wait_complete(started.call_id, expected)
    assert summary["end_reason"] == "client_ended"
    stats = await backend.stats()
    writes = sum(v for k, v in stats.items() if k.startswith("POST /v1/calls"))
    # create_call + entries + finalize, plus one retry for every injected failure
    assert writes >= failures + len(expected) + 2


async def test_replies_do_not_wait_for_a_slow_backend(
    backend: RefBackend, db: BackendDb, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(**http_backend_env(backend.url))
    client = ConverseClient(channel_to(target))
    started = await open_session(client)
    await backend.faults(delay_sec=3.0)  # every request now takes 3 s to be answered

    expected = await converse(client, QUESTIONS)
    # Every reply is in, yet the backend has stored at most the first write or two.
    stored = db.entries(started.call_id)
    assert len(stored) < len(expected), stored

    async def a_write_is_in_flight() -> bool:
        stats = await backend.stats()
        arrived = stats.get("POST /v1/calls", 0) + stats.get(
            "POST /v1/calls/{call_id}/transcripts", 0
        )
        stored_writes = int(db.has_call(started.call_id)) + len(db.entries(started.call_id))
        return arrived > stored_writes

    await poll(a_write_is_in_flight, "a history write held up by the slow backend")

    await backend.faults(delay_sec=0.0)
    await hang_up(client)
    summary = await db.wait_complete(started.call_id, expected)
    assert summary["end_reason"] == "client_ended"


async def test_a_burst_through_a_tiny_queue_loses_nothing(
    backend: RefBackend,
    db: BackendDb,
    start_engine: StartEngine,
    channel_to: ChannelTo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.runtime.history")
    target = await start_engine(**http_backend_env(backend.url, HISTORY_QUEUE_MAX_SIZE="2"))
    client = ConverseClient(channel_to(target))
    started = await open_session(client)
    # Each write now takes 0.3 s while a turn takes milliseconds: the queue overflows.
    await backend.faults(delay_sec=0.3)

    questions = (*QUESTIONS, "what about my address", "order again", "one more invoice")
    expected = await converse(client, questions)
    assert len(expected) == 11
    assert "history queue full" in caplog.text  # the burst really overflowed the queue

    await backend.faults(delay_sec=0.0)
    ended = await hang_up(client)
    assert ended.history.enqueued == len(expected)
    assert ended.history.dropped == ended.history.dead_lettered == 0
    summary = await db.wait_complete(started.call_id, expected)
    assert summary["end_reason"] == "client_ended"


async def test_a_call_cut_by_sigkill_is_completed_and_finalized_after_a_restart(
    backend: RefBackend, db: BackendDb, tmp_path: Path
) -> None:
    env = http_backend_env(backend.url, tmp_path / "engine-spool.sqlite3")
    async with engine_processes(tmp_path) as spawned:
        first = await spawn_engine(tmp_path, **env)
        spawned.append(first)
        async with grpc.aio.insecure_channel(first.target) as channel:
            client = ConverseClient(channel)
            started = await open_session(client)
            await backend.faults(fail_next=ALWAYS, status=503)
            expected = await converse(client, QUESTIONS)
            await client.until("metrics")  # the last reply's turn is over and recorded
            assert await first.kill() == -9  # mid-call: no `end`, no shutdown code

        assert not db.summaries(started.call_id)
        assert len(db.entries(started.call_id)) < len(expected)

        await backend.reset()
        second = await spawn_engine(tmp_path, **env)
        spawned.append(second)
        summary = await db.wait_complete(started.call_id, expected, timeout=30)
        assert summary["end_reason"] == "engine_restarted"
        assert summary["call_id"] == started.call_id


async def test_a_graceful_shutdown_with_the_backend_down_leaves_the_call_to_the_next_process(
    backend: RefBackend, db: BackendDb, tmp_path: Path
) -> None:
    env = http_backend_env(
        backend.url, tmp_path / "engine-spool.sqlite3", ENGINE_SHUTDOWN_GRACE_SEC="0.5"
    )
    async with engine_processes(tmp_path) as spawned:
        first = await spawn_engine(tmp_path, **env)
        spawned.append(first)
        async with grpc.aio.insecure_channel(first.target) as channel:
            client = ConverseClient(channel)
            started = await open_session(client)
            await backend.faults(fail_next=ALWAYS, status=503)
            expected = await converse(client, QUESTIONS)
            first.proc.send_signal(signal.SIGTERM)
            ended = (await client.until("ended")).ended
            assert ended.reason == pb.END_REASON_SERVER_SHUTDOWN
            assert ended.history.pending + ended.history.spooled > 0
            assert ended.history.dropped == 0
        assert await asyncio.wait_for(first.proc.wait(), 30) == 0
        assert not db.summaries(started.call_id)

        await backend.reset()
        second = await spawn_engine(tmp_path, **env)
        spawned.append(second)
        summary = await db.wait_complete(started.call_id, expected, timeout=30)
        assert summary["end_reason"] == "server_shutdown"


async def vanish_mid_call(
    how: str, backend: RefBackend, db: BackendDb, start_engine: StartEngine
) -> dict[str, Any]:
    """A call whose caller disappears without `end`; returns its finalize once stored."""
    target = await start_engine(**http_backend_env(backend.url))
    channel = grpc.aio.insecure_channel(target)
    try:
        client = ConverseClient(channel)
        started = await open_session(client)
        expected = await converse(client, QUESTIONS[:1])
        if how == "cancel":
            client.call.cancel()
    finally:
        await channel.close()  # for "close_channel", the connection just goes away
    return await db.wait_complete(started.call_id, expected)


@pytest.mark.parametrize("how", ["cancel", "close_channel"])
async def test_a_caller_who_vanishes_still_gets_a_finalized_call(
    how: str, backend: RefBackend, db: BackendDb, start_engine: StartEngine
) -> None:
    summary = await vanish_mid_call(how, backend, db, start_engine)
    assert summary["end_reason"]  # entries, then the finalize, all stored once


@pytest.mark.parametrize("how", ["cancel", "close_channel"])
async def test_a_caller_who_vanishes_is_recorded_as_stream_broken(
    how: str, backend: RefBackend, db: BackendDb, start_engine: StartEngine
) -> None:
    # converse.proto: END_REASON_STREAM_BROKEN = "The client vanished (cancelled the RPC
    # or the connection broke); recorded in history, never seen by the client."
    summary = await vanish_mid_call(how, backend, db, start_engine)
    assert summary["end_reason"] == "stream_broken"


# Finalize is idempotent ------------------------------------------------------------

CALL_ID = "0b7e3c55-1111-4222-8333-444455556666"


@pytest.fixture
async def plane(backend: RefBackend) -> AsyncIterator[HttpControlPlane]:
    adapter = HttpControlPlane(backend.url, timeout_sec=2.0, config_cache_ttl_sec=60.0)
    try:
        yield adapter
    finally:
        await adapter.close()


async def test_finalizing_a_call_twice_through_the_bridge_stores_one_finalize(
    backend: RefBackend, db: BackendDb, plane: HttpControlPlane, tmp_path: Path
) -> None:
    bridge = HistoryBridge(
        plane,
        queue_max_size=100,
        retry_max_attempts=3,
        retry_backoff_sec=0.05,
        finalize_drain_timeout_sec=5.0,
        spool=HistorySpool(tmp_path / "bridge-spool.sqlite3"),
    )
    await bridge.start()
    try:
        history = bridge.open_call(CallRecord(CALL_ID, ASSISTANT_ID, "session-1", 1000.0))
        history.record("user", "where is my order", started_at=1001.0, ended_at=1002.0)
        history.record("assistant", REPLIES["order"], started_at=1002.0, ended_at=1003.0)
        first, second = await asyncio.wait_for(
            asyncio.gather(history.finalize("client_ended"), history.finalize("stream_broken")),
            10,
        )
        assert first == second
        assert first.finalized and first.delivered == 2
        third = await asyncio.wait_for(history.finalize("client_ended"), 10)
        assert third == first
    finally:
        await bridge.close()

    assert db.entries(CALL_ID) == [
        (1, "user", "where is my order"),
        (2, "assistant", REPLIES["order"]),
    ]
    summaries = db.summaries(CALL_ID)
    assert len(summaries) == 1
    assert summaries[0]["end_reason"] == "client_ended"
    assert (await backend.stats())["POST /v1/calls/{call_id}/finalize"] == 1


async def test_resending_a_finalize_through_the_adapter_stores_one_finalize(
    backend: RefBackend, db: BackendDb, plane: HttpControlPlane
) -> None:
    await plane.create_call(CallRecord(CALL_ID, ASSISTANT_ID, "session-1", 1000.0))
    summary = CallSummary(CALL_ID, 1010.0, 10.0, 0, "client_ended")
    # A resend after a lost answer, and two concurrent ones: every one succeeds.
    await plane.finalize_call(summary)
    await plane.finalize_call(summary)
    await asyncio.gather(plane.finalize_call(summary), plane.finalize_call(summary))

    assert (await backend.stats())["POST /v1/calls/{call_id}/finalize"] == 4
    summaries = db.summaries(CALL_ID)
    assert len(summaries) == 1
    assert summaries[0]["end_reason"] == "client_ended"
