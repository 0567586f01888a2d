"""The runtime's own events: what a session tells its client, transport-free.

The protocol edge maps each of these to one ConverseResponse message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from engine.runtime.ports.history import HistoryStatus


class ResponseStatus(StrEnum):
    """How a response ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class EndReason(StrEnum):
    """Why a session ended."""

    CLIENT_ENDED = "client_ended"
    INPUT_CLOSED = "input_closed"  # half-close: the reply to the last input was sent
    ASSISTANT_ENDED = "assistant_ended"
    SERVER_SHUTDOWN = "server_shutdown"
    IDLE_TIMEOUT = "idle_timeout"
    STREAM_BROKEN = "stream_broken"
    PROTOCOL_ERROR = "protocol_error"
    # Hard limits: the session's maximum duration; a client not reading.
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
    source: str = ""  # finals: where the text came from (Recognition.source, "text")


@dataclass(frozen=True, slots=True)
class AssistantText:
    response_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Reply audio in the client's output format: exactly ``duration_ms`` of samples
    starting ``offset_ms`` into the response."""

    response_id: str
    data: bytes
    offset_ms: int
    duration_ms: int

    # Still queued when its response is interrupted: dropped, never sent.
    droppable_on_interrupt: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Interrupted:
    response_id: str
    heard_ms: int


@dataclass(frozen=True, slots=True)
class ResponseResumed:
    """A reply cut by a false interruption goes on, as ``response_id``, from what was unheard."""

    response_id: str
    resumed_response_id: str  # the interrupted response it continues
    resumed_from_text: str  # the text it says: the part of the reply not yet heard
    heard_text: str  # what the caller had heard of the reply before


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
    tool_ms: int | None = None  # waiting for tools during the turn (None: no tool ran)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A non-fatal problem; the session goes on."""

    code: str
    message: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A client-executed tool to run: answer with a tool result within ``deadline_ms``."""

    response_id: str
    tool_call_id: str
    name: str
    arguments_json: str
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class ToolStarted:
    """A backend- or engine-executed tool began."""

    response_id: str
    tool_call_id: str
    name: str
    executor: str


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """A tool call has its result; ``outcome`` is ok, error, rejected, timeout or cancelled."""

    response_id: str
    tool_call_id: str
    name: str
    executor: str
    outcome: str
    latency_ms: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """The assistant transfers the caller: the client connects them to ``target``."""

    response_id: str
    target: str


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
    | ResponseResumed
    | ResponseDone
    | TurnMetrics
    | ErrorEvent
    | SessionEnded
    | Draining
    | ToolCall
    | ToolStarted
    | ToolFinished
    | Transfer
)


def response_of(event: Event) -> str:
    """The response an event belongs to ("" for session-level events)."""
    response_id = getattr(event, "response_id", "")
    return response_id if isinstance(response_id, str) else ""


def droppable_on_interrupt(event: Event) -> bool:
    """True for events of a response that are worthless once it is interrupted (its audio)."""
    return bool(getattr(event, "droppable_on_interrupt", False))
