"""Generic gRPC tools work against the engine: reflection v1 and v1alpha, Health/List.

buf curl (installed by scripts/test.sh) is the independent client here: it knows nothing
of our proto and learns everything through server reflection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from tests.helpers.client_cli import buf_command

ChannelTo = Callable[[str], grpc.aio.Channel]
SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "voiceengine.v1.VoiceEngineService",
}


async def _buf_curl(target: str, *args: str, data: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *buf_command(), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args,
        *(["--data", data] if data is not None else []),
        f"http://{target}" if args and args[-1] == "--list-methods" else target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_buf_curl_lists_every_method_through_reflection(engine: str, protocol: str) -> None:
    code, out, err = await _buf_curl(engine, "--reflect-protocol", protocol, "--list-methods")
    assert code == 0, err
    methods = set(out.split())
    assert "voiceengine.v1.VoiceEngineService/Converse" in methods
    assert "grpc.health.v1.Health/List" in methods
    assert "grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in methods
    assert {m.split("/")[0] for m in methods} == SERVICES


async def test_buf_curl_calls_health_list_found_through_reflection_v1(engine: str) -> None:
    code, out, err = await _buf_curl(
        f"http://{engine}/grpc.health.v1.Health/List", "--reflect-protocol", "grpc-v1"
    )
    assert code == 0, err
    statuses = json.loads(out)["statuses"]
    assert statuses == {
        "": {"status": "SERVING"},
        "voiceengine.v1.VoiceEngineService": {"status": "SERVING"},
    }


async def test_health_list_answers_without_an_error_in_the_log(
    engine: str, channel_to: ChannelTo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    stub = health_pb2_grpc.HealthStub(channel_to(engine))
    response = await stub.List(health_pb2.HealthListRequest(), timeout=10)
    assert dict(response.statuses) == {
        "": health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING),
        "voiceengine.v1.VoiceEngineService": health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.SERVING
        ),
    }
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_reflection_v1_describes_itself_and_the_contract(
    engine: str, channel_to: ChannelTo
) -> None:
    # v1 and v1alpha share their messages' wire format; v1alpha's classes speak v1 here.
    info = channel_to(engine).stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        for symbol in ("voiceengine.v1.VoiceEngineService", "grpc.reflection.v1.ServerReflection")
    ]
    responses = [r async for r in info(iter(requests), timeout=10)]
    contract, itself = (
        [
            FileDescriptorProto.FromString(blob)
            for blob in r.file_descriptor_response.file_descriptor_proto
        ]
        for r in responses
    )
    assert [f.name for f in contract] == ["voiceengine/v1/converse.proto"]
    assert [s.name for s in contract[0].service] == ["VoiceEngineService"]
    assert [(f.name, f.package) for f in itself] == [
        ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
    ]
    assert [m.input_type for m in itself[0].service[0].method] == [
        ".grpc.reflection.v1.ServerReflectionRequest"
    ]


async def test_buf_curl_holds_a_typed_turn_and_gets_the_whole_reply(engine: str) -> None:
    """buf curl sends its messages, half-closes and prints every response: a generic tool."""
    start = {"start": {"assistantId": "default", "options": {"textOnly": True}}}
    text = {"text": {"text": "where are you located"}}
    code, out, err = await _buf_curl(
        f"http://{engine}/voiceengine.v1.VoiceEngineService/Converse",
        "--reflect-protocol", "grpc-v1",
        data=json.dumps(start) + json.dumps(text),
    )  # fmt: skip
    assert code == 0, err
    events = [json.loads(doc) for doc in _json_documents(out)]
    assert "started" in events[0] and "ended" in events[-1]
    assert events[-1]["ended"]["reason"] == "END_REASON_INPUT_CLOSED"
    done = [e["responseDone"] for e in events if "responseDone" in e]
    assert (
        done[-1]["text"].strip() == "We are at twelve Harbour Street, next to the old lighthouse."
    )


def _json_documents(text: str) -> list[str]:
    """Split buf curl's output (one pretty-printed JSON document per message)."""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    while (pos := _skip_space(text, pos)) < len(text):
        _, end = decoder.raw_decode(text, pos)
        docs.append(text[pos:end])
        pos = end
    return docs


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
