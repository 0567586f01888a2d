"""Fixtures shared by the integration tests: a real engine on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.converse import ConverseClient

StartEngine = Callable[..., Awaitable[str]]


def loopback_env(spool: Path) -> dict[str, str]:
    """An in-process test engine's settings: loopback, any free port, engine-only mode,
    its own spool, and an unlimited audio lead so tests do not wait for real-time replies."""
    return {
        "ENGINE_HOST": "127.0.0.1",
        "ENGINE_PORT": "0",
        "BACKEND_MODE": "disabled",
        "HISTORY_SPOOL_PATH": str(spool),
        "ENGINE_OUTPUT_AUDIO_LEAD_MS": "3600000",
        "ENGINE_SHUTDOWN_GRACE_SEC": "1",
    }


@pytest.fixture
async def start_engine(tmp_path: Path) -> AsyncIterator[StartEngine]:
    """Start engines in this test's event loop; ``await start_engine(ENV=...)`` -> target.

    Defaults: loopback, any free port, engine-only mode, spool in tmp_path, and an
    unlimited audio lead so tests do not wait for replies to play in real time.
    """
    servers: list[EngineServer] = []

    async def start(**env: str) -> str:
        base = loopback_env(tmp_path / f"spool-{len(servers)}.sqlite3")
        base.update(env)
        server = EngineServer(await bootstrap(Settings.from_env(base)))
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.shutdown()


@pytest.fixture
async def channel_to() -> AsyncIterator[Callable[[str], grpc.aio.Channel]]:
    """Open channels to a target; all are closed at the end of the test."""
    channels: list[grpc.aio.Channel] = []

    def open_channel(target: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()


@pytest.fixture
async def engine(start_engine: StartEngine) -> str:
    """A default engine (engine-only, the bundled assistants)."""
    return await start_engine()


@pytest.fixture
def client(engine: str, channel_to: Callable[[str], grpc.aio.Channel]) -> ConverseClient:
    """A Converse call to the default engine."""
    return ConverseClient(channel_to(engine))
