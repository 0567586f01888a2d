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
from typing import Protocol

from engine.runtime.assistant import (
    AssistantConfig,
    AssistantConfigError,
    is_valid_assistant_id,
    parse_assistant,
)
from engine.runtime.events import EndReason, ErrorEvent, Event, SessionEnded
from engine.runtime.history.call import HistoryStatus
from engine.runtime.pipeline import DuplexPipeline, TurnRecorder
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    ConfigSource,
    ControlPlane,
    ControlPlaneUnavailable,
)
from engine.runtime.ports.providers import (
    EndCall,
    ProviderConfigError,
    ProviderFactory,
    SpeechRecognizer,
    VoiceActivityDetector,
)

log = logging.getLogger(__name__)


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


class CallHistory(TurnRecorder, Protocol):
    """One call's history as the session sees it."""

    async def finalize(self, end_reason: str) -> HistoryStatus: ...


class HistoryService(Protocol):
    """Opens a call's history (the history bridge, or a no-op when history is off)."""

    def open_call(self, record: CallRecord) -> CallHistory: ...


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What the client asked for in ``start`` (transport-free)."""

    assistant_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    interim_transcripts: bool = False
    text_only: bool = False


class _LazySpeech:
    """Builds VAD and ASR on first use: text-only sessions never pay for them."""

    def __init__(self, providers: ProviderFactory, config: AssistantConfig) -> None:
        self._providers = providers
        self._config = config

    def vad(self) -> VoiceActivityDetector:
        return self._providers.vad(self._config.vad.provider_spec())

    def recognizer(self) -> SpeechRecognizer:
        return self._providers.recognizer(self._config.asr)


class Session:
    """One call: the resolved assistant, its pipeline, its history, its event stream."""

    def __init__(
        self,
        config: AssistantConfig,
        source: ConfigSource,
        request: SessionRequest,
        providers: ProviderFactory,
        history: HistoryService,
        *,
        audio_lead_ms: int,
    ) -> None:
        self.session_id = str(uuid.uuid4())
        self.call_id = str(uuid.uuid4())
        self.config = config
        self.config_source: ConfigSource = source
        self.started_monotonic = time.monotonic()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ended: SessionEnded | None = None
        self._ending = asyncio.Lock()
        self._history = history.open_call(
            CallRecord(
                call_id=self.call_id,
                assistant_id=config.id,
                session_id=self.session_id,
                started_at=time.time(),
                metadata=dict(request.metadata),
            )
        )
        synthesizer = None if request.text_only else providers.synthesizer(config.tts)
        self.pipeline = DuplexPipeline(
            config,
            llm=providers.language_model(config.llm),
            synthesizer=synthesizer,
            speech=_LazySpeech(providers, config),
            recorder=self._history,
            emit=self._emit,
            interim_transcripts=request.interim_transcripts,
            audio_lead_ms=audio_lead_ms,
            on_end_call=self._assistant_hangs_up,
        )
        self._hangup: asyncio.Task[None] | None = None

    async def _emit(self, event: Event) -> None:
        # Unbounded: real-time pacing of audio bounds what a response can queue, and
        # an `ended` must never wait for a client that stopped reading.
        self._events.put_nowait(event)

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

    async def events(self) -> AsyncIterator[Event]:
        """The session's events, ending with SessionEnded."""
        while (event := await self._events.get()) is not None:
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
            self._events.put_nowait(None)
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
    ) -> None:
        self._control_plane = control_plane
        self._providers = providers
        self._history = history
        self._max_sessions = max_sessions
        self._audio_lead_ms = audio_lead_ms
        self._live: set[Session] = set()
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
                "start.assistant_id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
            )
        try:
            fetched = await self._control_plane.fetch_assistant(assistant_id)
        except AssistantNotFound as exc:
            raise SessionRejected(
                RejectKind.NOT_FOUND, f"assistant {assistant_id!r} not found"
            ) from exc
        except ControlPlaneUnavailable as exc:
            raise SessionRejected(
                RejectKind.UNAVAILABLE, f"assistant config unavailable: {exc}"
            ) from exc
        except AssistantConfigError as exc:
            raise SessionRejected(
                RejectKind.FAILED_PRECONDITION, f"assistant definition is invalid: {exc}"
            ) from exc
        try:
            config = parse_assistant(
                fetched.document, expected_id=assistant_id, origin=fetched.source
            )
        except AssistantConfigError as exc:
            raise SessionRejected(
                RejectKind.FAILED_PRECONDITION, f"assistant definition is invalid: {exc}"
            ) from exc
        return config, fetched.source

    async def drain(self, grace_sec: float) -> None:
        """Refuse new sessions; give live ones ``grace_sec`` to finish, then end them."""
        self._draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_sec)
        remaining = list(self._live)
        if remaining:
            log.info("grace period over: ending %d live session(s)", len(remaining))
        await asyncio.gather(
            *(s.end(EndReason.SERVER_SHUTDOWN, "the server is shutting down") for s in remaining),
            return_exceptions=True,
        )
