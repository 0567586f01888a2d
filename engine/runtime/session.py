"""Sessions: one call each, and the manager that opens, limits and drains them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from engine.runtime.assistant import (
    ASSISTANT_ID_PATTERN,
    AssistantConfig,
    AssistantConfigError,
    is_valid_assistant_id,
)
from engine.runtime.audio_out import PCM16_INPUT_FORMAT, PassthroughCodecs
from engine.runtime.early_reply import EarlyReplyCounts
from engine.runtime.events import (
    AudioChunk,
    Draining,
    EndReason,
    ErrorEvent,
    Event,
    SessionEnded,
)
from engine.runtime.outbox import Outbox
from engine.runtime.pipeline import DuplexPipeline
from engine.runtime.ports.audio import AudioCodecs, InputDecoder, OutputEncoder, WireFormat
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    ConfigSource,
    ControlPlane,
    ControlPlaneUnavailable,
)
from engine.runtime.ports.history import HistoryService
from engine.runtime.ports.providers import (
    ProviderConfigError,
    ProviderFactory,
    SpeechRecognizer,
    VoiceActivityDetector,
)
from engine.runtime.ports.turn import TurnDetector, TurnDetectorError
from engine.runtime.response import EndCall
from engine.runtime.tools import ToolBackend

log = logging.getLogger(__name__)

# Audio produced faster than the client reads waits this long for room in the queue
# before the client is taken for one that stopped reading.
AUDIO_ROOM_WAIT_SEC = 10.0


class RejectKind(StrEnum):
    """Why a session could not start; the protocol edge maps it to a status code."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED_PRECONDITION = "failed_precondition"
    RESOURCE_EXHAUSTED = "resource_exhausted"


