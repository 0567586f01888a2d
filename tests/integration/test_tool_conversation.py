"""Tool calls over the real gRPC server and generated stubs: a backend tool, a client tool
(tool_call answered by tool_result), transfer; events, metrics and history."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from engine.runtime.ports.control_plane import ToolInvocation
from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.converse import ConverseClient
from tests.helpers.fakes import FakeControlPlane

BOOK_SCHEMA = {
    "type": "object",
    "properties": {"party_size": {"type": "integer"}, "date": {"type": "string"}},
    "required": ["party_size", "date"],
}
ASSISTANT = {
    "id": "desk",
    "name": "Desk",
    "tools": [
        {"name": "book_table", "parameters": BOOK_SCHEMA},
        {"name": "crm_lookup", "executor": "client", "timeout_ms": 10000},
        {"name": "transfer", "executor": "engine"},
    ],
    "llm": {
        "provider": "scripted",
        "rules": [
            {
                "patterns": [r"table for (?P<party>\w+) (?P<day>tomorrow|today)"],
                "tool": {
                    "name": "book_table",
                    "arguments": {"party_size": "{party}", "date": "{day}"},
                },
                "reply": "Booked {result.booking_id} for {result.party_size}.",
            },
            {
                "patterns": [r"\bwho am i\b"],
                "tool": "crm_lookup",
                "reply": "You are {result.name}.",
                "error_reply": "I could not find you.",
            },
            {
                "patterns": [r"\bperson\b"],
                "say": "Putting you through.",
                "tool": {"name": "transfer", "arguments": {"target": "front-desk"}},
                "reply": "Transferring.",
            },
        ],
    },
}


class BookingPlane(FakeControlPlane):
    """The fake backend with a booking tool."""

    def __init__(self) -> None:
        super().__init__({"desk": ASSISTANT})
        self.invocations: list[ToolInvocation] = []

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        self.invocations.append(invocation)
        return {"booking_id": "B0001", **invocation.arguments}


@pytest.fixture
async def plane() -> BookingPlane:
    return BookingPlane()


@pytest.fixture
async def client(
    plane: BookingPlane, tmp_path: Path, channel_to: Callable[[str], grpc.aio.Channel]
) -> AsyncIterator[ConverseClient]:
    settings = Settings.from_env(
        {"ENGINE_HOST": "127.0.0.1", "ENGINE_PORT": "0", "HISTORY_SPOOL_PATH": ""}
    )
    server = EngineServer(await bootstrap(settings, control_plane=plane))
    port = await server.start()
    try:
        client = ConverseClient(channel_to(f"127.0.0.1:{port}"))
        client.start("desk", options=pb.SessionOptions(text_only=True))
        await client.until("started")
        yield client
    finally:
        await server.shutdown()


async def reply_text(client: ConverseClient) -> str:
    text = ""
    while (message := await client.next()).WhichOneof("event") != "response_done":
        if message.HasField("assistant_text"):
            text += message.assistant_text.delta
    return text


async def test_a_backend_tool_runs_once_reports_progress_and_is_in_the_history(
    client: ConverseClient, plane: BookingPlane
) -> None:
    client.send(text=pb.TextInput(text="a table for four tomorrow"))
    assert (await reply_text(client)).strip() == "Booked B0001 for 4."
    kinds = [m.WhichOneof("event") for m in client.received]
    assert kinds.index("tool_started") < kinds.index("tool_finished")
    finished = next(m.tool_finished for m in client.received if m.HasField("tool_finished"))
    assert finished.name == "book_table" and finished.outcome == pb.TOOL_OUTCOME_OK
    assert finished.executor == "backend"
    metrics = (await client.until("metrics")).metrics
    assert metrics.HasField("tool_ms")
    [invocation] = plane.invocations
    assert invocation.arguments == {"party_size": 4, "date": "tomorrow"}
    assert invocation.idempotency_key == f"{invocation.call_id}:{finished.tool_call_id}"
    client.send(end=pb.EndSession())
    await client.drain()
    started, tool = [e for e in plane.entries if e.role == "tool"]
    assert started.text == "book_table -> started"
    assert tool.text == "book_table -> ok"
    assert tool.metadata["result"]["booking_id"] == "B0001"
    assert [e.role for e in plane.entries] == ["user", "tool", "tool", "assistant"]


async def test_a_client_tool_is_answered_with_tool_result(client: ConverseClient) -> None:
    client.send(text=pb.TextInput(text="who am I"))
    tool_call = (await client.until("tool_call")).tool_call
    assert tool_call.name == "crm_lookup" and tool_call.deadline_ms == 10000
    assert json.loads(tool_call.arguments_json) == {}
    client.send(tool_result=pb.ToolResult(tool_call_id="unknown", result_json="{}"))
    error = (await client.until("error")).error
    assert error.code == "invalid_tool_result"
    client.send(
        tool_result=pb.ToolResult(
            tool_call_id=tool_call.tool_call_id, result_json='{"name": "Ada"}'
        )
    )
    assert (await reply_text(client)).strip() == "You are Ada."
    client.send(
        tool_result=pb.ToolResult(
            tool_call_id=tool_call.tool_call_id, result_json='{"name": "Bob"}'
        )
    )
    assert (await client.until("error")).error.code == "invalid_tool_result"  # repeated
    client.send(end=pb.EndSession())
    await client.until("ended")
    assert await client.status() == grpc.StatusCode.OK


async def test_transfer_reaches_the_client_with_its_target(client: ConverseClient) -> None:
    client.send(text=pb.TextInput(text="a person please"))
    transfer = (await client.until("transfer")).transfer
    assert transfer.target == "front-desk"
    await client.until("response_done")
    said = "".join(m.assistant_text.delta for m in client.received if m.HasField("assistant_text"))
    assert said.strip() == "Putting you through."
