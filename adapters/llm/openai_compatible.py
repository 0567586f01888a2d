"""An OpenAI-compatible language model: any streaming chat-completions server.

Works with OpenAI, vLLM, Ollama (`http://host:11434/v1`) and llama.cpp's server
(`http://host:8080/v1`): POST ``{base_url}/chat/completions`` with ``"stream": true``
and read the Server-Sent Events, one ``data: {json}`` line per chunk, each carrying
``choices[0].delta.content``, until ``data: [DONE]``. Tools are offered as ``tools``
(``tool_choice: auto``); streamed ``delta.tool_calls`` fragments are put together by
``index`` and each call is yielded whole once the choice finishes.

The httpx client is injected: one pooled client per process, owned (and closed) by
whoever built it. The API key comes from the engine's settings, never from the
assistant definition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import httpx

from adapters.llm.openai_tools import ToolCallAssembler, message_json, tool_json
from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderConfigError,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
    reject_unknown_options,
)

DEFAULT_TIMEOUT_SEC = 30.0
DEFAULT_FIRST_TOKEN_TIMEOUT_SEC = 10.0
_OPTIONS = (
    "base_url",
    "model",
    "temperature",
    "max_tokens",
    "timeout_sec",
    "first_token_timeout_sec",
)
_EXCERPT_CHARS = 300
_SSE_FIELDS = ("data", "event", "id", "retry")
_NAME = "openai-compatible LLM"
_T = TypeVar("_T")


class OpenAICompatibleLanguageModel:
    """A LanguageModel that streams replies from an OpenAI-compatible server.

    ``first_token_timeout_sec`` bounds the wait for the first text delta (connecting,
    the prompt's processing, role-only chunks); ``timeout_sec`` bounds the whole reply,
    measured from the request. Every failure surfaces as ``ProviderError``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_sec: float = DEFAULT_TIMEOUT_SEC,
        first_token_timeout_sec: float = DEFAULT_FIRST_TOKEN_TIMEOUT_SEC,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._timeout_sec = timeout_sec
        self._first_token_timeout_sec = min(first_token_timeout_sec, timeout_sec)

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        *,
        client: httpx.AsyncClient,
        api_key: str | None,
        allowed_base_urls: Sequence[str] = (),
    ) -> OpenAICompatibleLanguageModel:
        """Build from the `llm:` section of an assistant definition.

        ``api_key`` is the engine's (from settings); the definition may not carry one.
        When ``allowed_base_urls`` is set (LLM_ALLOWED_BASE_URLS), ``base_url`` must be
        one of them or below one: the key never goes to a server the operator did not name.
        """
        if "api_key" in options:
            raise ProviderConfigError(
                "llm.api_key: not allowed in an assistant definition;"
                " the API key comes from the engine's settings"
            )
        reject_unknown_options("llm", "openai", options, _OPTIONS)
        base_url = _base_url(options.get("base_url"))
        if allowed_base_urls and not any(
            base_url == allowed or base_url.startswith(allowed + "/")
            for allowed in allowed_base_urls
        ):
            raise ProviderConfigError(
                "llm.base_url: not one of the base URLs this engine allows (LLM_ALLOWED_BASE_URLS)"
            )
        model = options.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ProviderConfigError("llm.model: required, a non-empty string")
        temperature = options.get("temperature")
        if temperature is not None:
            temperature = _number(temperature, "temperature", 0.0, 2.0)
        max_tokens = options.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 1 <= max_tokens <= 32768
        ):
            raise ProviderConfigError("llm.max_tokens: must be an integer from 1 to 32768")
        timeout_sec = _number(options.get("timeout_sec", DEFAULT_TIMEOUT_SEC), "timeout_sec")
        if "first_token_timeout_sec" in options:
            first_token = _number(options["first_token_timeout_sec"], "first_token_timeout_sec")
            if first_token > timeout_sec:
                raise ProviderConfigError(
                    f"llm.first_token_timeout_sec: must not exceed llm.timeout_sec ({timeout_sec})"
                )
        else:
            first_token = min(DEFAULT_FIRST_TOKEN_TIMEOUT_SEC, timeout_sec)
        return cls(
            client,
            base_url=base_url,
            model=model.strip(),
            api_key=api_key or None,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout_sec=timeout_sec,
            first_token_timeout_sec=first_token,
        )

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """Yield the reply's text deltas as the server streams them, and its tool calls.

        Closing the generator closes the HTTP response (and so the connection) at once.
        """
        loop = asyncio.get_running_loop()
        reply_deadline = loop.time() + self._timeout_sec
        first_token_deadline = loop.time() + self._first_token_timeout_sec
        got_token = False
        calls = ToolCallAssembler()
        request = self._client.build_request(
            "POST",
            self._url,
            json=self._body(messages, tools),
            headers=self._headers(),
            # A backstop only: the deadlines below are the real limits, and the shared
            # client's own defaults (5 s) must not cut a slow prompt short.
            timeout=httpx.Timeout(self._timeout_sec),
        )
        # client.send(stream=True) + aclose() in `finally` is client.stream() spelled
        # out, so that the deadline also covers connecting and the response headers.
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout_at(first_token_deadline):
                response = await self._client.send(request, stream=True)
                if not response.is_success:
                    raise ProviderError(
                        f"{_NAME}: HTTP {response.status_code} from POST {self._url}: "
                        f"{await _excerpt(response)}"
                    )
            async with contextlib.aclosing(_generator(response.aiter_lines())) as lines:
                while True:
                    # A deadline per read, never around a yield: the caller's time
                    # between deltas is not ours to cancel.
                    async with asyncio.timeout_at(
                        reply_deadline if got_token else first_token_deadline
                    ):
                        line = await anext(lines, None)
                    if line is None:
                        raise ProviderError(f"{_NAME}: the stream ended before data: [DONE]")
                    payload = _sse_data(line)
                    if payload is None:
                        continue
                    if payload == "[DONE]":
                        for call in calls.finish():
                            yield call
                        return
                    delta, fragments, finished = _parse_chunk(payload)
                    if fragments:
                        got_token = True
                        calls.add(fragments)
                    if delta:
                        got_token = True
                        yield delta
                    if finished:
                        for call in calls.finish():
                            yield call
        except TimeoutError:
            if got_token:
                raise ProviderError(
                    f"{_NAME}: the reply took longer than {self._timeout_sec:g} s"
                ) from None
            raise ProviderError(
                f"{_NAME}: no first token within {self._first_token_timeout_sec:g} s"
            ) from None
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{_NAME}: timed out talking to {self._url}: {exc!r}") from exc
        except httpx.HTTPError as exc:
            if response is None:
                raise ProviderError(f"{_NAME}: cannot reach {self._url}: {_describe(exc)}") from exc
            raise ProviderError(
                f"{_NAME}: the connection to {self._url} broke mid-reply: {_describe(exc)}"
            ) from exc
        finally:
            if response is not None:
                # Unread: httpx drops the connection rather than pooling it, so the
                # server sees the client leave (barge-in stops generation there too).
                await response.aclose()

    def _body(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [message_json(m) for m in messages],
            "stream": True,
        }
        if tools:
            body["tools"] = [tool_json(t) for t in tools]
            body["tool_choice"] = "auto"
        if self._temperature is not None:
            body["temperature"] = self._temperature
        if self._max_tokens is not None:
            body["max_tokens"] = self._max_tokens
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers


