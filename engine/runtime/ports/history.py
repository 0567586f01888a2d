"""History and speech-input ports as the session and pipeline see them.

The history bridge (``engine.runtime.history``) implements ``HistoryService``; the
session's provider factory supplies ``SpeechProviders``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.runtime.ports.control_plane import CallRecord
from engine.runtime.ports.providers import SpeechRecognizer, VoiceActivityDetector
from engine.runtime.ports.turn import TurnDetector


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """Where one call's transcript entries are; goes into the ``ended`` message.

    ``enqueued == delivered + pending + spooled + dropped + dead_lettered``; ``spooled``
    entries are durable and will be replayed, ``dropped`` ones are lost (spool disabled).
    """

    enabled: bool
    enqueued: int
    delivered: int
    pending: int
    spooled: int
    dropped: int
    dead_lettered: int
    finalized: bool


class TurnRecorder(Protocol):
    """Where final turns go (the call's history); must never block the turn path."""

    def record(
        self,
        role: Literal["user", "assistant", "tool"],
        text: str,
        *,
        started_at: float,
        ended_at: float,
        interrupted: bool = False,
        full_text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> object: ...


class CallRecorder(TurnRecorder, Protocol):
    """One call's history as a session sees it (``history.CallHistory`` implements it)."""

    async def finalize(self, end_reason: str) -> HistoryStatus: ...


class HistoryService(Protocol):
    """Opens a call's history (the history bridge, or a no-op when history is off)."""

    def open_call(self, record: CallRecord) -> CallRecorder: ...


class SpeechProviders(Protocol):
    """Lazily built speech-input providers (only sessions that send audio need them)."""

    def vad(self) -> VoiceActivityDetector: ...

    def recognizer(self) -> SpeechRecognizer: ...

    def turn_detector(self) -> TurnDetector | None:
        """The assistant's turn detector; None for the fixed end silence alone."""
        ...

    @property
    def line(self) -> str:
        """The caller's kind of line: the input audio's encoding and rate ("MULAW/8000")."""
        ...
