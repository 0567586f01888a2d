"""Backend-executed tools over HTTP: one POST per attempt, retried inside the tool's timeout.

Runs in the engine process, on the control plane's pooled ``httpx.AsyncClient``. Every
attempt of a call carries the same ``Idempotency-Key``, so a retry after an answer that
was lost (a timeout, a dropped connection) gets the backend's stored result instead of
acting twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from adapters.control_plane.http_answers import (
    describe,
    error_excerpt,
    retry_after_sec,
    status_text,
)
from engine.runtime.ports.control_plane import ToolFailed, ToolInvocation

logger = logging.getLogger(__name__)

# An attempt shorter than this cannot get an answer; stop instead of starting it.
_MIN_ATTEMPT_SEC = 0.05
_BACKOFF = wait_exponential(multiplier=0.05, min=0.05, max=0.5) + wait_random(0, 0.05)


class _TransientToolFailure(Exception):
    """No answer, or a 408/429/5xx: worth another attempt with the same key."""

    def __init__(
        self, message: str, *, timed_out: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.retry_after = retry_after


def tool_path(invocation: ToolInvocation) -> str:
    """``/v1/calls/{call_id}/tools/{name}``, each segment percent-quoted."""
    call_id, name = quote(invocation.call_id, safe=""), quote(invocation.name, safe="")
    return f"/v1/calls/{call_id}/tools/{name}"


def tool_body(invocation: ToolInvocation) -> dict[str, Any]:
    """The request body: who asks, and the arguments."""
    return {
        "tool_call_id": invocation.tool_call_id,
        "assistant_id": invocation.assistant_id,
        "arguments": dict(invocation.arguments),
    }


async def execute_tool_over_http(
    client: httpx.AsyncClient,
    invocation: ToolInvocation,
    *,
    timeout_sec: float,
    attempt_timeout_sec: float,
) -> Any:
    """Run ``invocation`` on the backend and return ``result`` from its 200 answer.

    Connection errors, timeouts, 408, 429 and 5xx are retried with jittered exponential
    backoff (or after ``Retry-After``) while ``timeout_sec`` lasts; each attempt waits at
    most ``attempt_timeout_sec`` and never past that deadline. Raises ToolFailed:
    ``rejected`` for any other 4xx (never retried), ``timeout`` when the last attempt got
    no answer in time, ``unavailable`` when the backend kept failing until no time was
    left (or asked for a Retry-After beyond it) or answered something that is not
    ``{"result": ...}``. Arguments never appear in messages or logs.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_sec

    def out_of_time(state: RetryCallState) -> bool:
        return loop.time() + (state.upcoming_sleep or 0.0) > deadline - _MIN_ATTEMPT_SEC

    retrying = AsyncRetrying(
        stop=out_of_time,
        wait=_wait,
        retry=retry_if_exception_type(_TransientToolFailure),
        reraise=True,
    )
    label = f"tool {invocation.name!r} of call {invocation.call_id}"
    last: _TransientToolFailure | None = None  # what the backend last did
    try:
        async for attempt in retrying:
            with attempt:
                limit = min(attempt_timeout_sec, deadline - loop.time())
                if limit < _MIN_ATTEMPT_SEC and last is not None:
                    raise last  # the backoff ran into the deadline: its last answer stands
                try:
                    result = await _attempt(client, invocation, limit)
                except _TransientToolFailure as failure:
                    last = failure
                    raise
    except _TransientToolFailure as exc:
        attempts = retrying.statistics.get("attempt_number", 1)
        outcome: Literal["timeout", "unavailable"] = "timeout" if exc.timed_out else "unavailable"
        message = f"{label}: {exc} ({attempts} attempt(s) in {loop.time() - started:.2f} s)"
        logger.warning("%s [%s]", message, outcome)
        raise ToolFailed(message, outcome) from None
    except ToolFailed as exc:
        logger.warning("%s: %s [%s]", label, exc, exc.outcome)
        raise
    return result


def _wait(state: RetryCallState) -> float:
    """The backend's Retry-After when it sent one, else the backoff."""
    failure = state.outcome.exception() if state.outcome is not None else None
    if isinstance(failure, _TransientToolFailure) and failure.retry_after is not None:
        return failure.retry_after
    return float(_BACKOFF(state))


async def _attempt(client: httpx.AsyncClient, invocation: ToolInvocation, limit: float) -> Any:
    if limit < _MIN_ATTEMPT_SEC:
        raise _TransientToolFailure("no time left for an attempt", timed_out=True)
    try:
        # httpx timeouts are per phase; this bounds the whole exchange.
        async with asyncio.timeout(limit):
            response = await client.post(
                tool_path(invocation),
                json=tool_body(invocation),
                headers={"Idempotency-Key": invocation.idempotency_key},
                timeout=httpx.Timeout(limit),
            )
    except (TimeoutError, httpx.TimeoutException):
        raise _TransientToolFailure(f"no answer within {limit:.2f} s", timed_out=True) from None
    except httpx.RequestError as exc:
        raise _TransientToolFailure(f"backend unreachable: {describe(exc)}") from None
    return _result(response)


def _result(response: httpx.Response) -> Any:
    """``result`` of a 2xx ``{"result": ...}``; raises for every other answer."""
    status = response.status_code
    if status in (408, 429) or status >= 500:
        raise _TransientToolFailure(
            f"backend answered {status_text(response)}", retry_after=retry_after_sec(response)
        )
    if 400 <= status < 500:
        raise ToolFailed(
            f"backend refused it with {status_text(response)}: {error_excerpt(response)}",
            "rejected",
        )
    if not 200 <= status < 300:
        raise ToolFailed(f"backend answered {status_text(response)}", "unavailable")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or "result" not in document:
        raise ToolFailed('backend answered without a JSON {"result": ...} object', "unavailable")
    return document["result"]
