"""The Converse servicer: translates the gRPC stream to session calls and back.

It holds no pipeline logic. A reader task feeds client messages to the session in
order; the handler itself yields the session's events until `ended`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from engine.audio.formats import AudioFormat
from engine.protocol.errors import ProtocolViolation
from engine.protocol.limits import (
    MAX_CHUNK_MS,
    MAX_METADATA_KEY_BYTES,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_BYTES,
    MAX_TEXT_BYTES,
    InputGuard,
    SessionLimits,
    limit_status,
)
from engine.protocol.mapping import (
    audio_format_from_proto,
    audio_format_to_proto,
    config_source_to_proto,
    event_to_proto,
)
from engine.runtime import events as ev
from engine.runtime.ports.audio import InvalidAudio
from engine.runtime.session import (
    RejectKind,
    Session,
    SessionManager,
    SessionRejected,
    SessionRequest,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# grpc.aio ends the request iterator the same way for a half-close and for a cancelled
# RPC; the cancellation reaches the handler a moment later. A half-close is only taken
# as such once this long has passed (mostly hidden behind the reply being streamed).
HALF_CLOSE_SETTLE_SEC = 0.05

_REJECT_CODES = {
    RejectKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    RejectKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    RejectKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    RejectKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    RejectKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class ConverseServicer(pb_grpc.VoiceEngineServiceServicer):
    """VoiceEngineService over a SessionManager."""

    def __init__(
        self,
        sessions: SessionManager,
        *,
        half_close_timeout_sec: float = 30.0,
        limits: SessionLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._half_close_timeout_sec = half_close_timeout_sec
        self._limits = limits or SessionLimits()  # the input limits; the gate times the start

    async def Converse(
        self,
        request_iterator: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext[pb.ConverseRequest, pb.ConverseResponse],
    ) -> AsyncIterator[pb.ConverseResponse]:
        try:
            start = await _first_start(request_iterator)
            request, in_fmt, out_fmt = _session_request(start)
            session = await self._sessions.open(request)
        except ProtocolViolation as exc:
            await context.abort(exc.code, exc.message)
        except SessionRejected as exc:
            await context.abort(_REJECT_CODES[exc.kind], exc.message)

        edge = _SessionEdge(
            session,
            in_fmt,
            out_fmt,
            limits=self._limits,
            half_close_timeout_sec=self._half_close_timeout_sec,
        )
        reader: asyncio.Task[None] | None = None
        try:
            yield edge.started(request)
            await session.start()
            reader = asyncio.create_task(edge.read(request_iterator), name="converse reader")
            async for event in session.events():
                yield edge.to_proto(event)
            if edge.violation is not None:
                await context.abort(edge.violation.code, edge.violation.message)
        finally:
            if reader is not None:
                reader.cancel()
            try:
                if not session.ended:
                    # The client went away without `end`: still finalize its history.
                    ending = session.end(ev.EndReason.STREAM_BROKEN, "the client went away")
                    await asyncio.shield(ending)
            finally:
                self._sessions.release(session)


class _Deadline:
    """The reader's one idle/duration deadline for the whole session.

    Not ``asyncio.wait_for`` per message, which makes a Task and a TimerHandle every 20 ms:
    a single timer is armed for the session; when it fires it asks ``left()`` again (input
    since then pushes the deadline back) and re-arms, so a message costs nothing. Only a
    wait for the next message is ever cancelled, never the handling of one: a deadline
    that passes meanwhile is raised as TimeoutError by the next ``wait``.
    """

    def __init__(self, left: Callable[[], float]) -> None:
        self._left = left
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._waiting = False
        self._expired = False
        self._fired = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(left(), self._check)

    def _check(self) -> None:
        left = self._left()
        if left > 0:
            self._timer = self._loop.call_later(left, self._check)
            return
        self._timer = None
        self._expired = True
        if self._waiting and self._task is not None:
            self._fired = True
            self._task.cancel()

    async def wait(self, next_message: Awaitable[T]) -> T:
        """Await the next message, or raise TimeoutError once the deadline has passed."""
        if self._expired:
            close = getattr(next_message, "close", None)
            if close is not None:
                close()  # the coroutine was never started
            raise TimeoutError
        self._waiting = True
        try:
            return await next_message
        except asyncio.CancelledError:
            if self._fired and self._task is not None and self._task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._waiting = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _first_start(requests: AsyncIterator[pb.ConverseRequest]) -> pb.StartSession:
    # The gate has already waited for this message (at most the start timeout).
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise ProtocolViolation(
            grpc.StatusCode.INVALID_ARGUMENT, "the stream closed before `start` was sent"
        ) from None
    kind = first.WhichOneof("request")
    if kind != "start":
        raise ProtocolViolation(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the first message must be `start`, got `{kind or 'nothing'}`",
        )
    return first.start


def _session_request(
    start: pb.StartSession,
) -> tuple[SessionRequest, AudioFormat, AudioFormat]:
    if len(start.metadata) > MAX_METADATA_KEYS:
        raise ProtocolViolation(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"start.metadata has {len(start.metadata)} keys; at most {MAX_METADATA_KEYS}",
        )
    for key, value in start.metadata.items():
        if len(key.encode()) > MAX_METADATA_KEY_BYTES or (
            len(value.encode()) > MAX_METADATA_VALUE_BYTES
        ):
            raise ProtocolViolation(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"start.metadata[{key[:MAX_METADATA_KEY_BYTES]!r}]: keys up to "
                f"{MAX_METADATA_KEY_BYTES} bytes, values up to {MAX_METADATA_VALUE_BYTES} bytes",
            )
    try:
        in_fmt = audio_format_from_proto(start.input_audio, "start.input_audio")
        out_fmt = audio_format_from_proto(start.output_audio, "start.output_audio")
    except ValueError as exc:
        raise ProtocolViolation(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    request = SessionRequest(
        assistant_id=start.assistant_id,
        metadata=dict(start.metadata),
        interim_transcripts=start.options.interim_transcripts,
        text_only=start.options.text_only,
        input_audio=in_fmt,
        output_audio=out_fmt,
    )
    return request, in_fmt, out_fmt


class _SessionEdge:
    """Per-session protocol state: audio conversion and request dispatch."""

    def __init__(
        self,
        session: Session,
        in_fmt: AudioFormat,
        out_fmt: AudioFormat,
        *,
        limits: SessionLimits,
        half_close_timeout_sec: float,
    ) -> None:
        self._session = session
        self._guard = InputGuard(limits)
        self._half_close_timeout_sec = half_close_timeout_sec
        self._in_fmt = in_fmt
        self._out_fmt = out_fmt
        self._max_chunk_bytes = in_fmt.bytes_for_ms(MAX_CHUNK_MS)
        self.violation: ProtocolViolation | None = None

    def started(self, request: SessionRequest) -> pb.ConverseResponse:
        session = self._session
        return self._stamp(
            pb.ConverseResponse(
                started=pb.SessionStarted(
                    session_id=session.session_id,
                    call_id=session.call_id,
                    assistant=pb.AssistantInfo(
                        id=session.config.id,
                        name=session.config.name,
                        config_source=config_source_to_proto(session.config_source),
                    ),
                    input_audio=audio_format_to_proto(self._in_fmt),
                    output_audio=audio_format_to_proto(self._out_fmt),
                    options=pb.SessionOptions(
                        interim_transcripts=request.interim_transcripts,
                        text_only=request.text_only,
                    ),
                    greeting=bool(session.config.greeting),
                )
            )
        )

    async def read(self, requests: AsyncIterator[pb.ConverseRequest]) -> None:
        """Feed client messages to the session; end it on `end`, half-close or violation."""
        session = self._session
        loop = asyncio.get_running_loop()
        deadline = _Deadline(self._guard.wait_sec)
        try:
            while True:
                try:
                    request = await deadline.wait(anext(requests))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    await session.end(*self._guard.timed_out())
                    return
                if session.ended:
                    return
                await self._dispatch(request)
                if request.WhichOneof("request") == "end":
                    await session.end(ev.EndReason.CLIENT_ENDED, request.end.reason[:256])
                    return
        except ProtocolViolation as violation:
            log.debug("session %s: protocol violation: %s", session.session_id, violation)
            self.violation = violation
            await session.end(ev.EndReason.PROTOCOL_ERROR, violation.message)
            return
        except (grpc.aio.AioRpcError, grpc.aio.AbortError):
            return  # the client went away; the handler's cleanup ends the session
        except Exception:
            # A bug must not leave the stream hanging: end it with INTERNAL.
            log.exception("session %s: request handling failed", session.session_id)
            self.violation = ProtocolViolation(grpc.StatusCode.INTERNAL, "internal error")
            await session.end(ev.EndReason.PROTOCOL_ERROR, "internal error")
            return
        finally:
            deadline.close()
        # Half-close: no more input. If the RPC was cancelled instead, this task is
        # cancelled within HALF_CLOSE_SETTLE_SEC and the handler records STREAM_BROKEN.
        settled_at = loop.time() + HALF_CLOSE_SETTLE_SEC
        await session.finish_input(self._half_close_timeout_sec)
        await asyncio.sleep(max(0.0, settled_at - loop.time()))
        await session.end(ev.EndReason.INPUT_CLOSED, "the client closed its input")

    async def _dispatch(self, request: pb.ConverseRequest) -> None:
        session = self._session
        match request.WhichOneof("request"):
            case "audio":
                await self._audio(request.audio.data)
                if self._guard.utterance_too_long():
                    await session.end_of_turn()  # cut: the assistant answers what it heard
            case "text":
                self._guard.text()
                text = request.text.text.strip()
                if not text or len(text.encode()) > MAX_TEXT_BYTES:
                    await session.emit_error(
                        "invalid_request", f"text must be 1 to {MAX_TEXT_BYTES} bytes"
                    )
                    return
                await session.send_text(text)
            case "playback":
                session.playback(request.playback.response_id, request.playback.played_ms)
            case "control":
                await self._control(request.control)
            case "tool_result":
                result = request.tool_result
                await session.tool_result(result.tool_call_id, result.result_json, result.error)
            case "start":
                raise ProtocolViolation(
                    grpc.StatusCode.FAILED_PRECONDITION, "`start` was already received"
                )
            case "end":
                pass
            case _:
                await self._session.emit_error("invalid_request", "an empty request was sent")

    async def _audio(self, data: bytes) -> None:
        if len(data) > self._max_chunk_bytes:
            raise ProtocolViolation(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"audio chunk of {len(data)} bytes is over {MAX_CHUNK_MS} ms "
                f"({self._max_chunk_bytes} bytes) of {self._in_fmt}; send 20-100 ms chunks",
            )
        too_fast = self._guard.audio(self._in_fmt.duration_ms(len(data)))
        if too_fast is not None:
            raise ProtocolViolation(grpc.StatusCode.INVALID_ARGUMENT, too_fast)
        try:
            await self._session.feed_audio(data)  # checks the chunk is whole samples
        except InvalidAudio as exc:
            raise ProtocolViolation(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    async def _control(self, control: pb.Control) -> None:
        session = self._session
        match control.action:
            case pb.CONTROL_ACTION_INTERRUPT:
                await session.interrupt()
            case pb.CONTROL_ACTION_END_OF_TURN:
                await session.end_of_turn()
            case pb.CONTROL_ACTION_UPDATE_OPTIONS:
                await session.update_options(
                    interim_transcripts=control.options.interim_transcripts,
                    text_only=control.options.text_only,
                )
            case _:
                await session.emit_error("invalid_request", "control.action is not set")

    def to_proto(self, event: ev.Event) -> pb.ConverseResponse:
        """The message for one runtime event."""
        if not isinstance(event, ev.AudioChunk):
            self._guard.observe(event)
            if (limit := limit_status(event)) is not None and self.violation is None:
                self.violation = ProtocolViolation(*limit)
        return self._stamp(event_to_proto(event))

    def _stamp(self, message: pb.ConverseResponse) -> pb.ConverseResponse:
        elapsed = time.monotonic() - self._session.started_monotonic
        message.session_time_ms = int(elapsed * 1000)
        return message
