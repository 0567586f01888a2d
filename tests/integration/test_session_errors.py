"""Each way to get a session wrong ends the RPC with the status docs/protocol.md names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient, expect_rpc_error

ChannelTo = Callable[[str], grpc.aio.Channel]


@pytest.mark.parametrize(
    ("assistant_id", "code", "hint"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "assistant_id is required"),
        ("bad id!", grpc.StatusCode.INVALID_ARGUMENT, "must match"),
        ("../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT, "must match"),
        ("x" * 65, grpc.StatusCode.INVALID_ARGUMENT, "must match"),
        ("nobody-here", grpc.StatusCode.NOT_FOUND, "'nobody-here' not found"),
    ],
)
async def test_bad_assistant_ids_are_rejected(
    client: ConverseClient, assistant_id: str, code: grpc.StatusCode, hint: str
) -> None:
    client.start(assistant_id)
    error = await expect_rpc_error(client)
    assert error.code() == code
    assert hint in (error.details() or "")


async def test_a_path_traversal_id_never_reaches_the_file_system(
    start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    # A valid assistant one directory up: reachable only by escaping the agents dir.
    (tmp_path / "secret.yaml").write_text("id: secret\nname: Secret\n")
    target = await start_engine(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    for assistant_id in ("../secret", "..%2Fsecret", "./../secret"):
        client = ConverseClient(channel_to(target))
        client.start(assistant_id)
        error = await expect_rpc_error(client)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("fmt", "field"),
    [
        ({"input_audio": pb.AudioFormat(sample_rate_hz=44100)}, "start.input_audio"),
        ({"output_audio": pb.AudioFormat(sample_rate_hz=11025)}, "start.output_audio"),
        (
            {"input_audio": pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=16000)},
            "start.input_audio",
        ),
        ({"output_audio": pb.AudioFormat(encoding=7)}, "start.output_audio.encoding"),
    ],
)
async def test_unsupported_audio_formats_are_invalid_arguments(
    client: ConverseClient, fmt: dict[str, pb.AudioFormat], field: str
) -> None:
    client.start("default", **fmt)
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


@pytest.mark.parametrize(
    "first",
    [
        pb.ConverseRequest(audio=pb.AudioInput(data=b"\x00\x00" * 160)),
        pb.ConverseRequest(text=pb.TextInput(text="hello")),
        pb.ConverseRequest(control=pb.Control(action=pb.CONTROL_ACTION_INTERRUPT)),
    ],
)
async def test_anything_before_start_is_a_failed_precondition(
    client: ConverseClient, first: pb.ConverseRequest
) -> None:
    client.send(first)
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "first message must be `start`" in (error.details() or "")


async def test_a_second_start_is_a_failed_precondition_after_ended(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.start("default")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already received" in (error.details() or "")
    ended = client.of_kind("ended")
    assert ended and ended[0].ended.reason == pb.END_REASON_PROTOCOL_ERROR


async def test_a_stream_closed_before_start_is_an_invalid_argument(client: ConverseClient) -> None:
    client.close_requests()
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_oversized_message_is_resource_exhausted(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_MAX_MESSAGE_BYTES="65536")
    client = ConverseClient(channel_to(target))
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(text=pb.TextInput(text="x" * 100_000))
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_audio_chunk_over_200_ms_is_invalid_argument(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(audio=pb.AudioInput(data=b"\x00\x00" * 16000))  # 1 s at 16 kHz
    error = await expect_rpc_error(client)
    # A client mistake, not capacity: retry policies must not retry it.
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "200 ms" in (error.details() or "")


async def test_an_odd_length_linear16_chunk_is_an_invalid_argument(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(audio=pb.AudioInput(data=b"\x00" * 321))
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_empty_text_turn_is_an_error_event_and_the_session_goes_on(
    client: ConverseClient,
) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("response_done")
    client.send(text=pb.TextInput(text="   "))
    error = (await client.until("error")).error
    assert error.code == "invalid_request"
    client.send(text=pb.TextInput(text="what are your opening hours"))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("id: broken\nvad:\n  aggressiveness: 9\n", ["broken.yaml", "vad.aggressiveness"]),
        ("id: broken\nvad: [unclosed\n", ["broken.yaml", "(yaml) line"]),
        ("id: broken\ntts:\n  provider: espeak\n  rate_wpm: 5\n", ["tts.rate_wpm"]),
        ("id: broken\nllm:\n  provider: scripted\n  rules: [{reply: hi}]\n", ["llm.rules[0]"]),
    ],
)
async def test_a_malformed_local_assistant_is_a_failed_precondition_naming_the_field(
    start_engine: StartEngine,
    channel_to: ChannelTo,
    tmp_path: Path,
    yaml_text: str,
    expected: list[str],
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "broken.yaml").write_text(yaml_text)
    target = await start_engine(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    client = ConverseClient(channel_to(target))
    client.start("broken")
    error = await expect_rpc_error(client)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    for needle in expected:
        assert needle in (error.details() or "")


async def test_a_bad_session_does_not_disturb_another(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine()
    good = ConverseClient(channel_to(target))
    good.start("default", options=pb.SessionOptions(text_only=True))
    await good.until("response_done")
    bad = ConverseClient(channel_to(target))
    bad.start("default")
    await bad.until("started")
    bad.send(audio=pb.AudioInput(data=b"\x00" * 3))
    await expect_rpc_error(bad)
    good.send(text=pb.TextInput(text="what are your opening hours"))
    done = (await good.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED


async def test_the_session_limit_is_resource_exhausted(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_MAX_SESSIONS="1")
    first = ConverseClient(channel_to(target))
    first.start("default", options=pb.SessionOptions(text_only=True))
    await first.until("started")
    second = ConverseClient(channel_to(target))
    second.start("default")
    error = await expect_rpc_error(second)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_silent_client_is_ended_after_the_idle_timeout(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_IDLE_TIMEOUT_SEC="1")
    client = ConverseClient(channel_to(target))
    client.start("default", options=pb.SessionOptions(text_only=True))
    ended = (await client.until("ended", timeout=15)).ended
    assert ended.reason == pb.END_REASON_IDLE_TIMEOUT
    assert await client.status() == grpc.StatusCode.OK


async def test_a_client_that_vanishes_frees_its_session_slot(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_MAX_SESSIONS="1", ENGINE_OUTPUT_AUDIO_LEAD_MS="300")
    gone = ConverseClient(channel_to(target))
    gone.start("default")
    await gone.until("audio")
    gone.call.cancel()
    # The slot comes back once the engine has ended the abandoned session.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        again = ConverseClient(channel_to(target))
        again.start("default", options=pb.SessionOptions(text_only=True))
        try:
            await again.until("started")
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert loop.time() < deadline, "the abandoned session was never released"
            await asyncio.sleep(0.05)
