"""Fatal statuses with a machine-readable reason: ``google.rpc.ErrorInfo`` details.

Every status the engine ends a Converse RPC with carries, besides its code and a safe
human-readable message, a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer holding one ``ErrorInfo`` (domain ``voiceengine.v1``, a reason from REASONS).
Clients read it with ``grpc_status.rpc_status.from_call`` (Python) or their language's
equivalent. The list is part of the public contract: reasons are added, never renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "voiceengine.v1"

# reason -> (status code, when)
REASONS: dict[str, tuple[grpc.StatusCode, str]] = {
    "API_KEY_MISSING": (grpc.StatusCode.UNAUTHENTICATED, "no `authorization: Bearer` metadata"),
    "API_KEY_INVALID": (grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not a known key"),
    "ASSISTANT_NOT_PERMITTED": (
        grpc.StatusCode.PERMISSION_DENIED,
        "the API key may not use this assistant",
    ),
    "MALFORMED_REQUEST": (grpc.StatusCode.INVALID_ARGUMENT, "a request did not parse"),
    "INVALID_REQUEST": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "a bad start, audio format, assistant id or audio chunk",
    ),
    "INPUT_TOO_FAST": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "audio arrived faster than real time beyond ENGINE_INPUT_RATE_ALLOWANCE_MS",
    ),
    "PROTOCOL_VIOLATION": (
        grpc.StatusCode.FAILED_PRECONDITION,
        "a message before `start`, or a second `start`",
    ),
    "ASSISTANT_CONFIG_INVALID": (
        grpc.StatusCode.FAILED_PRECONDITION,
        "the assistant's definition or provider options are invalid",
    ),
    "ASSISTANT_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, "unknown assistant id"),
    "BACKEND_UNAVAILABLE": (
        grpc.StatusCode.UNAVAILABLE,
        "the backend did not answer and no cached config exists (retryable)",
    ),
    "SERVER_DRAINING": (grpc.StatusCode.UNAVAILABLE, "the server is shutting down (retryable)"),
    "SESSION_LIMIT": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ENGINE_MAX_SESSIONS live sessions (retry elsewhere or later)",
    ),
    "KEY_SESSION_LIMIT": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ENGINE_MAX_SESSIONS_PER_KEY live sessions for this API key",
    ),
    "EVENT_QUEUE_FULL": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the client did not read its responses (ENGINE_MAX_QUEUED_EVENTS)",
    ),
    "START_TIMEOUT": (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "no `start` within ENGINE_START_TIMEOUT_SEC",
    ),
    "SESSION_MAX_DURATION": (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "the session reached ENGINE_MAX_SESSION_SEC",
    ),
    "INTERNAL": (grpc.StatusCode.INTERNAL, "a bug in the engine (details in its log)"),
}

_DEFAULT_REASON = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_REQUEST",
    grpc.StatusCode.FAILED_PRECONDITION: "PROTOCOL_VIOLATION",
    grpc.StatusCode.NOT_FOUND: "ASSISTANT_NOT_FOUND",
    grpc.StatusCode.UNAVAILABLE: "BACKEND_UNAVAILABLE",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "SESSION_LIMIT",
    grpc.StatusCode.DEADLINE_EXCEEDED: "START_TIMEOUT",
    grpc.StatusCode.UNAUTHENTICATED: "API_KEY_INVALID",
    grpc.StatusCode.PERMISSION_DENIED: "ASSISTANT_NOT_PERMITTED",
}


def reason_for(code: grpc.StatusCode, message: str) -> str:
    """The ErrorInfo reason of a status the servicer raised without naming one."""
    lowered = message.lower()
    if code is grpc.StatusCode.UNAVAILABLE and "shutting down" in lowered:
        return "SERVER_DRAINING"
    if code is grpc.StatusCode.FAILED_PRECONDITION and "assistant" in lowered:
        return "ASSISTANT_CONFIG_INVALID"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and "maximum duration" in lowered:
        return "SESSION_MAX_DURATION"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "not reading" in lowered:
        return "EVENT_QUEUE_FULL"
    if code is grpc.StatusCode.INVALID_ARGUMENT and "faster than real time" in lowered:
        return "INPUT_TOO_FAST"
    if code is grpc.StatusCode.INVALID_ARGUMENT and "does not parse" in lowered:
        return "MALFORMED_REQUEST"
    return _DEFAULT_REASON.get(code, "INTERNAL")


def status_trailers(
    code: grpc.StatusCode, message: str, reason: str
) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a google.rpc.Status with one ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class RichContext:
    """A servicer context whose ``abort`` adds the ErrorInfo detail (and counts it).

    Everything else is the wrapped grpc.aio context's own behaviour.
    """

    def __init__(
        self, context: Any, on_abort: Callable[[grpc.StatusCode, str], None] | None = None
    ) -> None:
        self._context = context
        self._on_abort = on_abort

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
        *,
        reason: str | None = None,
    ) -> NoReturn:
        """End the RPC with ``code`` and an ErrorInfo naming ``reason``; raises."""
        chosen = reason or reason_for(code, details)
        if self._on_abort is not None:
            self._on_abort(code, chosen)
        trailers = tuple(trailing_metadata) + status_trailers(code, details, chosen)
        await self._context.abort(code, details, trailers)
        raise AssertionError("grpc.aio's abort raises")  # pragma: no cover


class ProtocolViolation(Exception):
    """The client broke the stream protocol; the RPC ends with ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
