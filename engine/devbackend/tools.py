"""The reference backend's tool routes: ``POST /v1/calls/{call_id}/tools/{name}``.

Runs in the reference backend process (aiohttp). The booking tools themselves are in
``bookings.py``; this module checks the request, injects tool faults and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from engine.devbackend.bookings import BOOKING_TOOLS
from engine.devbackend.shared import (
    CLOSING_KEY,
    FAULTS_KEY,
    STORE_KEY,
    TODAY_KEY,
    error,
    keyed_json,
    result_response,
)

TOOL_ENTRY_METADATA = ("tool_call_id", "name")


async def execute_tool(request: web.Request) -> web.Response:
    """Run a tool once per Idempotency-Key; a repeat gets the stored answer."""
    faults = request.app[FAULTS_KEY].tools
    if faults.fail_next > 0:
        faults.fail_next -= 1
        headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
        return error(faults.status, "injected tool fault", headers)
    call_id, name = request.match_info["call_id"], request.match_info["name"]
    if name not in BOOKING_TOOLS:
        return error(404, f"no tool {name[:64]!r}; this backend offers {sorted(BOOKING_TOOLS)}")
    parsed = await _tool_request(request, call_id)
    if isinstance(parsed, web.Response):
        return parsed
    key, body = parsed
    hold_sec = faults.take_delay_sec()
    today = request.app[TODAY_KEY]()
    store = request.app[STORE_KEY]
    result = await asyncio.to_thread(store.execute_tool, key, call_id, name, body, today)
    if hold_sec > 0:
        # The tool ran; only its answer is late. Shutdown ends the hold at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.app[CLOSING_KEY].wait(), hold_sec)
    return result_response(result)


async def _tool_request(
    request: web.Request, call_id: str
) -> tuple[str, dict[str, Any]] | web.Response:
    """The idempotency key and the checked body of a tool call, or the 400 to answer."""
    keyed = await keyed_json(request)
    if isinstance(keyed, web.Response):
        return keyed
    key, body = keyed
    for field in ("tool_call_id", "assistant_id"):
        if not isinstance(body.get(field), str) or not body[field]:
            return error(400, f"{field}: must be a non-empty string")
    if not isinstance(body.get("arguments"), dict):
        return error(400, "arguments: must be a JSON object")
    if key != f"{call_id}:{body['tool_call_id']}":
        return error(400, "Idempotency-Key must be <call_id>:<tool_call_id>")
    return key, {field: body[field] for field in ("tool_call_id", "assistant_id", "arguments")}


async def list_bookings(request: web.Request) -> web.Response:
    """``GET /_bookings``: every booking, cancelled ones too (development and tests)."""
    bookings = await asyncio.to_thread(request.app[STORE_KEY].bookings)
    return web.json_response({"bookings": bookings})


def tool_entry_problem(body: dict[str, Any]) -> str | None:
    """Why a ``role: tool`` transcript entry is unusable, or None.

    Its metadata must name the call it records (``tool_call_id``, ``name``); the rest
    (arguments, executor, outcome, result, latency_ms) is stored as sent.
    """
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return "a tool entry needs metadata with tool_call_id and name"
    for field in TOOL_ENTRY_METADATA:
        if not isinstance(metadata.get(field), str) or not metadata[field]:
            return f"metadata.{field}: must be a non-empty string in a tool entry"
    return None