def _sse_data(line: str) -> str | None:
    """The payload of a ``data:`` line; None for lines that carry no data."""
    if not line or line.startswith(":"):  # event separator or comment (keep-alive)
        return None
    field, colon, value = line.partition(":")
    if field not in _SSE_FIELDS:
        raise ProviderError(f"{_NAME}: malformed server-sent event line: {_clip(line)}")
    if field != "data":
        return None
    # One optional space follows the colon (SSE spec).
    return value[1:] if colon and value.startswith(" ") else value


def _parse_chunk(payload: str) -> tuple[str, list[Any], bool]:
    """One chunk's ``choices[0]``: its text delta, its tool-call fragments, and whether the
    choice finished (``finish_reason`` set)."""
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"{_NAME}: malformed JSON in the stream ({exc}): {_clip(payload)}"
        ) from None
    if not isinstance(chunk, dict):
        raise ProviderError(f"{_NAME}: unexpected chunk (not an object): {_clip(payload)}")
    error = chunk.get("error")
    if error is not None:  # vLLM and OpenAI report mid-stream failures this way
        message = error.get("message") if isinstance(error, dict) else error
        raise ProviderError(f"{_NAME}: the server reported an error: {_clip(str(message))}")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise ProviderError(f"{_NAME}: unexpected chunk (no choices list): {_clip(payload)}")
    if not choices:  # e.g. a trailing usage-only chunk
        return "", [], False
    choice = choices[0]
    finished = isinstance(choice, dict) and choice.get("finish_reason") is not None
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if delta is None:
        return "", [], finished  # a finish-only chunk
    if not isinstance(delta, dict):
        raise ProviderError(f"{_NAME}: unexpected chunk (delta not an object): {_clip(payload)}")
    fragments = delta.get("tool_calls") or []
    if not isinstance(fragments, list):
        raise ProviderError(f"{_NAME}: unexpected chunk (tool_calls not a list): {_clip(payload)}")
    content = delta.get("content")
    if content is None:  # role-only first chunk, tool calls, finish_reason
        return "", fragments, finished
    if not isinstance(content, str):
        raise ProviderError(f"{_NAME}: unexpected chunk (content not a string): {_clip(payload)}")
    return content, fragments, finished


async def _excerpt(response: httpx.Response) -> str:
    """The start of an error response's body, on one line."""
    raw = b""
    async with contextlib.aclosing(_generator(response.aiter_bytes())) as parts:
        async for part in parts:
            raw += part
            if len(raw) >= 4 * _EXCERPT_CHARS:
                break
    text = raw.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            text = message
    except (ValueError, AttributeError):
        pass
    return _clip(text) or "(empty body)"


def _generator(iterator: AsyncIterator[_T]) -> AsyncGenerator[_T, None]:
    # httpx's aiter_* are async generators typed as AsyncIterator; aclosing needs aclose.
    return cast(AsyncGenerator[_T, None], iterator)


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 3] + "..."


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}" if detail != type(exc).__name__ else detail


def _base_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProviderConfigError(
            "llm.base_url: required, an http(s) URL such as http://localhost:11434/v1"
        )
    try:
        url = httpx.URL(value.strip())
    except httpx.InvalidURL as exc:
        raise ProviderConfigError(f"llm.base_url: invalid URL {value!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ProviderConfigError(f"llm.base_url: must be an http or https URL, not {value!r}")
    if url.userinfo:
        raise ProviderConfigError(
            "llm.base_url: must not carry credentials; the API key comes from the engine's settings"
        )
    if url.query or url.fragment:
        raise ProviderConfigError("llm.base_url: must not have a query or fragment")
    return str(url).rstrip("/")


def _number(value: object, name: str, low: float = 0.1, high: float = 600.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ProviderConfigError(f"llm.{name}: must be a number from {low:g} to {high:g}")
    return float(value)
