"""Assembly of the security and operations parts for the server.

``EngineServer`` calls into this module with a few lines: the Converse gate (keys,
admission, metrics), TLS credentials, keepalive and readiness publishing.
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
        admission=Admission.from_settings(settings),
        metrics=metrics,
        start_timeout_sec=SessionLimits.from_settings(settings).start_timeout_sec,
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


def keepalive_options(settings: Settings) -> list[tuple[str, int]]:
    """HTTP/2 keepalive: accept balancers' pings, and ping to find dead clients.

    Envoy and gateways ping every 10-30 s, also on a connection with no call. grpc's
    server defaults (pings without calls not permitted, at most one per 5 minutes, two
    strikes) answer that with GOAWAY "too_many_pings" and the balancer reconnects. Here
    pings are permitted without calls down to ENGINE_KEEPALIVE_MIN_PING_INTERVAL_SEC;
    faster ones still earn strikes (ENGINE_KEEPALIVE_MAX_PING_STRIKES, 0 = unlimited). The
    server pings every ENGINE_KEEPALIVE_TIME_SEC and closes a connection whose peer does
    not answer within ENGINE_KEEPALIVE_TIMEOUT_SEC (a dead client's sessions end).
    """
    min_ping_ms = round(settings.keepalive_min_ping_interval_sec * 1000)
    return [
        ("grpc.keepalive_time_ms", round(settings.keepalive_time_sec * 1000)),
        ("grpc.keepalive_timeout_ms", round(settings.keepalive_timeout_sec * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS: the server-side floor.
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_ms),
        ("grpc.http2.max_ping_strikes", settings.keepalive_max_ping_strikes),
        # Server pings are not held back by the "no data" rule (idle connections too).
        ("grpc.http2.max_pings_without_data", 0),
    ]


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
