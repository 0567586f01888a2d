"""Fixtures of the security and operations tests (issue 11)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.conftest import loopback_env

StartServer = Callable[..., Awaitable[EngineServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Like ``start_engine``, but returns the EngineServer (its ports, metrics, gate)."""
    servers: list[EngineServer] = []

    async def start(**env: str) -> EngineServer:
        base = loopback_env(tmp_path / f"server-spool-{len(servers)}.sqlite3")
        base["ENGINE_METRICS_PORT"] = "0"
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


def talker_agents(tmp_path: Path, reply: str) -> Path:
    """An assistants directory with ``talker``, whose every answer is ``reply``."""
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "talker.yaml").write_text(
        f"id: talker\nname: Talker\nllm:\n  provider: scripted\n  fallback: {reply}\n"
    )
    return agents
