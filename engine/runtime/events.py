"""The runtime's own events: what a session tells its client, transport-free.

The protocol edge maps each of these to one ConverseResponse message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.runtime.history.call import HistoryStatus


class ResponseStatus(StrEnum):
    """How a response ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class EndReason(StrEnum):
    """Why a session ended."""

    CLIENT_ENDED = "client_ended"
    ASSISTANT_ENDED = "assistant_ended"
    SERVER_SHUTDOWN = "server_shutdown"
    IDLE_TIMEOUT = "idle_timeout"
    STREAM_BROKEN = "stream_broken"
    PROTOCOL_ERROR = "protocol_error"
    # Hard limits (issue 11): the session's maximum duration; a client not reading.
    LIMIT_REACHED = "limit_reached"
    CLIENT_NOT_READING = "client_not_reading"


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    utterance_id: str
    offset_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    utterance_id: str
    offset_ms: int


@dataclass(frozen=True, slots=True)
class Transcript:
    utterance_id: str
    text: str
    is_final: bool
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class AssistantText:
    response_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Synthesized PCM16 mono at ``sample_rate_hz`` (the synthesizer's rate)."""

    response_id: str
    pcm: bytes
    sample_rate_hz: int
    offset_ms: int


@dataclass(frozen=True, slots=True)
class Interrupted:
    response_id: str
    heard_ms: int


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: ResponseStatus
    text: str
    heard_text: str
    audio_ms: int


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    response_id: str
    utterance_id: str
    end_of_speech_to_final_transcript_ms: int | None = None
    llm_first_token_ms: int | None = None
    tts_first_audio_ms: int | None = None
    end_of_speech_to_first_audio_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A non-fatal problem; the session goes on."""

    code: str
    message: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: EndReason
    detail: str
    history: HistoryStatus


@dataclass(frozen=True, slots=True)
class Draining:
    """The server is shutting down: the session ends in ``remaining_ms`` at the latest."""

    remaining_ms: int


Event = (
    SpeechStarted
    | SpeechStopped
    | Transcript
    | AssistantText
    | AudioChunk
    | Interrupted
    | ResponseDone
    | TurnMetrics
    | ErrorEvent
    | SessionEnded
    | Draining
)
