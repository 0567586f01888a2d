"""The control-plane port: the customer's backend as the runtime sees it.

The engine assigns every call id itself (a UUID), so each write below is an
idempotent operation keyed by data the engine already holds; none of them has to
wait for the backend before the conversation can go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from engine.runtime.assistant import AssistantConfig

ConfigSource = Literal["backend", "backend_cached", "local"]


class ControlPlaneError(Exception):
    """Base class of every error a control-plane adapter raises."""


class AssistantNotFound(ControlPlaneError):
    """The assistant id is unknown to the config source (maps to NOT_FOUND)."""


class ControlPlaneUnavailable(ControlPlaneError):
    """The backend could not give a usable answer (down, timing out, malformed body)."""


class TransientWriteError(ControlPlaneError):
    """A write failed in a way worth retrying (connection error, timeout, 5xx, 429).

    ``retry_after_sec`` carries the backend's ``Retry-After`` hint when it sent one.
    """

    def __init__(self, message: str, retry_after_sec: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_sec = retry_after_sec


class WriteTimeout(TransientWriteError):
    """A write the backend did not answer within ``timeout_sec`` (the limit that applied)."""

    def __init__(self, message: str, timeout_sec: float) -> None:
        super().__init__(message)
        self.timeout_sec = timeout_sec


class PermanentWriteError(ControlPlaneError):
    """A write the backend refused for good (4xx other than 408/429); never retried."""


class ToolFailed(ControlPlaneError):
    """A backend-executed tool gave no result.

    ``outcome`` says why: ``rejected`` (the backend refused it for good, a 4xx: never
    retried), ``timeout`` (no answer within the tool's timeout, retries included) or
    ``unavailable`` (no backend can run it, or transient failures outlasted the timeout).
    The message is safe to log; it never holds the arguments.
    """

    def __init__(
        self, message: str, outcome: Literal["rejected", "timeout", "unavailable"]
    ) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class FetchedAssistant:
    """A validated assistant definition and where it came from."""

    config: AssistantConfig
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the backend learns when a call starts."""

    call_id: str
    assistant_id: str
    session_id: str
    started_at: float  # unix seconds
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One final turn of a call's history.

    ``sequence`` is per call, starts at 1 and has no gaps; (call_id, sequence) is the
    idempotency key of the write. For an interrupted assistant turn ``text`` holds only
    what the caller heard and ``full_text`` what the assistant meant to say. A ``tool``
    entry is one tool call and its result: ``text`` is "<name> -> <outcome>", ``metadata``
    holds tool_call_id, name, arguments, executor, outcome, result and latency_ms.
    """

    call_id: str
    sequence: int
    role: Literal["user", "assistant", "tool"]
    text: str
    started_at: float  # unix seconds
    ended_at: float  # unix seconds
    interrupted: bool = False
    full_text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolInvocation:
    """One call of a backend-executed tool.

    ``idempotency_key`` (call id + the model's tool call id) is the same across retries and
    engine restarts, so a backend that sees it twice answers with its stored result.
    """

    call_id: str
    tool_call_id: str
    assistant_id: str
    name: str
    arguments: Mapping[str, Any]

    @property
    def idempotency_key(self) -> str:
        """The key every attempt of this call carries (``Idempotency-Key``)."""
        return f"{self.call_id}:{self.tool_call_id}"


@dataclass(frozen=True, slots=True)
class CallSummary:
    """The finalize of a call: sent once, after its entries (or after the drain timeout)."""

    call_id: str
    ended_at: float  # unix seconds
    duration_sec: float
    turn_count: int
    end_reason: str
    pending_entries: int = 0


class ControlPlane(Protocol):
    """The customer's backend: assistant configs in, call history out."""

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        """Return the assistant's validated definition.

        Raises AssistantNotFound, ControlPlaneUnavailable, or AssistantConfigError when
        the definition the source holds is invalid (the message names the field).
        """
        ...

    # Writes take an optional ``timeout_sec``: None means the adapter's own timeout
    # (BACKEND_TIMEOUT_SEC); the history bridge passes a longer one once writes time out
    # (see engine/runtime/history/retry.py). A timeout raises WriteTimeout.

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        """Record a new call (idempotent by call id)."""
        ...

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        """Append one entry (idempotent by call id + sequence).

        Raises TransientWriteError or PermanentWriteError.
        """
        ...

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        """Close the call's record (idempotent by call id)."""
        ...

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        """Run a backend-executed tool and return its JSON result (any JSON value).

        Transient failures (connection, timeout, 5xx, 429 with Retry-After) are retried
        within ``timeout_sec``; 4xx never. Raises ToolFailed.
        """
        ...

    async def close(self) -> None:
        """Release connections; called once at shutdown."""
        ...
