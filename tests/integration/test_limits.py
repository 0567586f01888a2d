"""Hard limits on the real server: every one a setting, enforced atomically."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient, expect_rpc_error
from tests.helpers.refbackend import RefBackend, running_refbackend
from tests.helpers.security import KeyedClient, error_reason, metric, scrape
from tests.helpers.speech import chunks, silence, spoken
from tests.integration.conftest import StartServer, talker_agents, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]
PCM16K = AudioFormat(AudioEncoding.LINEAR16, 16000)
READINESS = "voiceengine.v1.VoiceEngineService"
LONG_REPLY = " ".join(f"This is sentence number {n} of a very long answer." for n in range(200))


@pytest.fixture
async def slow_backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(
            {"id": "desk", "name": "Desk", "llm": {"provider": "scripted", "fallback": "Hi."}}
        )
        await ref.reset()
        await ref.faults(delay_sec=0.3)
        try:
            yield ref
        finally:
            await ref.reset()


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(reply.status)


async def until_health(channel: grpc.aio.Channel, service: str, status: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while await health_of(channel, service) != status:
        assert loop.time() < deadline, f"{service!r} never became {status}"
        await asyncio.sleep(0.05)


async def outcome(client: ConverseClient) -> str:
    """'started', or the status code's name of a refused stream."""
    try:
        await client.until("started", timeout=60)
    except grpc.aio.AioRpcError as exc:
        assert error_reason(exc)[1] == "SESSION_LIMIT", exc
        return exc.code().name
    return "started"


async def test_a_burst_never_exceeds_the_session_limit_against_a_slow_backend(
    slow_backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(
        BACKEND_MODE="http", BACKEND_URL=slow_backend.url, ENGINE_MAX_SESSIONS="20"
    )
    channel = channel_to(target)
    clients = [ConverseClient(channel) for _ in range(100)]
    for client in clients:
        client.start("desk", options=pb.SessionOptions(text_only=True))
    results = await asyncio.gather(*(outcome(c) for c in clients))
    assert results.count("started") == 20
    assert results.count("RESOURCE_EXHAUSTED") == 80
    # Full: readiness says NOT_SERVING, liveness ("") stays SERVING.
    await until_health(channel, READINESS, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert await health_of(channel, "") == health_pb2.HealthCheckResponse.SERVING
    for client, result in zip(clients, results, strict=True):
        if result == "started":
            client.send(end=pb.EndSession())
            await client.drain()
    await until_health(channel, READINESS, health_pb2.HealthCheckResponse.SERVING)


async def test_sessions_per_api_key_are_limited(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_API_KEYS="key-a,key-b", ENGINE_MAX_SESSIONS_PER_KEY="2")
    channel = channel_to(target)
    held = [KeyedClient(channel, "Bearer key-a") for _ in range(2)]
    for client in held:
        client.start("default", options=pb.SessionOptions(text_only=True))
        await client.until("started")
    third = KeyedClient(channel, "Bearer key-a")
    third.start("default", options=pb.SessionOptions(text_only=True))
    error = await expect_rpc_error(third)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error)[1] == "KEY_SESSION_LIMIT"
    other = KeyedClient(channel, "Bearer key-b")
    other.start("default", options=pb.SessionOptions(text_only=True))
    await other.until("started")


async def test_a_stream_without_start_ends_at_the_start_timeout(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_START_TIMEOUT_SEC="0.5")
    client = ConverseClient(channel_to(target))  # opens the stream, sends nothing
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(error)[1] == "START_TIMEOUT"


async def test_playback_reports_alone_do_not_keep_a_session_alive(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_IDLE_TIMEOUT_SEC="1")
    client = ConverseClient(channel_to(target))
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")

    async def chatter() -> None:
        for _ in range(100):  # bounded: 20 s at most
            client.send(playback=pb.PlaybackProgress(response_id="r-x", played_ms=0))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(chatter())
    try:
        ended = (await client.until("ended")).ended
    finally:
        task.cancel()
    assert ended.reason == pb.END_REASON_IDLE_TIMEOUT
    assert "audio or text" in ended.detail


async def test_a_session_ends_at_its_maximum_duration(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_MAX_SESSION_SEC="1")
    client = ConverseClient(channel_to(target))
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_LIMIT_REACHED
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(error)[1] == "SESSION_MAX_DURATION"


async def test_audio_far_faster_than_real_time_is_a_protocol_error(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_INPUT_RATE_ALLOWANCE_MS="100")
    client = ConverseClient(channel_to(target))
    client.start("default")
    await client.until("started")
    # 200 ms of audio in no time is 200 ms ahead of real time: over the 100 ms allowed.
    # One write, so the client is not still writing when the server closes the stream.
    client.send(audio=pb.AudioInput(data=silence(PCM16K, 200)))
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_PROTOCOL_ERROR
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error)[1] == "INPUT_TOO_FAST"


