"""Server assembly: bootstrap (the one place adapters are wired in) and the gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from voiceengine.v1 import converse_pb2, converse_pb2_grpc

from adapters.control_plane.factory import build_control_plane
from adapters.providers import EmbeddedProviderFactory
from engine.protocol.servicer import ConverseServicer
from engine.runtime.history.bridge import HistoryBridge
from engine.runtime.ports.control_plane import ControlPlane
from engine.runtime.session import SessionManager
from engine.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = converse_pb2.DESCRIPTOR.services_by_name["VoiceEngineService"].full_name


@dataclass
class Engine:
    """Everything one engine process shares across sessions."""

    settings: Settings
    control_plane: ControlPlane
    history: HistoryBridge
    sessions: SessionManager
    providers: EmbeddedProviderFactory

    async def close(self) -> None:
        """Spool what history is still queued, then release the HTTP clients."""
        await self.history.close()
        await self.control_plane.close()
        await self.providers.close()


async def bootstrap(settings: Settings) -> Engine:
    """Build the real adapters and hand them to the runtime."""
    control_plane = build_control_plane(settings)
    history = HistoryBridge.from_settings(control_plane, settings)
    await history.start()
    providers = EmbeddedProviderFactory(llm_api_key=settings.llm_api_key)
    sessions = SessionManager(
        control_plane,
        providers,
        history,
        max_sessions=settings.max_sessions,
        audio_lead_ms=settings.output_audio_lead_ms,
    )
    return Engine(settings, control_plane, history, sessions, providers)


class EngineServer:
    """A running grpc.aio server: Converse, health and reflection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        max_bytes = engine.settings.max_message_bytes
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # Explicit (it is grpc's default on Linux): `serve --workers N` runs N
                # processes on this one port and the kernel spreads calls over them.
                ("grpc.so_reuseport", 1),
            ]
        )
        converse_pb2_grpc.add_VoiceEngineServiceServicer_to_server(
            ConverseServicer(engine.sessions, idle_timeout_sec=engine.settings.idle_timeout_sec),
            self._server,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = 0

    async def start(self) -> int:
        """Bind and start; return the bound port (useful with ENGINE_PORT=0)."""
        settings = self.engine.settings
        self.port = self._server.add_insecure_port(f"{settings.host}:{settings.port}")
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def shutdown(self) -> None:
        """Drain: NOT_SERVING, no new sessions, live ones get the grace period, then end."""
        grace = self.engine.settings.shutdown_grace_sec
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.engine.sessions.drain(grace)
        # Sessions have sent `ended`; give their streams a moment to flush it.
        await self._server.stop(grace=2.0)
        await self.engine.close()


async def serve(settings: Settings, *, ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    engine = await bootstrap(settings)
    server = EngineServer(engine)
    port = await server.start()
    log.info("voice-engine listening on %s:%d", settings.host, port)
    if ready is not None:
        ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining %d live session(s)", engine.sessions.live_sessions)
    await server.shutdown()
    log.info("stopped")
