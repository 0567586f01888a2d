"""An assistant on an OpenAI-compatible LLM, end to end through the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.fake_openai import FakeOpenAI

ChannelTo = Callable[[str], grpc.aio.Channel]


@pytest.fixture
async def target(start_engine: StartEngine, llm_server: FakeOpenAI, tmp_path: Path) -> str:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "concierge.yaml").write_text(
        "id: concierge\n"
        "name: Hotel concierge\n"
        "system_prompt: You are the concierge of a small hotel. Answer in one sentence.\n"
        "llm:\n"
        "  provider: openai\n"
        f"  base_url: {llm_server.base_url}\n"
        "  model: house-model\n"
        "  temperature: 0.2\n"
        "  first_token_timeout_sec: 2\n"
    )
    return await start_engine(
        ASSISTANT_LOCAL_CONFIG_DIR=str(agents),
        LLM_API_KEY="test-key",
        LLM_ALLOWED_BASE_URLS=llm_server.base_url,
    )


async def test_the_reply_streams_from_the_model_with_the_conversation_as_context(
    target: str, channel_to: ChannelTo, llm_server: FakeOpenAI
) -> None:
    client = ConverseClient(channel_to(target))
    client.start("concierge")
    await client.until("started")

    llm_server.reply(["Breakfast is ", "served from seven. ", "Enjoy your stay!"])
    client.send(text=pb.TextInput(text="When is breakfast?"))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert done.text == "Breakfast is served from seven. Enjoy your stay!"
    deltas = [m.assistant_text.delta for m in client.of_kind("assistant_text")]
    assert deltas == ["Breakfast is ", "served from seven. ", "Enjoy your stay!"]
    assert client.of_kind("audio")

    llm_server.reply(["Until eleven."])
    client.send(text=pb.TextInput(text="And checkout?"))
    await client.until("response_done")
    request = llm_server.requests[-1]
    assert request.headers.get("Authorization") == "Bearer test-key"
    assert request.body["model"] == "house-model"
    assert request.body["stream"] is True
    assert [m["role"] for m in request.body["messages"]] == [
        "system", "user", "assistant", "user",
    ]  # fmt: skip
    assert request.body["messages"][2]["content"] == done.text


async def test_a_failing_model_is_an_error_event_and_the_session_goes_on(
    target: str, channel_to: ChannelTo, llm_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    client = ConverseClient(channel_to(target))
    client.start("concierge", options=pb.SessionOptions(text_only=True))
    await client.until("started")

    llm_server.fail(503, '{"error": {"message": "model is loading"}}')
    client.send(text=pb.TextInput(text="Is the pool open?"))
    error = (await client.until("error")).error
    assert error.code == "llm_failed"
    # The model's URL and answer stay in the server log; the client gets the code.
    assert "127.0.0.1" not in error.message and "model is loading" not in error.message
    assert "503" in caplog.text and "model is loading" in caplog.text
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_FAILED

    llm_server.reply(["Yes, until nine."])
    client.send(text=pb.TextInput(text="Is the pool open?"))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    client.send(end=pb.EndSession())
    assert (await client.until("ended")).ended.reason == pb.END_REASON_CLIENT_ENDED


async def test_barge_in_closes_the_model_stream(
    target: str, channel_to: ChannelTo, llm_server: FakeOpenAI
) -> None:
    client = ConverseClient(channel_to(target))
    client.start("concierge", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    llm_server.stall(
        ["data: " + '{"choices": [{"index": 0, "delta": {"content": "Let me "}}]}\n\n']
    )
    client.send(text=pb.TextInput(text="Tell me about the city"))
    await client.until("assistant_text")
    client.send(control=pb.Control(action=pb.CONTROL_ACTION_INTERRUPT))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_INTERRUPTED
    async with asyncio.timeout(5):
        await llm_server.client_left.wait()  # the HTTP stream to the model was torn down
