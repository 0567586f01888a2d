"""The gate in front of Converse: a grpc.aio server interceptor.

For every Converse stream, before the servicer does any work, it:
- authenticates the caller (``authorization: Bearer``; UNAUTHENTICATED otherwise),
- takes a session slot synchronously (per process and per API key; RESOURCE_EXHAUSTED),
- parses requests with a deserializer that turns bad bytes into INVALID_ARGUMENT,
- waits at most the start timeout for the first request, and checks that the key may
  use the assistant named in ``start`` (PERMISSION_DENIED),
- gives the servicer a context whose ``abort`` adds a ``google.rpc.ErrorInfo``,
- watches the responses going out for metrics and to tag log lines with the session.
Health and reflection pass untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from voiceengine.v1 import converse_pb2 as pb

from engine.observability.logs import call_id_var, session_id_var
from engine.observability.metrics import TURN_LATENCIES, EngineMetrics
from engine.protocol.auth import ApiKey, ApiKeyRing, AuthFailure
from engine.protocol.errors import ProtocolViolation, RichContext
from engine.protocol.limits import Admission, AdmissionRejected

log = logging.getLogger(__name__)
_QUIET_SEC = 0.1  # a client still writing sends its next message sooner than this
_SETTLE_MAX_MESSAGES = 64  # read from a refused call at most

CONVERSE_METHOD = "/voiceengine.v1.VoiceEngineService/Converse"

_Behavior = Callable[[AsyncIterator[pb.ConverseRequest], Any], AsyncIterator[pb.ConverseResponse]]


class ConverseGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authentication, admission, safe parsing and observation of Converse streams."""

    def __init__(
        self,
        *,
        keys: ApiKeyRing,
        admission: Admission,
        metrics: EngineMetrics,
        start_timeout_sec: float,
    ) -> None:
        self.keys = keys
        self.admission = admission
        self.metrics = metrics
        self._start_timeout_sec = start_timeout_sec

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method != CONVERSE_METHOD:
            return handler
        behavior: _Behavior = handler.stream_stream
        # A partial of an async generator method: grpc.aio streams what it yields.
        converse = functools.partial(
            self._converse, behavior, handler_call_details.invocation_metadata
        )
        return grpc.stream_stream_rpc_method_handler(
            converse,
            request_deserializer=self._parse,
            response_serializer=handler.response_serializer,
        )

    def _parse(self, raw: bytes) -> pb.ConverseRequest:
        try:
            return pb.ConverseRequest.FromString(raw)
        except DecodeError:
            self.metrics.malformed_requests.inc()
            # The servicer's reader ends the session and the RPC with this status.
            raise ProtocolViolation(
                grpc.StatusCode.INVALID_ARGUMENT,
                "a request does not parse as a voiceengine.v1.ConverseRequest",
            ) from None

    def _count_abort(self, code: grpc.StatusCode, reason: str) -> None:
        self.metrics.rpc_errors.labels(code.name, reason).inc()
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED or reason in (
            "START_TIMEOUT",
            "SESSION_MAX_DURATION",
            "INPUT_TOO_FAST",
        ):
            self.metrics.limit_rejections.labels(reason).inc()

    async def _converse(
        self,
        behavior: _Behavior,
        metadata: Any,
        requests: AsyncIterator[pb.ConverseRequest],
        raw_context: Any,
    ) -> AsyncIterator[pb.ConverseResponse]:
        context = RichContext(raw_context, self._count_abort)
        try:
            key = self.keys.authenticate(metadata)
        except AuthFailure as failure:
            self.metrics.auth_failures.labels(failure.reason).inc()
            log.debug("Converse refused: %s", failure.reason)  # counted; not a log flood
            await _settle(requests, self._start_timeout_sec)
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, failure.message, reason=failure.reason
            )
            return
        label = key.label if key is not None else None
        try:
            self.admission.acquire(label)  # before any await: a burst cannot overshoot
        except AdmissionRejected as rejected:
            await _settle(requests, self._start_timeout_sec)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, rejected.message, reason=rejected.reason
            )
            return
        observer = _SessionObserver(self.metrics)
        try:
            first = await self._first_request(requests, context, key)
            async for response in behavior(_chain(first, requests), context):
                observer.observe(response)
                yield response
        finally:
            observer.close()
            self.admission.release(label)

    async def _first_request(
        self,
        requests: AsyncIterator[pb.ConverseRequest],
        context: RichContext,
        key: ApiKey | None,
    ) -> pb.ConverseRequest | None:
        try:
            first = await asyncio.wait_for(anext(requests), self._start_timeout_sec)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no `start` within {self._start_timeout_sec:g} s of opening the stream",
                reason="START_TIMEOUT",
            )
        except ProtocolViolation as violation:
            await context.abort(violation.code, violation.message)
        if key is not None and first.WhichOneof("request") == "start":
            assistant_id = first.start.assistant_id
            if not key.permits(assistant_id):
                self.metrics.auth_failures.labels("ASSISTANT_NOT_PERMITTED").inc()
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "this API key may not use the requested assistant",
                    reason="ASSISTANT_NOT_PERMITTED",
                )
        return first


