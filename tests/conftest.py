"""The one way tests start an engine in their own event loop (``start_server``), and the
fixtures built on it. A test that must kill or restart an engine spawns a child process
instead (``tests/helpers/engine_process.py``), with the same defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import yaml

from engine.server import EngineServer, bootstrap
from engine.settings import DEFAULT_AGENTS_DIR, Settings
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import engine_test_env

StartServer = Callable[..., Awaitable[EngineServer]]
StartEngine = Callable[..., Awaitable[str]]


def target_of(server: EngineServer) -> str:
    """The loopback target of a started server."""
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def bundled_agents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled assistants, each waiting for its Whisper final however loaded the CPU is.

    With the shipped ``asr.final_wait_ms`` a loaded machine takes pocketsphinx's final
    instead, so what a test hears would depend on the scheduler. The tests check what is
    heard; benchmarks/asr.py checks how fast.
    """
    agents = tmp_path_factory.mktemp("agents")
    for source in DEFAULT_AGENTS_DIR.glob("*.yaml"):
        document = yaml.safe_load(source.read_text())
        asr = document.get("asr") or {}
        if asr.get("provider") == "pocketsphinx" and asr.get("final", "whisper") == "whisper":
            asr["final_wait_ms"] = 10_000
        (agents / source.name).write_text(yaml.safe_dump(document))
    return agents


@pytest.fixture
async def start_server(tmp_path: Path, bundled_agents: Path) -> AsyncIterator[StartServer]:
    """Start engines in this test's event loop: ``await start_server(ENV=...)``.

    Defaults (``engine_test_env``): loopback, any free port, engine-only mode, a spool and
    a metrics port of its own, an unlimited audio lead so tests do not wait for replies
    to play in real time, and a one-second shutdown grace. All are shut down at the end.
    """
    servers: list[EngineServer] = []

    async def start(**env: str) -> EngineServer:
        base = engine_test_env(
            HISTORY_SPOOL_PATH=str(tmp_path / f"spool-{len(servers)}.sqlite3"),
            ENGINE_METRICS_PORT="0",
            ENGINE_SHUTDOWN_GRACE_SEC="1",
            ASSISTANT_LOCAL_CONFIG_DIR=str(bundled_agents),
        )
        server = EngineServer(await bootstrap(Settings.from_env({**base, **env})))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


@pytest.fixture
def start_engine(start_server: StartServer) -> StartEngine:
    """``start_server`` for tests that need only the target: ``await start_engine(ENV=...)``."""

    async def start(**env: str) -> str:
        return target_of(await start_server(**env))

    return start


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
