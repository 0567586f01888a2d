"""Fixtures of the security and operations tests (issue 11)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine.server import EngineServer, bootstrap
from engine.settings import Settings

StartServer = Callable[..., Awaitable[EngineServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Like ``start_engine``, but returns the EngineServer (its ports, metrics, gate)."""
    servers: list[EngineServer] = []

    async def start(**env: str) -> EngineServer:
        base = {
            "ENGINE_HOST": "127.0.0.1",
            "ENGINE_PORT": "0",
            "BACKEND_MODE": "disabled",
            "HISTORY_SPOOL_PATH": str(tmp_path / f"server-spool-{len(servers)}.sqlite3"),
            "ENGINE_OUTPUT_AUDIO_LEAD_MS": "3600000",
            "ENGINE_SHUTDOWN_GRACE_SEC": "1",
            "ENGINE_METRICS_PORT": "0",
        }
        base.update(env)
        server = EngineServer(await bootstrap(Settings.from_env(base)))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


def target_of(server: EngineServer) -> str:
    """The loopback target of a started server."""
    return f"127.0.0.1:{server.port}"