class SessionRejected(Exception):
    """The session cannot start; ``message`` tells the client what to fix."""

    def __init__(self, kind: RejectKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What the client asked for in ``start`` (transport-free)."""

    assistant_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    interim_transcripts: bool = False
    text_only: bool = False
    input_audio: WireFormat = PCM16_INPUT_FORMAT
    output_audio: WireFormat = PCM16_INPUT_FORMAT


class _SpeechProviders:
    """VAD and ASR of a session.

    A voice session builds them with the session, so invalid speech options reject the
    start; a text-only session builds them on first audio (most never send any).
    """

    def __init__(
        self, providers: ProviderFactory, config: AssistantConfig, line: WireFormat, *, now: bool
    ) -> None:
        self.line = f"{line.encoding}/{line.sample_rate_hz}"
        self._providers = providers
        self._config = config
        self._vad = self._build_vad() if now else None
        self._recognizer = providers.recognizer(config.asr) if now else None
        self._detector: TurnDetector | None = None
        self._detector_built = False
        if now:
            self.turn_detector()

    def _build_vad(self) -> VoiceActivityDetector:
        return self._providers.vad(self._config.vad.provider_spec())

    def vad(self) -> VoiceActivityDetector:
        vad, self._vad = self._vad, None  # one detector per SpeechInput
        return vad if vad is not None else self._build_vad()

    def recognizer(self) -> SpeechRecognizer:
        if self._recognizer is None:
            self._recognizer = self._providers.recognizer(self._config.asr)
        return self._recognizer

    def turn_detector(self) -> TurnDetector | None:
        if not self._detector_built and self._config.turn.detector != "none":
            try:
                self._detector = self._providers.turn_detector(self._config.turn.provider_spec())
            except TurnDetectorError as exc:
                # A missing model must not cost the call: the fixed end silence decides.
                log.warning("turn detector unavailable (%s): fixed end silence", exc)
        self._detector_built = True
        return self._detector


class Session:
    """One call: the resolved assistant, its pipeline, its history, its event stream.

    The only door a transport uses: ``start``, ``feed_audio``, ``send_text``,
    ``playback``, ``interrupt``, ``end_of_turn``, ``tool_result``, ``update_options``,
    ``finish_input`` and ``end`` in, ``events()`` out.
    """

    def __init__(
        self,
        config: AssistantConfig,
        source: ConfigSource,
        request: SessionRequest,
        providers: ProviderFactory,
        history: HistoryService,
        *,
        audio_lead_ms: int,
        codecs: AudioCodecs | None = None,
        max_queued_events: int = 500,
        max_context_messages: int = 50,
        tool_backend: ToolBackend | None = None,
        early_counts: EarlyReplyCounts | None = None,
    ) -> None:
        self.session_id = str(uuid.uuid4())
        self.call_id = str(uuid.uuid4())
        self.config = config
        self.config_source: ConfigSource = source
        self.request = request
        self.started_monotonic = time.monotonic()
        self._outbox = Outbox()
        self._ended: SessionEnded | None = None
        codecs = codecs or PassthroughCodecs()
        self._decoder: InputDecoder = codecs.input_decoder(request.input_audio)
        output_audio = request.output_audio

        def encoder(source_rate_hz: int) -> OutputEncoder:
            return codecs.output_encoder(source_rate_hz, output_audio)

        self._ending = asyncio.Lock()
        # Build every provider first: a rejected start (invalid options) must not have
        # opened, and so leaked, a call in the history.
        llm = providers.language_model(config.llm)
        synthesizer = None if request.text_only else providers.synthesizer(config.tts)
        speech = _SpeechProviders(providers, config, request.input_audio, now=not request.text_only)
        self._history = history.open_call(
            CallRecord(
                call_id=self.call_id,
                assistant_id=config.id,
                session_id=self.session_id,
                started_at=time.time(),
                metadata=dict(request.metadata),
            )
        )
        self.pipeline = DuplexPipeline(
            config,
            llm=llm,
            synthesizer=synthesizer,
            speech=speech,
            recorder=self._history,
            emit=self._emit,
            interim_transcripts=request.interim_transcripts,
            audio_lead_ms=audio_lead_ms,
            on_end_call=self._assistant_hangs_up,
            encoder=encoder,
            overtake=self._outbox.interrupt,
            max_context_messages=max_context_messages,
            call_id=self.call_id,
            tool_backend=tool_backend,
            early_counts=early_counts,
        )
        self._hangup: asyncio.Task[None] | None = None
        self._max_queued_events = max_queued_events
        self._not_reading: asyncio.Task[SessionEnded] | None = None

    async def _emit(self, event: Event) -> None:
        # Audio can be produced faster than the client reads it (unpaced output, a cached
        # or instant synthesizer): it waits for room beyond half the queue bound; a client
        # that stops reading for a while is ended.
        if isinstance(event, AudioChunk) and len(self._outbox) > self._max_queued_events // 2:
            try:
                async with asyncio.timeout(AUDIO_ROOM_WAIT_SEC):
                    await self._outbox.room_for(self._max_queued_events // 4)
            except TimeoutError:
                self._client_not_reading()
                return
        # Bounded (ENGINE_MAX_QUEUED_EVENTS): a client that stops reading is ended rather
        # than buffered without limit; an `ended` must never wait, so it always goes in.
        if len(self._outbox) >= self._max_queued_events and not isinstance(event, SessionEnded):
            self._client_not_reading()
            return
        self._outbox.put(event)

    def _client_not_reading(self) -> None:
        if self._not_reading is None:
            detail = f"the client is not reading its stream ({len(self._outbox)} events queued)"
            ending = self.end(EndReason.CLIENT_NOT_READING, detail)
            self._not_reading = asyncio.create_task(ending, name=f"overflow {self.session_id}")

    async def notify_draining(self, remaining_ms: int) -> None:
        """Tell the client the server is shutting down and the call ends within ``remaining_ms``."""
        await self._emit(Draining(remaining_ms))

    def _assistant_hangs_up(self, end_call: EndCall, playback_left_sec: float) -> None:
        # A task of its own: ending the session waits for the response task that calls us.
        async def hang_up() -> None:
            await asyncio.sleep(playback_left_sec)
            await self.end(
                EndReason.ASSISTANT_ENDED, end_call.reason or "the assistant ended the call"
            )

        if self._hangup is None:
            self._hangup = asyncio.create_task(hang_up(), name=f"hang up {self.session_id}")

    async def emit_error(self, code: str, message: str) -> None:
        """Tell the client about a non-fatal problem with its request."""
        await self._emit(ErrorEvent(code, message))

    # --- the transport's door ------------------------------------------------------

    @property
    def text_only(self) -> bool:
        """True when the session speaks no audio (fixed at start)."""
        return self.request.text_only

    async def start(self) -> None:
        """Begin the conversation (speak the greeting, if any)."""
        await self.pipeline.start()

    async def feed_audio(self, data: bytes) -> None:
        """Caller audio in the session's input format; raises InvalidAudio."""
        await self.pipeline.user_audio(self._decoder.decode(data))

    async def send_text(self, text: str) -> None:
        """A typed user turn."""
        await self.pipeline.user_text(text)

    def playback(self, response_id: str, played_ms: int) -> None:
        """The client's report of how much of a response it has played."""
        self.pipeline.playback(response_id, played_ms)

    async def interrupt(self) -> None:
        """Cut off the reply in flight, as a barge-in would."""
        await self.pipeline.interrupt()

    async def end_of_turn(self) -> None:
        """The caller finished speaking (client-side VAD)."""
        await self.pipeline.end_of_turn()

    async def tool_result(self, tool_call_id: str, result_json: str, error: str) -> None:
        """The client's result for a ``tool_call``; an unknown, late or repeated one is
        answered with an ``error`` event and changes nothing."""
        problem = self.pipeline.tool_result(tool_call_id, result_json, error)
        if problem is not None:
            await self.emit_error("invalid_tool_result", problem)

    async def update_options(self, *, interim_transcripts: bool, text_only: bool) -> None:
        """Change the options a session may change; an error event for the others."""
        self.pipeline.interim_transcripts = interim_transcripts
        if text_only != self.text_only:
            await self.emit_error("invalid_request", "text_only cannot change during a session")

    async def finish_input(self, timeout_sec: float) -> None:
        """No more input will come (half-close): answer what was given.

        The open utterance ends as END_OF_TURN would, and the reply to the last input
        streams to its end, for at most ``timeout_sec``. The transport then calls
        ``end(EndReason.INPUT_CLOSED)`` (which cuts a reply still running).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_sec):
                await self.pipeline.finish_input()

    async def events(self) -> AsyncIterator[Event]:
        """The session's events, ending with SessionEnded."""
        async for event in self._outbox:
            yield event

    @property
    def ended(self) -> bool:
        """True once end() has run."""
        return self._ended is not None

    async def end(self, reason: EndReason, detail: str = "") -> SessionEnded:
        """Stop the call: cut any reply, finalize history, send `ended`. Idempotent."""
        hangup = self._hangup
        if hangup is not None and hangup is not asyncio.current_task():
            hangup.cancel()  # ended some other way first; leave no task behind
        async with self._ending:
            if self._ended is not None:
                return self._ended
            await self.pipeline.close()
            history = await self._history.finalize(reason.value)
            self._ended = SessionEnded(reason, detail, history)
            await self._emit(self._ended)
            self._outbox.close()
            return self._ended


class SessionManager:
    """Resolves assistants, opens sessions, enforces the session limit, drains at exit."""

    def __init__(
        self,
        control_plane: ControlPlane,
        providers: ProviderFactory,
        history: HistoryService,
        *,
        max_sessions: int,
        audio_lead_ms: int = 500,
        codecs: AudioCodecs | None = None,
        max_queued_events: int = 500,
        max_context_messages: int = 50,
    ) -> None:
        self._codecs = codecs
        self._control_plane = control_plane
        self._max_context_messages = max_context_messages
        self._providers = providers
        self._history = history
        self._max_sessions = max_sessions
        self._audio_lead_ms = audio_lead_ms
        self._max_queued_events = max_queued_events
        self._live: set[Session] = set()
        self.early_replies = EarlyReplyCounts()  # of every session of this process
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def live_sessions(self) -> int:
        """Sessions open right now."""
        return len(self._live)

    async def open(self, request: SessionRequest) -> Session:
        """Resolve the assistant and open a session, or raise SessionRejected."""
        if self._draining:
            raise SessionRejected(RejectKind.UNAVAILABLE, "the server is shutting down; retry")
        if len(self._live) >= self._max_sessions:
            raise SessionRejected(
                RejectKind.RESOURCE_EXHAUSTED,
                f"session limit reached ({self._max_sessions} live sessions); retry later",
            )
        config, source = await self.resolve(request.assistant_id)
        try:
            session = Session(
                config,
                source,
                request,
                self._providers,
                self._history,
                audio_lead_ms=self._audio_lead_ms,
                codecs=self._codecs,
                max_queued_events=self._max_queued_events,
                max_context_messages=self._max_context_messages,
                tool_backend=self._control_plane,
                early_counts=self.early_replies,
            )
        except ProviderConfigError as exc:
            raise SessionRejected(
                RejectKind.FAILED_PRECONDITION,
                f"assistant {config.id!r} has invalid provider options: {exc}",
            ) from exc
        self._live.add(session)
        self._idle.clear()
        return session

    def release(self, session: Session) -> None:
        """Forget a session whose stream is over."""
        self._live.discard(session)
        if not self._live:
            self._idle.set()

    async def resolve(self, assistant_id: str) -> tuple[AssistantConfig, ConfigSource]:
        """The assistant's validated config and its source."""
        if not assistant_id:
            raise SessionRejected(RejectKind.INVALID_ARGUMENT, "start.assistant_id is required")
        if not is_valid_assistant_id(assistant_id):
            raise SessionRejected(
                RejectKind.INVALID_ARGUMENT,
                f"start.assistant_id must match {ASSISTANT_ID_PATTERN.pattern}",
            )
        try:
            fetched = await self._control_plane.fetch_assistant(assistant_id)
        except AssistantNotFound as exc:
            raise SessionRejected(
                RejectKind.NOT_FOUND, f"assistant {assistant_id!r} not found"
            ) from exc
        except ControlPlaneUnavailable as exc:
            log.warning("assistant %r: config unavailable: %s", assistant_id, exc)
            raise SessionRejected(  # the backend's words stay in the log (they may hold secrets)
                RejectKind.UNAVAILABLE,
                "assistant config unavailable: the backend did not answer"
                " and there is no cached copy",
            ) from exc
        except AssistantConfigError as exc:
            raise SessionRejected(
                RejectKind.FAILED_PRECONDITION, f"assistant definition is invalid: {exc}"
            ) from exc
        return fetched.config, fetched.source

    async def drain(self, grace_sec: float) -> None:
        """Refuse new sessions; give live ones ``grace_sec`` to finish, then end them."""
        self._draining = True
        for session in list(self._live):
            await session.notify_draining(int(grace_sec * 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_sec)
        remaining = list(self._live)
        if remaining:
            log.info("grace period over: ending %d live session(s)", len(remaining))
        await asyncio.gather(
            *(s.end(EndReason.SERVER_SHUTDOWN, "the server is shutting down") for s in remaining),
            return_exceptions=True,
        )