class _SessionObserver:
    """Metrics and log ids from one stream's outgoing messages."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self._m = metrics
        self._started = False
        self._ended = False
        self._speech_started_at: float | None = None

    def observe(self, response: pb.ConverseResponse) -> None:
        m = self._m
        match response.WhichOneof("event"):
            case "started":
                session_id_var.set(response.started.session_id)
                call_id_var.set(response.started.call_id)
                self._started = True
                m.active_sessions.inc()
                log.info("session started: assistant %s", response.started.assistant.id)
            case "metrics":
                turn = response.metrics
                for field, stage in TURN_LATENCIES.items():
                    if turn.HasField(field):  # type: ignore[arg-type]
                        m.latency.labels(stage).observe(getattr(turn, field) / 1000)
            case "response_done":
                m.turns.labels(pb.ResponseStatus.Name(response.response_done.status)).inc()
            case "speech_started":
                self._speech_started_at = time.monotonic()
            case "interrupted":
                if self._speech_started_at is not None:
                    reaction = time.monotonic() - self._speech_started_at
                    m.latency.labels("barge_in_reaction").observe(reaction)
            case "error":
                m.session_errors.labels(response.error.code).inc()
            case "tool_finished":
                tool = response.tool_finished
                m.tool_latency.labels(tool.name, tool.executor).observe(tool.latency_ms / 1000)
                if tool.outcome != pb.TOOL_OUTCOME_OK:
                    outcome = pb.ToolOutcome.Name(tool.outcome).removeprefix("TOOL_OUTCOME_")
                    m.tool_failures.labels(tool.name, outcome.lower()).inc()
            case "ended":
                self._ended = True
                reason = pb.EndReason.Name(response.ended.reason)
                m.sessions_ended.labels(reason).inc()
                log.info("session ended: %s", reason)
            case _:
                pass

    def close(self) -> None:
        if not self._started:
            return
        self._m.active_sessions.dec()
        if not self._ended:  # the client went away before `ended`
            self._m.sessions_ended.labels("END_REASON_STREAM_BROKEN").inc()
            log.info("session ended: END_REASON_STREAM_BROKEN")


async def _settle(requests: AsyncIterator[pb.ConverseRequest], first_within_sec: float) -> None:
    """Take what the client is still writing before refusing the call.

    grpc's Python asyncio client reports "INTERNAL: Internal error from Core" instead of
    the status it was sent when one of its writes is in flight as the status arrives (the
    write fails and overwrites it). So a refusal waits for the client's first message (as
    long as any stream may take to send `start`), then for more while they keep coming,
    until the client half-closes or pauses for _QUIET_SEC; at most _SETTLE_MAX_MESSAGES.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + first_within_sec
    wait = first_within_sec
    with contextlib.suppress(Exception):  # the end of the stream, a pause, bad bytes
        for _ in range(_SETTLE_MAX_MESSAGES):
            await asyncio.wait_for(anext(requests), max(0.0, min(wait, deadline - loop.time())))
            wait = _QUIET_SEC


async def _chain(
    first: pb.ConverseRequest | None, rest: AsyncIterator[pb.ConverseRequest]
) -> AsyncIterator[pb.ConverseRequest]:
    if first is None:
        return
    yield first
    async for request in rest:
        yield request
