"""Run the reference control-plane backend on a free 127.0.0.1 port (tests, benchmarks).

Two ways, same handle:
- ``async with running_refbackend(db_path) as backend:`` inside the test's event loop;
- ``with RefBackendThread(db_path) as backend:`` in a background thread with its own
  loop, for synchronous tests or when the engine under test owns the loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from aiohttp import web

from engine.devbackend.app import create_app, start_on_socket


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class RefBackend:
    """Handle on a running reference backend: its URL plus fault and stats controls."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        self.api_key = api_key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, headers=self._headers()) as client:
            response = await client.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json()

    async def faults(self, **settings: Any) -> dict[str, Any]:
        """POST /_faults, e.g. ``faults(fail_next=2, status=500)`` or, for tool calls only,
        ``faults(tool_fail_next=1, tool_status=503)`` / ``faults(tool_delay_ms=1500,
        tool_delay_next=1)``."""
        result: dict[str, Any] = await self._call("POST", "/_faults", json=settings)
        return result

    async def reset(self) -> None:
        """Clear faults and request counters."""
        await self.faults(reset=True)

    async def stats(self) -> dict[str, int]:
        """Request counts per route (``"total"`` counts every /v1 request)."""
        result: dict[str, int] = await self._call("GET", "/_stats")
        return result

    async def put_assistant(self, document: dict[str, Any]) -> None:
        """Store an assistant (PUT /v1/assistants/{id})."""
        await self._call("PUT", f"/v1/assistants/{document['id']}", json=document)

    async def bookings(self) -> list[dict[str, Any]]:
        """GET /_bookings: every booking, cancelled ones too, in the order made."""
        result: dict[str, list[dict[str, Any]]] = await self._call("GET", "/_bookings")
        return result["bookings"]

    async def get_call(self, call_id: str) -> dict[str, Any]:
        """GET /v1/calls/{call_id}: the call, its entries in order and its summary."""
        result: dict[str, Any] = await self._call("GET", f"/v1/calls/{call_id}")
        return result


@asynccontextmanager
async def running_refbackend(
    db_path: Path,
    *,
    seed_dir: Path | None = None,
    api_key: str | None = None,
    today: Callable[[], date] = date.today,
) -> AsyncIterator[RefBackend]:
    """Serve the reference backend in the current event loop for the block's duration."""
    sock = _bound_socket()
    port = sock.getsockname()[1]
    app = create_app(db_path, seed_dir=seed_dir, api_key=api_key, today=today)
    runner = await start_on_socket(app, sock)
    try:
        yield RefBackend(f"http://127.0.0.1:{port}", api_key)
    finally:
        await runner.cleanup()


class RefBackendThread:
    """The reference backend on its own event loop in a daemon thread."""

    def __init__(
        self,
        db_path: Path,
        *,
        seed_dir: Path | None = None,
        api_key: str | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self._db_path, self._seed_dir, self._api_key = db_path, seed_dir, api_key
        self._today = today
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.backend: RefBackend | None = None

    def start(self) -> RefBackend:
        """Start serving; returns the handle (its async helpers run on any loop)."""
        self._thread.start()
        sock = _bound_socket()
        app = create_app(
            self._db_path, seed_dir=self._seed_dir, api_key=self._api_key, today=self._today
        )
        future = asyncio.run_coroutine_threadsafe(start_on_socket(app, sock), self._loop)
        self._runner = future.result(timeout=10)
        self.backend = RefBackend(f"http://127.0.0.1:{sock.getsockname()[1]}", self._api_key)
        return self.backend

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> RefBackend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
