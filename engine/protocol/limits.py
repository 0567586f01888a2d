"""Every limit at the protocol edge, in one place: admission (sessions per process and per
key), the start timeout, per-session input guards (idle, duration, input rate, utterance
length) and the size of what one message may carry.

Admission is synchronous on purpose: a slot is taken with no await between the check
and the count, so a burst of streams can never exceed the limit, whatever the assistant
lookup behind it costs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from engine.runtime import events as ev
from engine.settings import Settings

MAX_CHUNK_MS = 200  # one audio chunk; clients send 20-100 ms
MAX_TEXT_BYTES = 4096  # one typed turn
MAX_METADATA_KEYS = 64  # start.metadata entries
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The per-session limits in force (from settings).

    ``start_timeout_sec`` is enforced by the gate (the first message), the rest by the
    servicer's ``InputGuard``.
    """

    start_timeout_sec: float = 10.0
    idle_timeout_sec: float = 300.0
    max_session_sec: float = 4 * 3600.0
    max_utterance_ms: int = 60_000
    input_rate_allowance_ms: int = 30_000

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        """The limits ENGINE_START_TIMEOUT_SEC, ENGINE_IDLE_TIMEOUT_SEC, ... set."""
        return cls(
            start_timeout_sec=settings.start_timeout_sec,
            idle_timeout_sec=settings.idle_timeout_sec,
            max_session_sec=settings.max_session_sec,
            max_utterance_ms=settings.max_utterance_ms,
            input_rate_allowance_ms=settings.input_rate_allowance_ms,
        )


class AdmissionRejected(Exception):
    """No slot: ``reason`` is the ErrorInfo reason (SESSION_LIMIT, KEY_SESSION_LIMIT)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Admission:
    """Counts live Converse streams per process and per API key."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        """ENGINE_MAX_SESSIONS and ENGINE_MAX_SESSIONS_PER_KEY."""
        return cls(settings.max_sessions, settings.max_sessions_per_key)

    def __init__(self, max_sessions: int, max_per_key: int = 0) -> None:
        self.max_sessions = max_sessions
        self.max_per_key = max_per_key
        self.live = 0
        self._per_key: dict[str, int] = {}
        self.changed = asyncio.Event()

    @property
    def full(self) -> bool:
        """True while no new session can be admitted."""
        return self.live >= self.max_sessions

    def acquire(self, key_label: str | None) -> None:
        """Take a slot now or raise AdmissionRejected. Never awaits."""
        if self.live >= self.max_sessions:
            raise AdmissionRejected(
                "SESSION_LIMIT",
                f"session limit reached ({self.max_sessions} live sessions); retry later",
            )
        if key_label is not None and self.max_per_key:
            if self._per_key.get(key_label, 0) >= self.max_per_key:
                raise AdmissionRejected(
                    "KEY_SESSION_LIMIT",
                    f"this API key has {self.max_per_key} live sessions, its limit",
                )
            self._per_key[key_label] = self._per_key.get(key_label, 0) + 1
        self.live += 1
        self.changed.set()

    def release(self, key_label: str | None) -> None:
        """Give a slot back."""
        self.live -= 1
        if key_label is not None and self.max_per_key:
            left = self._per_key.get(key_label, 1) - 1
            if left:
                self._per_key[key_label] = left
            else:
                self._per_key.pop(key_label, None)
        self.changed.set()


class InputGuard:
    """One session's input limits, checked by the protocol edge on every request.

    Idle means no *audio or text* (playback reports and controls do not keep a session
    alive); the session's total duration is bounded too. Audio may run ahead of real
    time by ``input_rate_allowance_ms`` (clients that send a recording at once), no
    more. An utterance longer than ``max_utterance_ms`` is cut: the edge ends the turn
    and the assistant answers what it heard.
    """

    def __init__(self, limits: SessionLimits) -> None:
        self._limits = limits
        now = time.monotonic()
        self._deadline = now + limits.max_session_sec
        self._last_input = now
        self._audio_started: float | None = None
        self._audio_ms = 0.0
        self._utterance_ms: float | None = None  # None: no utterance open

    def wait_sec(self) -> float:
        """How long the reader may wait for the next request."""
        now = time.monotonic()
        idle_left = self._last_input + self._limits.idle_timeout_sec - now
        return max(0.0, min(idle_left, self._deadline - now))

    def timed_out(self) -> tuple[ev.EndReason, str]:
        """Why the wait ran out: idle or the session's maximum duration."""
        if time.monotonic() >= self._deadline - 0.001:
            return (
                ev.EndReason.LIMIT_REACHED,
                f"the session reached its maximum duration of {self._limits.max_session_sec:g} s",
            )
        return (
            ev.EndReason.IDLE_TIMEOUT,
            f"no audio or text from the client for {self._limits.idle_timeout_sec:g} s",
        )

    def duration_exceeded(self) -> bool:
        """True once the session has run for its maximum duration."""
        return time.monotonic() >= self._deadline

    def text(self) -> None:
        """A typed turn arrived."""
        self._last_input = time.monotonic()

    def audio(self, duration_ms: float) -> str | None:
        """An audio chunk arrived; returns a violation message when it is too fast."""
        now = time.monotonic()
        self._last_input = now
        if self._audio_started is None:
            self._audio_started = now
        self._audio_ms += duration_ms
        ahead = self._audio_ms - (now - self._audio_started) * 1000
        if ahead > self._limits.input_rate_allowance_ms:
            return (
                f"audio is arriving faster than real time ({ahead:.0f} ms ahead, more than "
                f"the {self._limits.input_rate_allowance_ms} ms allowed); pace it"
            )
        if self._utterance_ms is not None:
            self._utterance_ms += duration_ms
        return None

    def utterance_too_long(self) -> bool:
        """True when the open utterance has reached the maximum; it is then forgotten."""
        if self._utterance_ms is None or self._utterance_ms < self._limits.max_utterance_ms:
            return False
        self._utterance_ms = None
        return True

    def observe(self, event: ev.Event) -> None:
        """Follow the session's speech events (utterance start and end)."""
        if isinstance(event, ev.SpeechStarted):
            self._utterance_ms = 0.0
        elif isinstance(event, ev.SpeechStopped):
            self._utterance_ms = None


_LIMIT_CODES = {
    ev.EndReason.LIMIT_REACHED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ev.EndReason.CLIENT_NOT_READING: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def limit_status(event: ev.Event) -> tuple[grpc.StatusCode, str] | None:
    """The status a session ended by a limit closes with (None for every other event)."""
    if isinstance(event, ev.SessionEnded) and event.reason in _LIMIT_CODES:
        return _LIMIT_CODES[event.reason], event.detail
    return None
