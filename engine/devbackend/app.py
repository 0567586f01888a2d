"""The reference control-plane backend: aiohttp routes, bearer auth, fault injection.

It implements docs/control-plane.openapi.yaml for local development and tests; it is
not meant to face the internet (faults and stats are open to anyone holding the key).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from engine.devbackend import tools
from engine.devbackend.shared import (
    API_KEY,
    CLOSING_KEY,
    FAULTS_KEY,
    STORE_KEY,
    TODAY_KEY,
    FaultState,
    error,
    json_object,
    keyed_json,
    result_response,
)
from engine.devbackend.store import DevStore
from engine.runtime.assistant import AssistantConfigError, is_valid_assistant_id, parse_assistant

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    db_path: Path,
    *,
    seed_dir: Path | None = None,
    api_key: str | None = None,
    today: Callable[[], date] = date.today,
) -> web.Application:
    """Build the reference backend; YAML files in ``seed_dir`` (re)load at start-up.

    ``today`` is the server's date the booking tools resolve "tomorrow" against (tests
    pin it).
    """
    app = web.Application(middlewares=[_stats_middleware, _auth_middleware, _fault_middleware])
    store = DevStore(db_path)
    if seed_dir is not None:
        _seed(store, seed_dir)
    app[STORE_KEY] = store
    app[FAULTS_KEY] = FaultState()
    app[API_KEY] = api_key or ""
    app[TODAY_KEY] = today
    app[CLOSING_KEY] = asyncio.Event()

    async def end_holds(app: web.Application) -> None:
        app[CLOSING_KEY].set()

    async def close_store(app: web.Application) -> None:
        app[STORE_KEY].close()

    app.on_shutdown.append(end_holds)
    app.on_cleanup.append(close_store)
    app.router.add_get("/v1/assistants/{assistant_id}", _get_assistant)
    app.router.add_put("/v1/assistants/{assistant_id}", _put_assistant)
    app.router.add_post("/v1/calls", _create_call)
    app.router.add_get("/v1/calls/{call_id}", _get_call)
    app.router.add_post("/v1/calls/{call_id}/transcripts", _append_transcript)
    app.router.add_post("/v1/calls/{call_id}/finalize", _finalize_call)
    app.router.add_post("/v1/calls/{call_id}/tools/{name}", tools.execute_tool)
    app.router.add_post("/_faults", _set_faults)
    app.router.add_get("/_stats", _get_stats)
    app.router.add_get("/_bookings", tools.list_bookings)
    return app


async def serve(
    host: str, port: int, db_path: Path, seed_dir: Path | None, api_key: str | None
) -> None:
    """Run the reference backend until cancelled."""
    runner = web.AppRunner(create_app(db_path, seed_dir=seed_dir, api_key=api_key))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("reference backend on http://%s:%d (db %s)", host, port, db_path)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def start_on_socket(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Start ``app`` on an already bound socket (lets callers use port 0)."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def _seed(store: DevStore, seed_dir: Path) -> None:
    for path in sorted(seed_dir.glob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml") or not is_valid_assistant_id(path.stem):
            continue
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            parse_assistant(document, expected_id=path.stem, origin=str(path))
            # TypeError: YAML values JSON cannot carry (dates, sets) fail here, not later.
            store.put_assistant(path.stem, {**document, "id": path.stem})
        except (yaml.YAMLError, AssistantConfigError, OSError, TypeError, ValueError) as exc:
            # One bad file should not keep the others from being served.
            logger.error("not seeding %s: %s", path, exc)


# Middlewares ---------------------------------------------------------------------


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return f"{request.method} {canonical}"


@web.middleware
async def _stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Counted before auth and faults: tests assert on every request that reached us.
    if request.path.startswith("/v1/"):
        stats = request.app[FAULTS_KEY].stats
        stats[_route_name(request)] += 1
        stats["total"] += 1
    return await handler(request)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[API_KEY]
    if expected:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await handler(request)


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    faults = request.app[FAULTS_KEY]
    if faults.drop_next > 0:
        faults.drop_next -= 1
        if request.transport is not None:
            # Abort = RST without a response; the client sees a protocol error.
            request.transport.abort()
        return web.Response(status=500)
    if faults.delay_sec > 0:
        await asyncio.sleep(faults.delay_sec)
    if faults.fail_next > 0:
        faults.fail_next -= 1
        headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
        return web.json_response(
            {"error": "injected fault"}, status=faults.fail_status, headers=headers
        )
    if faults.malformed_next > 0:
        faults.malformed_next -= 1
        return web.Response(status=200, text="<html>not json", content_type="text/html")
    return await handler(request)


# Fault control -------------------------------------------------------------------


async def _set_faults(request: web.Request) -> web.Response:
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    faults = request.app[FAULTS_KEY]
    try:
        if body.get("reset"):
            faults.reset()
        if "fail_next" in body:
            faults.fail_next = int(body["fail_next"])
            faults.fail_status = int(body.get("status", 500))
            retry_after = body.get("retry_after")
            faults.retry_after = None if retry_after is None else str(retry_after)
        if "drop_next" in body:
            faults.drop_next = int(body["drop_next"])
        if "malformed_next" in body:
            faults.malformed_next = int(body["malformed_next"])
        if "delay_sec" in body:
            faults.delay_sec = float(body["delay_sec"])
        faults.tools.update(body)
    except (TypeError, ValueError) as exc:
        return error(400, f"bad fault value: {exc}")
    return web.json_response(_fault_view(faults))


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[FAULTS_KEY].stats))


def _fault_view(faults: FaultState) -> dict[str, Any]:
    return {
        "fail_next": faults.fail_next,
        "status": faults.fail_status,
        "retry_after": faults.retry_after,
        "drop_next": faults.drop_next,
        "malformed_next": faults.malformed_next,
        "delay_sec": faults.delay_sec,
        **faults.tools.view(),
    }


# /v1 handlers ----------------------------------------------------------------------


async def _get_assistant(request: web.Request) -> web.Response:
    assistant_id = request.match_info["assistant_id"]
    if not is_valid_assistant_id(assistant_id):
        return error(400, "invalid assistant id")
    document = await asyncio.to_thread(request.app[STORE_KEY].get_assistant, assistant_id)
    if document is None:
        return error(404, f"no assistant {assistant_id!r}")
    return web.json_response(document)


async def _put_assistant(request: web.Request) -> web.Response:
    assistant_id = request.match_info["assistant_id"]
    if not is_valid_assistant_id(assistant_id):
        return error(400, "invalid assistant id")
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    try:
        parse_assistant(body, expected_id=assistant_id, origin="body")
    except AssistantConfigError as exc:
        return error(422, str(exc))
    document = {**body, "id": assistant_id}
    await asyncio.to_thread(request.app[STORE_KEY].put_assistant, assistant_id, document)
    return web.json_response(document)


_CALL_FIELDS = {"call_id": str, "assistant_id": str, "session_id": str, "started_at": float}
_ENTRY_FIELDS = {
    "call_id": str, "sequence": int, "role": str, "text": str,
    "started_at": float, "ended_at": float,
}  # fmt: skip
_SUMMARY_FIELDS = {
    "call_id": str, "ended_at": float, "duration_sec": float,
    "turn_count": int, "end_reason": str,
}  # fmt: skip


async def _create_call(request: web.Request) -> web.Response:
    parsed = await _write_request(request, _CALL_FIELDS)
    if isinstance(parsed, web.Response):
        return parsed
    key, body = parsed
    if key != body["call_id"]:
        return error(400, "Idempotency-Key must be the call_id")
    return result_response(await asyncio.to_thread(request.app[STORE_KEY].create_call, key, body))


async def _append_transcript(request: web.Request) -> web.Response:
    parsed = await _write_request(request, _ENTRY_FIELDS)
    if isinstance(parsed, web.Response):
        return parsed
    key, body = parsed
    if body["sequence"] < 1 or body["role"] not in ("user", "assistant", "tool"):
        return error(400, "sequence must be >= 1 and role user, assistant or tool")
    problem = tools.tool_entry_problem(body) if body["role"] == "tool" else None
    if problem is not None:
        return error(400, problem)
    store = request.app[STORE_KEY]
    return result_response(await asyncio.to_thread(store.append_transcript, key, body))


async def _finalize_call(request: web.Request) -> web.Response:
    parsed = await _write_request(request, _SUMMARY_FIELDS)
    if isinstance(parsed, web.Response):
        return parsed
    key, body = parsed
    return result_response(await asyncio.to_thread(request.app[STORE_KEY].finalize_call, key, body))


async def _get_call(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(request.app[STORE_KEY].get_call, request.match_info["call_id"])
    if found is None:
        return error(404, "unknown call")
    return web.json_response(found)


# Helpers -------------------------------------------------------------------------


async def _write_request(
    request: web.Request, required: Mapping[str, type]
) -> tuple[str, dict[str, Any]] | web.Response:
    """The idempotency key and the validated body of a write, or the 400 to answer."""
    keyed = await keyed_json(request)
    if isinstance(keyed, web.Response):
        return keyed
    key, body = keyed
    for name, kind in required.items():
        value = body.get(name)
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, kind) and not isinstance(value, bool)
        )
        if not ok:
            return error(400, f"{name}: must be a {kind.__name__}")
    path_call_id = request.match_info.get("call_id")
    if path_call_id is not None and path_call_id != body["call_id"]:
        return error(400, "call_id in the body does not match the path")
    return key, body
