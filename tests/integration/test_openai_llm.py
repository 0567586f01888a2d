"""The OpenAI-compatible language model against a real (fake) server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.llm.openai_compatible import OpenAICompatibleLanguageModel
from engine.runtime.ports.providers import ChatMessage, ProviderConfigError, ProviderError
from tests.helpers.fake_openai import DONE, FakeOpenAI, chunk, running_fake_openai

CONVERSATION = [
    ChatMessage("system", "You are a helpful receptionist."),
    ChatMessage("user", "Hi, are you open today?"),
    ChatMessage("assistant", "Yes, until six."),
    ChatMessage("user", "Great, thanks!"),
]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: no proxy from the environment may stand between us and loopback.
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def model_for(
    server: FakeOpenAI, client: httpx.AsyncClient, **options: Any
) -> OpenAICompatibleLanguageModel:
    api_key = options.pop("api_key", None)
    return OpenAICompatibleLanguageModel.from_options(
        {"base_url": server.base_url, "model": "fake-model", **options},
        client=client,
        api_key=api_key,
    )


async def collect(model: OpenAICompatibleLanguageModel) -> list[str]:
    async with contextlib.aclosing(model.stream_reply(CONVERSATION)) as deltas:
        return [delta async for delta in deltas]


async def failure_of(model: OpenAICompatibleLanguageModel) -> str:
    with pytest.raises(ProviderError) as raised:
        await collect(model)
    return str(raised.value)


# --- streaming -------------------------------------------------------------------------


async def test_reply_streams_as_deltas_in_order(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["We are ", "open ", "until six", ", see you!"])

    deltas = await collect(model_for(server, client))

    assert deltas == ["We are ", "open ", "until six", ", see you!"]
    assert "".join(deltas) == "We are open until six, see you!"


async def test_request_carries_model_messages_and_sampling_options(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["Ok."])

    await collect(model_for(server, client, temperature=0.3, max_tokens=120))

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "You are a helpful receptionist."},
            {"role": "user", "content": "Hi, are you open today?"},
            {"role": "assistant", "content": "Yes, until six."},
            {"role": "user", "content": "Great, thanks!"},
        ],
        "stream": True,
        "temperature": 0.3,
        "max_tokens": 120,
    }


async def test_a_spoken_turn_tells_the_model_how_sure_recognition_was(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["Ok."])
    model = model_for(server, client)
    heard = ChatMessage("user", "a table for four", confidence=0.72)
    async with contextlib.aclosing(model.stream_reply([heard])) as deltas:
        _ = [delta async for delta in deltas]
    (request,) = server.requests
    (message,) = request.body["messages"]
    assert message["content"].startswith("a table for four")
    assert "confidence 0.72" in message["content"]


async def test_unset_sampling_options_are_left_to_the_server(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["Ok."])

    await collect(model_for(server, client))

    assert "temperature" not in server.requests[0].body
    assert "max_tokens" not in server.requests[0].body


async def test_api_key_is_sent_as_bearer_token(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["Ok."])

    await collect(model_for(server, client, api_key="sk-test-123"))

    assert server.requests[0].headers["Authorization"] == "Bearer sk-test-123"


async def test_without_api_key_no_authorization_header_is_sent(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply(["Ok."])

    await collect(model_for(server, client))

    assert "Authorization" not in server.requests[0].headers


async def test_comments_blank_lines_and_textless_chunks_are_skipped(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw(
        [
            ": keep-alive\n\n",
            "event: message\n" + chunk(role="assistant"),
            chunk(""),
            chunk("Hello"),
            'data: {"choices": [{"index": 0, "finish_reason": "stop"}]}\n\n',
            'data: {"choices": [], "usage": {"total_tokens": 9}}\n\n',
            DONE,
        ]
    )

    assert await collect(model_for(server, client)) == ["Hello"]


# --- failures --------------------------------------------------------------------------


async def test_server_error_reports_status_and_body(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.fail(500, "upstream exploded: CUDA out of memory")

    message = await failure_of(model_for(server, client))

    assert "HTTP 500" in message
    assert "CUDA out of memory" in message


async def test_unauthorized_reports_the_servers_error_message(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.fail(401, '{"error": {"message": "Incorrect API key provided", "type": "auth"}}')

    message = await failure_of(model_for(server, client, api_key="sk-wrong"))

    assert "HTTP 401" in message
    assert "Incorrect API key provided" in message
    assert "sk-wrong" not in message


async def test_long_error_body_is_cut_to_an_excerpt(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.fail(503, "overloaded " * 5000)

    message = await failure_of(model_for(server, client))

    assert "HTTP 503" in message
    assert "overloaded" in message
    assert len(message) < 600


async def test_unreachable_server_is_a_provider_error(client: httpx.AsyncClient) -> None:
    async with running_fake_openai() as gone:
        base_url = gone.base_url  # a port that was just ours and now refuses
    model = OpenAICompatibleLanguageModel(client, base_url=base_url, model="m")

    message = await failure_of(model)

    assert "cannot reach" in message
    assert base_url in message


async def test_no_first_token_in_time_is_a_timeout(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    # The role-only chunk arrives; the first text never does.
    server.stall([chunk(role="assistant")])
    started = time.monotonic()

    message = await failure_of(model_for(server, client, first_token_timeout_sec=0.3))

    assert "no first token within 0.3 s" in message
    assert time.monotonic() - started < 5


async def test_no_response_headers_in_time_is_a_timeout(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.hang()

    message = await failure_of(model_for(server, client, first_token_timeout_sec=0.3))

    assert "no first token within 0.3 s" in message
    await asyncio.wait_for(server.client_left.wait(), timeout=2.0)


async def test_reply_longer_than_timeout_is_a_timeout(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply([f"word{i} " for i in range(100)], gap_sec=0.05)
    deltas: list[str] = []

    with pytest.raises(ProviderError, match=r"longer than 0\.4 s"):
        async with contextlib.aclosing(
            model_for(server, client, timeout_sec=0.4).stream_reply(CONVERSATION)
        ) as stream:
            async for delta in stream:
                deltas.append(delta)

    assert deltas[:2] == ["word0 ", "word1 "]  # what arrived in time was passed on
    assert len(deltas) < 100


async def test_malformed_json_is_a_provider_error(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw([chunk("Hel"), 'data: {"choices": [{"delta": {"content": "lo"\n\n', DONE])

    message = await failure_of(model_for(server, client))

    assert "malformed JSON" in message


async def test_malformed_sse_line_is_a_provider_error(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw(['{"choices": [{"delta": {"content": "not SSE"}}]}\n', DONE])

    message = await failure_of(model_for(server, client))

    assert "malformed server-sent event line" in message


async def test_error_event_in_the_stream_is_a_provider_error(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw([chunk("Hi"), 'data: {"error": {"message": "model crashed"}}\n\n'])

    message = await failure_of(model_for(server, client))

    assert "model crashed" in message


async def test_connection_dropped_mid_stream_is_a_provider_error(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw([chunk(role="assistant"), chunk("Half a ")], then="drop")
    received: list[str] = []

    with pytest.raises(ProviderError) as raised:
        async with contextlib.aclosing(model_for(server, client).stream_reply(CONVERSATION)) as s:
            async for delta in s:
                received.append(delta)

    assert received == ["Half a "]
    assert "broke mid-reply" in str(raised.value)


async def test_stream_ending_without_done_is_a_provider_error(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.raw([chunk(role="assistant"), chunk("Cut")])

    message = await failure_of(model_for(server, client))

    assert "ended before data: [DONE]" in message


# --- barge-in --------------------------------------------------------------------------


async def test_closing_early_tears_down_the_request(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    server.reply([f"word{i} " for i in range(200)], gap_sec=0.02)  # ~4 s if read to the end
    model = model_for(server, client)

    async with contextlib.aclosing(model.stream_reply(CONVERSATION)) as deltas:
        first = await anext(deltas)
    # aclosing has returned: the generator is closed, and so must the request be.

    assert first == "word0 "
    await asyncio.wait_for(server.client_left.wait(), timeout=2.0)
    assert server.events_sent < 200


async def test_the_client_stays_usable_after_an_early_close(
    server: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    model = model_for(server, client)
    server.reply([f"word{i} " for i in range(200)], gap_sec=0.02)
    async with contextlib.aclosing(model.stream_reply(CONVERSATION)) as deltas:
        await anext(deltas)

    server.reply(["Next ", "turn."])

    assert await collect(model) == ["Next ", "turn."]


# --- options ---------------------------------------------------------------------------


def build(options: dict[str, Any]) -> OpenAICompatibleLanguageModel:
    return OpenAICompatibleLanguageModel.from_options(
        options, client=httpx.AsyncClient(trust_env=False), api_key=None
    )


VALID = {"base_url": "http://localhost:11434/v1", "model": "llama3.2"}


def test_valid_options_build_a_model() -> None:
    options = {**VALID, "temperature": 0.7, "max_tokens": 256, "timeout_sec": 20}
    options["first_token_timeout_sec"] = 5

    assert isinstance(build(options), OpenAICompatibleLanguageModel)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"model": "m"}, "llm.base_url"),
        ({**VALID, "base_url": "localhost:11434"}, "llm.base_url"),
        ({**VALID, "base_url": "ftp://host/v1"}, "llm.base_url"),
        ({**VALID, "base_url": 42}, "llm.base_url"),
        ({**VALID, "base_url": "https://user:secret@host/v1"}, "llm.base_url"),
        ({"base_url": VALID["base_url"]}, "llm.model"),
        ({**VALID, "model": "  "}, "llm.model"),
        ({**VALID, "temperature": 2.5}, "llm.temperature"),
        ({**VALID, "temperature": "hot"}, "llm.temperature"),
        ({**VALID, "max_tokens": 0}, "llm.max_tokens"),
        ({**VALID, "max_tokens": 40000}, "llm.max_tokens"),
        ({**VALID, "max_tokens": 1.5}, "llm.max_tokens"),
        ({**VALID, "timeout_sec": 0}, "llm.timeout_sec"),
        ({**VALID, "timeout_sec": 601}, "llm.timeout_sec"),
        ({**VALID, "first_token_timeout_sec": True}, "llm.first_token_timeout_sec"),
        ({**VALID, "timeout_sec": 5, "first_token_timeout_sec": 9}, "llm.first_token_timeout_sec"),
        ({**VALID, "temprature": 0.5}, "llm.temprature"),
        ({**VALID, "api_key": "sk-in-yaml"}, "llm.api_key"),
    ],
)
def test_invalid_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ProviderConfigError, match=rf"^{field}: "):
        build(options)


def test_unknown_option_says_so() -> None:
    with pytest.raises(ProviderConfigError, match=r"llm.temprature: unknown option"):
        build({**VALID, "temprature": 0.5})


def test_api_key_in_the_definition_is_refused_and_not_echoed() -> None:
    with pytest.raises(ProviderConfigError) as raised:
        build({**VALID, "api_key": "sk-in-yaml"})

    assert "sk-in-yaml" not in str(raised.value)
    assert "settings" in str(raised.value)