async def test_an_endless_utterance_is_cut_and_answered(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_MAX_UTTERANCE_MS="1500")
    client = ConverseClient(channel_to(target))
    client.start("default")
    await client.until("started")
    speech = await spoken(
        "what are your opening hours and when do you close on a sunday evening " * 4,
        PCM16K,
        lead_ms=200,
        tail_ms=0,
    )
    for chunk in chunks(speech, PCM16K, ms=100):  # no trailing silence: the caller goes on
        client.send(audio=pb.AudioInput(data=chunk))
    stopped = (await client.until("speech_stopped")).speech_stopped
    final = await client.until("transcript")
    while not final.transcript.is_final:
        final = await client.until("transcript")
    assert final.transcript.text
    done = (await client.until("response_done")).response_done
    assert done.text
    # Cut near the limit, long before the caller stopped (the speech lasts > 10 s).
    assert stopped.offset_ms < 5000


async def test_a_reply_faster_than_the_client_reads_waits_for_it_instead_of_ending_it(
    start_server: StartServer, channel_to: ChannelTo, tmp_path: Path
) -> None:
    """Unpaced output of cached sentences (no synthesis at all) outruns any client."""
    reply = " ".join(f"Here is part {n} of the answer." for n in range(30))  # ~600 chunks
    agents = talker_agents(tmp_path, reply)
    server = await start_server(
        ASSISTANT_LOCAL_CONFIG_DIR=str(agents), ENGINE_MAX_QUEUED_EVENTS="300"
    )
    for attempt in ("synthesized", "from the sentence cache"):
        client = ConverseClient(channel_to(target_of(server)))
        client.start("talker", options=pb.SessionOptions())
        client.send(text=pb.TextInput(text="tell me everything"))
        while True:
            message = await client.next(30)
            if message.WhichOneof("event") == "response_done" and message.response_done.text:
                break
            await asyncio.sleep(0.002)  # a client slower than the engine
        assert message.response_done.status == pb.RESPONSE_STATUS_COMPLETED, attempt
        assert len(client.of_kind("audio")) > 500, attempt
        client.send(end=pb.EndSession())
        await client.drain()
        assert await client.status() == grpc.StatusCode.OK


async def test_a_client_that_does_not_read_is_ended_with_a_clear_status(
    start_server: StartServer, channel_to: ChannelTo, tmp_path: Path
) -> None:
    agents = talker_agents(tmp_path, LONG_REPLY)
    server = await start_server(
        ASSISTANT_LOCAL_CONFIG_DIR=str(agents), ENGINE_MAX_QUEUED_EVENTS="50"
    )
    client = ConverseClient(channel_to(target_of(server)))
    client.start("talker")
    client.send(text=pb.TextInput(text="tell me everything"))
    # Read nothing until the engine has ended the session on its side.
    assert server.metrics_port is not None
    port = server.metrics_port
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        ended = metric(
            await asyncio.to_thread(scrape, port),
            "voiceengine_sessions_ended_total",
            reason="END_REASON_LIMIT_REACHED",
        )
        if ended:
            break
        assert loop.time() < deadline, "the engine kept buffering for a client that does not read"
        await asyncio.sleep(0.1)
    error = await expect_rpc_error(client, timeout=60)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error)[1] == "EVENT_QUEUE_FULL"
    ended_event = client.of_kind("ended")[0].ended
    assert ended_event.reason == pb.END_REASON_LIMIT_REACHED
    # Far less than the 200-sentence reply: the engine stopped producing it.
    assert len(client.of_kind("audio")) < 600
