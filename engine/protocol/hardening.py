"""Assembly of the security and operations parts for the server (issue 11).

``EngineServer`` calls into this module with a few lines: the Converse gate (keys,
admission, metrics), TLS credentials, the session limits, and readiness publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health_pb2

from engine.observability.metrics import EngineMetrics
from engine.protocol.auth import ApiKeyRing
from engine.protocol.gate import ConverseGate
from engine.protocol.limits import Admission, SessionLimits
from engine.settings import Settings

log = logging.getLogger(__name__)


def build_gate(settings: Settings, metrics: EngineMetrics) -> ConverseGate:
    """The Converse interceptor configured from settings."""
    keys = ApiKeyRing(settings.api_keys, settings.api_keys_file)
    if keys.enabled:
        log.info("authentication on: %d API key(s)", len(keys))
    return ConverseGate(
        keys=keys,
        admission=Admission(settings.max_sessions, settings.max_sessions_per_key),
        metrics=metrics,
        start_timeout_sec=settings.start_timeout_sec,
    )


def session_limits(settings: Settings) -> SessionLimits:
    """The per-session limits from settings."""
    return SessionLimits(
        idle_timeout_sec=settings.idle_timeout_sec,
        max_session_sec=settings.max_session_sec,
        max_utterance_ms=settings.max_utterance_ms,
        input_rate_allowance_ms=settings.input_rate_allowance_ms,
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS with ENGINE_TLS_CLIENT_CA) credentials; None for plaintext."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    if settings.tls_client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=settings.tls_client_ca.read_bytes(),
        require_client_auth=True,
    )


class Readiness:
    """Publishes the readiness health status of the Converse service.

    ``voiceengine.v1.VoiceEngineService`` is NOT_SERVING while every session slot is
    taken (and from shutdown on), so a balancer sends new calls elsewhere; the overall
    service ``""`` is liveness and stays SERVING until shutdown.
    """

    def __init__(self, health: object, service: str, admission: Admission) -> None:
        self._health = health
        self._service = service
        self._admission = admission
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish(), name="readiness")

    async def stop(self) -> None:
        """Stop publishing (shutdown sets NOT_SERVING itself)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _publish(self) -> None:
        serving: bool | None = None
        while True:
            await self._admission.changed.wait()
            self._admission.changed.clear()
            now = not self._admission.full
            if now != serving:
                serving = now
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await self._health.set(self._service, status)  # type: ignore[attr-defined]
