"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for adapter tests.

It records every request (and when it came) and plays the scenario it was last told to: a
streamed reply (optionally slow, or with a first token that takes a while), an HTTP error,
a stall before the first token, raw SSE lines (malformed ones too), or a connection dropped
mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_STALL_LIMIT_SEC = 30.0  # a stalled reply ends by itself at the latest after this
_POLL_SEC = 0.01


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = 0.0  # time.monotonic()

    def user_text(self) -> str:
        """The content of the request's last user message ("" if none)."""
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else ""


@dataclass
class Scenario:
    """What the server does with the next requests."""

    status: int = 200
    error_body: str = ""
    events: list[str] = field(default_factory=list)  # raw SSE text, written one by one
    gap_sec: float = 0.0  # between events
    first_token_sec: float = 0.0  # after the headers and the role chunk, before the rest
    then: str = "end"  # after the events: "end", "stall" (until the client leaves), "drop"
    hold_headers: bool = False  # stall before even the response headers


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> str:
    """One ``data:`` event of a streamed chat completion."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return _event(delta, finish)


def _event(delta: dict[str, Any], finish: str | None) -> str:
    """A streamed chat-completion chunk holding ``delta``, as one ``data:`` event."""
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


def tool_chunk(
    index: int,
    *,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
    content: str | None = None,
) -> str:
    """One ``data:`` event carrying a fragment of a streamed tool call (OpenAI's shape:
    the first fragment of a call has its id, type and name, later ones argument pieces)."""
    fragment: dict[str, Any] = {"index": index}
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    function: dict[str, str] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        fragment["function"] = function
    delta: dict[str, Any] = {"tool_calls": [fragment]}
    if content is not None:
        delta["content"] = content
    return _event(delta, None)


class FakeOpenAI:
    """The server's state: its scenario, the requests seen, and how each stream ended."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.scenario = Scenario()
        self.next_scenarios: list[Scenario] = []  # played first, one per request, in order
        self.requests: list[RecordedRequest] = []
        self.events_sent = 0
        self.client_left = asyncio.Event()  # the client closed the connection mid-reply

    def reply(
        self, deltas: list[str], *, gap_sec: float = 0.0, first_token_sec: float = 0.0
    ) -> None:
        """Stream ``deltas`` like OpenAI: a role-only chunk, the text, finish, [DONE];
        ``first_token_sec`` after the role chunk (a model's time to first token)."""
        events = [chunk(role="assistant"), *(chunk(d) for d in deltas)]
        events += [chunk(finish="stop"), DONE]
        self.scenario = Scenario(events=events, gap_sec=gap_sec, first_token_sec=first_token_sec)

    def reply_events(
        self, events: list[str], *, finish: str = "tool_calls", first_token_sec: float = 0.0
    ) -> None:
        """Stream a role-only chunk, ``events`` (text and tool-call chunks), finish, [DONE]."""
        events = [chunk(role="assistant"), *events, chunk(finish=finish), DONE]
        self.scenario = Scenario(events=events, first_token_sec=first_token_sec)

    def then(self) -> None:
        """Keep the scenario just set for the next request only; set the following one next."""
        self.next_scenarios.append(self.scenario)

    def fail(self, status: int, body: str) -> None:
        """Answer with an HTTP error."""
        self.scenario = Scenario(status=status, error_body=body)

    def stall(self, events: list[str] | None = None) -> None:
        """Send the headers (and ``events``), then nothing until the client leaves."""
        self.scenario = Scenario(events=events or [], then="stall")

    def hang(self) -> None:
        """Accept the request, then send nothing at all (no headers) until the client leaves."""
        self.scenario = Scenario(hold_headers=True)

    def raw(self, events: list[str], *, then: str = "end") -> None:
        """Send exactly these SSE texts, then end, stall or drop the connection."""
        self.scenario = Scenario(events=events, then=then)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {"unparsable": await request.text()}
        received = time.monotonic()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body, received))
        scenario = self.next_scenarios.pop(0) if self.next_scenarios else self.scenario
        if scenario.hold_headers:
            await self._client_left_within(request, _STALL_LIMIT_SEC)
            return web.Response(status=504)
        if scenario.status != 200:
            return web.Response(
                status=scenario.status, text=scenario.error_body, content_type="application/json"
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for index, event in enumerate(scenario.events):
                pause = scenario.gap_sec if index else 0.0
                if index == 1:
                    pause += scenario.first_token_sec
                if pause and await self._client_left_within(request, pause):
                    return response
                await response.write(event.encode())
                self.events_sent += 1
            if scenario.then == "stall":
                await self._client_left_within(request, _STALL_LIMIT_SEC)
                return response
            if scenario.then == "drop":
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write_eof()
        except ConnectionError:
            self.client_left.set()
        except asyncio.CancelledError:
            self.client_left.set()
            raise
        return response

    async def _client_left_within(self, request: web.Request, seconds: float) -> bool:
        """Wait up to ``seconds``; True (and recorded) as soon as the client leaves."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            if request.transport is None or request.transport.is_closing():
                self.client_left.set()
                return True
            await asyncio.sleep(_POLL_SEC)
        return False


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a FakeOpenAI in the current event loop; ``base_url`` ends in ``/v1``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake = FakeOpenAI(f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake._handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield fake
    finally:
        await runner.cleanup()
