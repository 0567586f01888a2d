"""API keys on the real server: missing, wrong and right keys; per-key assistants; health
stays open; reflection follows its setting; the key file is reread on SIGHUP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import expect_rpc_error
from tests.helpers.engine_process import engine_processes, spawn_engine
from tests.helpers.security import KeyedClient, error_reason

ChannelTo = Callable[[str], grpc.aio.Channel]
KEY = "k-3c7e1f0a9b2d4e6f8a1c3e5b7d9f0a2c"


async def test_a_missing_key_is_unauthenticated_with_a_reason(
    start_engine: StartEngine, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    target = await start_engine(ENGINE_API_KEYS=KEY)
    client = KeyedClient(channel_to(target), None)
    client.start("default")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == ("voiceengine.v1", "API_KEY_MISSING")


async def test_a_wrong_key_is_unauthenticated_and_never_logged(
    start_engine: StartEngine, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    target = await start_engine(ENGINE_API_KEYS=KEY)
    client = KeyedClient(channel_to(target), "Bearer not-the-key")
    client.start("default")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error)[1] == "API_KEY_INVALID"
    assert not client.received  # refused before any work: not even `started`
    assert "not-the-key" not in caplog.text and KEY not in caplog.text


async def test_the_right_key_holds_a_conversation(
    start_engine: StartEngine, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    target = await start_engine(ENGINE_API_KEYS=f"other-key,{KEY}")
    client = KeyedClient(channel_to(target), f"Bearer {KEY}")
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(text=pb.TextInput(text="what are your opening hours"))
    done = (await client.until("response_done")).response_done
    assert done.text
    client.send(end=pb.EndSession())
    await client.drain()
    assert await client.status() == grpc.StatusCode.OK
    assert KEY not in caplog.text


async def test_a_key_limited_to_assistants_is_denied_the_others(
    start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# front desk only\n{KEY} front-desk other\n")
    target = await start_engine(ENGINE_API_KEYS_FILE=str(keys))
    client = KeyedClient(channel_to(target), f"Bearer {KEY}")
    client.start("default")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error)[1] == "ASSISTANT_NOT_PERMITTED"


async def test_health_stays_open_and_reflection_follows_its_setting(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    closed = await start_engine(ENGINE_API_KEYS=KEY, ENGINE_REFLECTION="false")
    open_ = await start_engine(ENGINE_API_KEYS=KEY)
    for target in (closed, open_):
        health = health_pb2_grpc.HealthStub(channel_to(target))
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    async def list_services(target: str) -> grpc.StatusCode:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel_to(target))
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert await list_services(closed) == grpc.StatusCode.UNIMPLEMENTED
    assert await list_services(open_) == grpc.StatusCode.OK


async def test_the_key_file_is_reread_on_sighup(tmp_path: Path, channel_to: ChannelTo) -> None:
    keys = tmp_path / "keys"
    keys.write_text("old-key\n")
    async with engine_processes(tmp_path) as spawned:
        engine = await spawn_engine(
            tmp_path,
            ENGINE_API_KEYS_FILE=str(keys),
            HISTORY_SPOOL_PATH=str(tmp_path / "spool.sqlite3"),
        )
        spawned.append(engine)
        channel = channel_to(engine.target)

        async def status_with(key: str) -> grpc.StatusCode:
            client = KeyedClient(channel, f"Bearer {key}")
            client.start("default", options=pb.SessionOptions(text_only=True))
            try:
                await client.until("started")
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            client.send(end=pb.EndSession())
            await client.drain()
            return grpc.StatusCode.OK

        assert await status_with("new-key") == grpc.StatusCode.UNAUTHENTICATED
        keys.write_text("new-key\n")
        engine.proc.send_signal(signal.SIGHUP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await status_with("new-key") != grpc.StatusCode.OK:
            assert loop.time() < deadline, "the new key was never accepted"
            await asyncio.sleep(0.1)
        assert await status_with("old-key") == grpc.StatusCode.UNAUTHENTICATED
        assert not any("new-key" in line or "old-key" in line for line in engine.log)


async def test_a_client_still_writing_when_refused_gets_unauthenticated_every_time(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    # A client that sends its start and a turn at once and is refused mid-write once got
    # "INTERNAL: Internal error from Core" in about 1 call of 5, not its status.
    target = await start_engine(ENGINE_API_KEYS=KEY)
    channel = channel_to(target)
    converse = channel.stream_stream(
        "/voiceengine.v1.VoiceEngineService/Converse",
        request_serializer=pb.ConverseRequest.SerializeToString,
        response_deserializer=pb.ConverseResponse.FromString,
    )
    codes: list[grpc.StatusCode] = []
    for _ in range(100):

        async def requests() -> AsyncIterator[pb.ConverseRequest]:
            yield pb.ConverseRequest(start=pb.StartSession(assistant_id="default"))
            yield pb.ConverseRequest(text=pb.TextInput(text="hello"))

        call = converse(requests(), metadata=(("authorization", "Bearer wrong"),))
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 100


async def test_a_client_late_with_its_start_is_refused_after_it_not_while_it_writes(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    # Refused while its first message is on its way, grpc's client would report INTERNAL
    # (engine/protocol/gate.py waits for the client to stop writing).
    target = await start_engine(ENGINE_API_KEYS=KEY)
    converse = channel_to(target).stream_stream(
        "/voiceengine.v1.VoiceEngineService/Converse",
        request_serializer=pb.ConverseRequest.SerializeToString,
        response_deserializer=pb.ConverseResponse.FromString,
    )
    start_sent = asyncio.Event()

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        await asyncio.sleep(1.0)  # a slow client (a loaded machine, a TLS handshake)
        start_sent.set()
        yield pb.ConverseRequest(start=pb.StartSession(assistant_id="default"))
        await asyncio.Event().wait()  # then it waits for `started`

    call = converse(requests(), metadata=(("authorization", "Bearer wrong"),))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in call:
            pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert start_sent.is_set()  # the refusal waited for the client's first message
