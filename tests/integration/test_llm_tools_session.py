"""An OpenAI-compatible model calling a tool, end to end through the engine: the call
streamed in pieces, run on the engine-only control plane's booking tools, and the call
and its result sent back to the model in the wire format before it answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.fake_openai import FakeOpenAI, tool_chunk

ChannelTo = Callable[[str], grpc.aio.Channel]


@pytest.fixture
async def target(start_engine: StartEngine, llm_server: FakeOpenAI, tmp_path: Path) -> str:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "host.yaml").write_text(
        "id: host\n"
        "llm: {provider: openai, model: house-model, base_url: " + llm_server.base_url + "}\n"
        "tools:\n"
        "  - name: book_table\n"
        "    description: Book a table.\n"
        "    parameters:\n"
        "      type: object\n"
        "      properties: {party_size: {type: integer}, date: {type: string},"
        " time: {type: string}}\n"
        "      required: [party_size, date, time]\n"
    )
    return await start_engine(
        ASSISTANT_LOCAL_CONFIG_DIR=str(agents), LLM_ALLOWED_BASE_URLS=llm_server.base_url
    )


async def test_the_model_books_through_the_engine_and_answers_with_the_result(
    target: str, channel_to: ChannelTo, llm_server: FakeOpenAI
) -> None:
    llm_server.reply_events(
        [
            tool_chunk(0, call_id="call_1", name="book_table", arguments=""),
            tool_chunk(0, arguments='{"party_size": 4, '),
            tool_chunk(0, arguments='"date": "tomorrow", "time": "7 pm"}'),
        ]
    )
    llm_server.then()  # the first request gets the call, the second the answer
    llm_server.reply(["Booked: ", "B0001."])
    client = ConverseClient(channel_to(target))
    client.start("host", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(text=pb.TextInput(text="A table for four tomorrow at 7 pm"))
    finished = (await client.until("tool_finished")).tool_finished
    assert finished.outcome == pb.TOOL_OUTCOME_OK
    done = (await client.until("response_done")).response_done
    assert done.text == "Booked: B0001."

    first, second = llm_server.requests[-2:]
    assert first.body["tools"][0]["function"]["name"] == "book_table"
    messages = second.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"])["party_size"] == 4
    assert messages[2]["tool_call_id"] == "call_1"
    assert json.loads(messages[2]["content"])["booking_id"] == "B0001"
