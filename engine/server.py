"""Server assembly: bootstrap (the one place adapters are wired in) and the gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2, converse_pb2_grpc

from adapters.asr.runtime import RecognizerRuntime
from adapters.control_plane.factory import build_control_plane, history_enabled
from adapters.history.spool import HistorySpool
from adapters.providers import EmbeddedProviderFactory
from engine.audio.conversion import SoxrAudioCodecs
from engine.observability.metrics import EngineMetrics
from engine.protocol import hardening
from engine.protocol.limits import SessionLimits
from engine.protocol.servicer import ConverseServicer
from engine.protocol.standard_services import HealthService, enable_reflection
from engine.runtime.history.bridge import HistoryBridge
from engine.runtime.ports.audio import AudioCodecs
from engine.runtime.ports.control_plane import ControlPlane
from engine.runtime.ports.history_store import HistoryStore
from engine.runtime.ports.provider_stats import ReportsRecognizerStats
from engine.runtime.ports.providers import ProviderFactory
from engine.runtime.session import SessionManager
from engine.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = converse_pb2.DESCRIPTOR.services_by_name["VoiceEngineService"].full_name


class Providers(ProviderFactory, ReportsRecognizerStats, Protocol):
    """A provider factory that holds shared resources (HTTP clients, the recognizer
    runtime) until ``close``, and reports its recognizers' figures for metrics."""

    async def close(self) -> None: ...

    async def warm_up(self) -> None: ...


@dataclass
class Engine:
    """Everything one engine process shares across sessions."""

    settings: Settings
    control_plane: ControlPlane
    history: HistoryBridge
    sessions: SessionManager
    providers: Providers

    async def close(self) -> None:
        """Spool what history is still queued, then release the HTTP clients."""
        await self.history.close()
        await self.control_plane.close()
        await self.providers.close()


async def bootstrap(
    settings: Settings,
    *,
    control_plane: ControlPlane | None = None,
    providers: Providers | None = None,
    history_store: HistoryStore | None = None,
    codecs: AudioCodecs | None = None,
) -> Engine:
    """Build the real adapters and hand them to the runtime.

    Each keyword is a door for tests: what is passed in is used instead of the adapter
    the settings select. A control plane passed in gets history when HISTORY_ENABLED is
    on; ``history_store`` replaces the SQLite spool at HISTORY_SPOOL_PATH.
    """
    if control_plane is None:
        control_plane = build_control_plane(settings)
        keep_history = history_enabled(settings)
    else:
        keep_history = settings.history_enabled
    if history_store is None and keep_history and settings.history_spool_path is not None:
        history_store = HistorySpool(settings.history_spool_path)
    history = HistoryBridge.from_settings(
        control_plane, settings, store=history_store if keep_history else None, enabled=keep_history
    )
    await history.start()
    if providers is None:
        # One recognizer runtime per engine process: its decoder process, Whisper pool
        # (threads sized for the engine processes sharing the cores) and counters.
        processes = max(1, settings.workers)
        providers = EmbeddedProviderFactory(
            llm_api_key=settings.llm_api_key,
            llm_allowed_base_urls=settings.llm_allowed_base_urls,
            engine_processes=processes,
            recognizer_runtime=RecognizerRuntime(engine_processes=processes),
        )
    sessions = SessionManager(
        control_plane,
        providers,
        history,
        max_sessions=settings.max_sessions,
        audio_lead_ms=settings.output_audio_lead_ms,
        codecs=codecs or SoxrAudioCodecs(),
        max_queued_events=settings.max_queued_events,
        max_context_messages=settings.max_context_messages,
    )
    return Engine(settings, control_plane, history, sessions, providers)


class EngineServer:
    """A running grpc.aio server: Converse, health and reflection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        max_bytes = engine.settings.max_message_bytes
        self.metrics = EngineMetrics()
        self.metrics.watch_history(engine.history.counters)
        self.metrics.watch_recognizer(engine.providers.recognizer_stats)
        self.metrics.watch_early_replies(lambda: engine.sessions.early_replies)
        self.gate = hardening.build_gate(engine.settings, self.metrics)
        self._server = grpc.aio.server(
            interceptors=[self.gate],
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # Explicit (it is grpc's default on Linux): `serve --workers N` runs N
                # processes on this one port and the kernel spreads calls over them.
                ("grpc.so_reuseport", 1),
                *hardening.keepalive_options(engine.settings),
            ],
        )
        converse_pb2_grpc.add_VoiceEngineServiceServicer_to_server(
            ConverseServicer(
                engine.sessions,
                half_close_timeout_sec=engine.settings.half_close_timeout_sec,
                limits=SessionLimits.from_settings(engine.settings),
            ),
            self._server,
        )
        self._health = HealthService()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if engine.settings.reflection_enabled:
            enable_reflection(self._server, (SERVICE_NAME, health.SERVICE_NAME))
        self._readiness = hardening.Readiness(self._health, SERVICE_NAME, self.gate.admission)
        self.port = 0
        self.metrics_port: int | None = None

    async def start(self) -> int:
        """Bind and start; return the bound port (useful with ENGINE_PORT=0)."""
        settings = self.engine.settings
        address = f"{settings.host}:{settings.port}"
        credentials = hardening.server_credentials(settings)
        if credentials is not None:
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._readiness.start()
        if settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(settings.metrics_host, settings.metrics_port)
        return self.port

    async def shutdown(self) -> None:
        """Drain: readiness NOT_SERVING, no new sessions, live ones get the grace period.

        Liveness (the overall service ``""``) stays SERVING while the process drains: a
        draining engine is alive and must not be restarted by a liveness probe.
        """
        grace = self.engine.settings.shutdown_grace_sec
        await self._readiness.stop()
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.engine.sessions.drain(grace)
        # Sessions have sent `ended`; give their streams a moment to flush it.
        await self._server.stop(grace=2.0)
        await self.engine.close()
        self.metrics.close()


async def serve(settings: Settings, *, ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    engine = await bootstrap(settings)
    # Shared models load before the port opens: a first caller must not get a degraded turn.
    await engine.providers.warm_up()
    server = EngineServer(engine)
    port = await server.start()
    log.info("voice-engine listening on %s:%d", settings.host, port)
    if ready is not None:
        ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.gate.keys.reload)
    await stop.wait()
    log.info("shutting down: draining %d live session(s)", engine.sessions.live_sessions)
    await server.shutdown()
    log.info("stopped")
