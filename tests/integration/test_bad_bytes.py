"""Bytes that are not a ConverseRequest, and clients that vanish mid-write: a clean status,
a counter, and nothing in the log above DEBUG."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.security import error_reason, metric, scrape
from tests.integration.conftest import StartServer, talker_agents, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]
CONVERSE = "/voiceengine.v1.VoiceEngineService/Converse"
GARBAGE = b"\xff\xff\xff\xff\x0f"  # an unterminated varint: DecodeError


def raw_converse(channel: grpc.aio.Channel, messages: list[bytes]) -> grpc.aio.StreamStreamCall:
    async def requests() -> AsyncIterator[bytes]:
        for message in messages:
            yield message

    method = channel.stream_stream(CONVERSE)  # bytes in, bytes out
    return method(requests())


async def final_error(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    try:
        async with asyncio.timeout(20):
            async for _ in call:
                pass
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the stream ended OK")


def noisy(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno > logging.DEBUG and r.name != "engine.server"
    ]


async def test_garbage_instead_of_start_is_invalid_argument_without_a_traceback(
    start_server: StartServer, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    caplog.clear()
    error = await final_error(raw_converse(channel_to(target_of(server)), [GARBAGE]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error)[1] == "MALFORMED_REQUEST"
    assert len(error.details() or "") < 100
    assert noisy(caplog) == []
    assert server.metrics_port is not None
    samples = await asyncio.to_thread(scrape, server.metrics_port)
    assert metric(samples, "voiceengine_malformed_requests_total") == 1


async def test_garbage_mid_session_ends_it_as_a_protocol_error(
    start_server: StartServer, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    start = pb.ConverseRequest(
        start=pb.StartSession(assistant_id="default", options=pb.SessionOptions(text_only=True))
    )
    caplog.clear()
    call = raw_converse(channel_to(target_of(server)), [start.SerializeToString(), GARBAGE])
    received: list[pb.ConverseResponse] = []
    try:
        async with asyncio.timeout(20):
            async for raw in call:
                received.append(pb.ConverseResponse.FromString(raw))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(exc)[1] == "MALFORMED_REQUEST"
    else:
        raise AssertionError("the stream ended OK")
    assert received[-1].ended.reason == pb.END_REASON_PROTOCOL_ERROR
    assert noisy(caplog) == []


async def test_a_client_cancelling_mid_reply_logs_nothing_above_debug(
    start_server: StartServer,
    channel_to: ChannelTo,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    reply = " ".join(f"Sentence {n} of a long answer." for n in range(60))
    agents = talker_agents(tmp_path, reply)
    server = await start_server(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    caplog.clear()
    for _ in range(5):
        client = ConverseClient(channel_to(target_of(server)))
        client.start("talker")
        client.send(text=pb.TextInput(text="tell me everything"))
        await client.until("audio")
        client.call.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while server.engine.sessions.live_sessions:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    assert noisy(caplog) == []
