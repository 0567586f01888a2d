"""What the reference backend's route modules share: app keys, injected faults, JSON helpers.

Runs in the reference backend process (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web

from engine.devbackend.store import DevStore, StoreResult


@dataclass
class ToolFaults:
    """Failures injected into tool calls only (``POST /_faults`` keys ``tool_*``).

    ``fail_next`` answers refuse before the tool runs; a delay holds the answer after
    the tool ran (the booking exists, the answer is late: a caller's timeout).
    """

    fail_next: int = 0
    status: int = 503
    retry_after: str | None = None
    delay_ms: float = 0.0
    delay_next: int | None = None  # None: every answer is delayed until reset

    def take_delay_sec(self) -> float:
        """The hold for the tool call arriving now (counts down ``delay_next``)."""
        if self.delay_ms <= 0 or self.delay_next == 0:
            return 0.0
        if self.delay_next is not None:
            self.delay_next -= 1
        return self.delay_ms / 1000

    def update(self, body: Mapping[str, Any]) -> None:
        """Apply the ``tool_*`` keys of a ``POST /_faults`` body (raises ValueError)."""
        if "tool_fail_next" in body:
            self.fail_next = int(body["tool_fail_next"])
            self.status = int(body.get("tool_status", 503))
            retry_after = body.get("tool_retry_after")
            self.retry_after = None if retry_after is None else str(retry_after)
        if "tool_delay_ms" in body:
            self.delay_ms = float(body["tool_delay_ms"])
            delay_next = body.get("tool_delay_next")
            self.delay_next = None if delay_next is None else int(delay_next)

    def view(self) -> dict[str, Any]:
        """The current tool faults, as ``POST /_faults`` answers them."""
        return {
            "tool_fail_next": self.fail_next,
            "tool_status": self.status,
            "tool_retry_after": self.retry_after,
            "tool_delay_ms": self.delay_ms,
            "tool_delay_next": self.delay_next,
        }


@dataclass
class FaultState:
    """Failures to inject into the next /v1 requests (set through POST /_faults)."""

    fail_next: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    drop_next: int = 0
    malformed_next: int = 0
    delay_sec: float = 0.0
    stats: Counter[str] = field(default_factory=Counter)
    tools: ToolFaults = field(default_factory=ToolFaults)

    def reset(self) -> None:
        """Clear every fault and the request counters."""
        self.fail_next = self.drop_next = self.malformed_next = 0
        self.fail_status, self.retry_after, self.delay_sec = 500, None, 0.0
        self.stats.clear()
        self.tools = ToolFaults()


STORE_KEY = web.AppKey("store", DevStore)
FAULTS_KEY = web.AppKey("faults", FaultState)
API_KEY = web.AppKey("api_key", str)
# The server's date, which "today", "tomorrow" and weekday names resolve against.
TODAY_KEY: web.AppKey[Callable[[], date]] = web.AppKey("today")
# Set when the app shuts down, so held (delayed) answers end at once.
CLOSING_KEY = web.AppKey("closing", asyncio.Event)


async def json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object body, or the 400 to answer."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "body must be JSON")
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    return body


def result_response(result: StoreResult) -> web.Response:
    """A store outcome as an HTTP answer."""
    return web.json_response(result.payload, status=result.status)


async def keyed_json(request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
    """A write's ``Idempotency-Key`` and its JSON object body, or the 400 to answer."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 255:
        return error(400, "Idempotency-Key header is required (1-255 characters)")
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    return key, body


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)
