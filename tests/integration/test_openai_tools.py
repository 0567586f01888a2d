"""The OpenAI-compatible model's tool calls over real HTTP on 127.0.0.1: tools offered,
streamed call fragments put back together, and calls and results sent back."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from adapters.llm.openai_compatible import OpenAICompatibleLanguageModel
from engine.runtime.ports.providers import ChatMessage, ToolCallRequest, ToolSpec
from tests.helpers.fake_openai import FakeOpenAI, chunk, running_fake_openai, tool_chunk

BOOK = ToolSpec(
    "book_table",
    "Book a table.",
    {"type": "object", "properties": {"party_size": {"type": "integer"}}},
)
WEATHER = ToolSpec("weather", "", {"type": "object", "properties": {}})
USER = [ChatMessage("user", "A table for four, and what's the weather?")]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
async def model(server: FakeOpenAI) -> AsyncIterator[OpenAICompatibleLanguageModel]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield OpenAICompatibleLanguageModel.from_options(
            {"base_url": server.base_url, "model": "fake-model"}, client=http, api_key=None
        )


async def collect(
    model: OpenAICompatibleLanguageModel,
    messages: Sequence[ChatMessage] = USER,
    tools: Sequence[ToolSpec] = (BOOK, WEATHER),
) -> list[str | ToolCallRequest]:
    async with contextlib.aclosing(model.stream_reply(messages, tools)) as items:
        return [item async for item in items]


async def test_tools_are_offered_with_their_schemas_and_tool_choice_auto(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply(["Sure."])
    await collect(model)
    body = server.requests[-1].body
    assert body["tool_choice"] == "auto"
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Book a table.",
            "parameters": {"type": "object", "properties": {"party_size": {"type": "integer"}}},
        },
    }


async def test_no_tools_sends_neither_tools_nor_tool_choice(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply(["Sure."])
    await collect(model, tools=())
    assert "tools" not in server.requests[-1].body
    assert "tool_choice" not in server.requests[-1].body


async def test_arguments_split_across_chunks_make_one_complete_call(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply_events(
        [
            tool_chunk(0, call_id="call_1", name="book_table", arguments=""),
            tool_chunk(0, arguments='{"party'),
            tool_chunk(0, arguments='_size": '),
            tool_chunk(0, arguments="4}"),
        ]
    )
    items = await collect(model)
    assert items == [ToolCallRequest("call_1", "book_table", '{"party_size": 4}')]


async def test_two_parallel_calls_come_whole_in_index_order(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply_events(
        [
            tool_chunk(0, call_id="call_a", name="book_table", arguments='{"party_'),
            tool_chunk(1, call_id="call_b", name="weather", arguments="{"),
            tool_chunk(0, arguments='size": 2}'),
            tool_chunk(1, arguments="}"),
        ]
    )
    items = await collect(model)
    assert items == [
        ToolCallRequest("call_a", "book_table", '{"party_size": 2}'),
        ToolCallRequest("call_b", "weather", "{}"),
    ]


async def test_a_call_followed_by_text_yields_the_text_and_then_the_whole_call(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply_events(
        [
            tool_chunk(0, call_id="call_1", name="weather", arguments="{}"),
            chunk("Let me check "),
            chunk("the weather."),
        ],
        finish="tool_calls",
    )
    items = await collect(model)
    assert items == ["Let me check ", "the weather.", ToolCallRequest("call_1", "weather", "{}")]


async def test_calls_and_results_go_back_in_the_wire_format(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply(["Booked."])
    made = ToolCallRequest("call_1", "book_table", '{"party_size": 4}')
    messages = [
        *USER,
        ChatMessage("assistant", "", tool_calls=(made,)),
        ChatMessage("tool", '{"booking_id": "B0001"}', tool_call_id="call_1"),
    ]
    assert await collect(model, messages) == ["Booked."]
    sent = server.requests[-1].body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "book_table", "arguments": '{"party_size": 4}'},
            }
        ],
    }
    assert sent[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"booking_id": "B0001"}',
    }
    assert json.loads(sent[2]["content"]) == {"booking_id": "B0001"}


async def test_a_generation_cut_before_its_end_yields_no_call(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    # The whole call has streamed, but the generation has not finished when it is cut.
    whole_call = tool_chunk(0, call_id="c", name="weather", arguments="{}")
    server.stall([chunk(role="assistant"), whole_call])
    stream = model.stream_reply(USER, (WEATHER,))
    first = asyncio.create_task(anext(stream))
    async with asyncio.timeout(10):
        while server.events_sent < 2:
            await asyncio.sleep(0.01)
    assert not first.done()
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await stream.aclose()
    async with asyncio.timeout(10):
        await server.client_left.wait()


async def test_a_parallel_batch_at_one_index_is_told_apart_by_id(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    # Ollama streams every call of a parallel batch at index 0; only the ids differ.
    server.reply_events(
        [
            tool_chunk(0, call_id="call_a", name="weather", arguments="{}"),
            tool_chunk(0, call_id="call_b", name="book_table", arguments='{"party_size": 2}'),
        ]
    )
    items = await collect(model)
    assert items == [
        ToolCallRequest("call_a", "weather", "{}"),
        ToolCallRequest("call_b", "book_table", '{"party_size": 2}'),
    ]


async def test_a_call_streamed_without_an_id_gets_a_unique_one(
    server: FakeOpenAI, model: OpenAICompatibleLanguageModel
) -> None:
    server.reply_events([tool_chunk(0, name="weather", arguments="{}")])
    [first] = await collect(model)
    server.reply_events([tool_chunk(0, name="weather", arguments="{}")])
    [second] = await collect(model)
    assert isinstance(first, ToolCallRequest) and isinstance(second, ToolCallRequest)
    assert first.id.startswith("call_") and first.id != second.id
