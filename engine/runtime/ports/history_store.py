"""The durable history store port: where history writes wait until the backend has them.

The bridge stores every write here before it acknowledges it and deletes it once the
backend has it, so a killed process loses nothing that was final. A row is owned either
by the live queue of the running process or by the replayer. The SQLite implementation
is ``adapters.history.spool.HistorySpool``, built in bootstrap.

Also here: the one serializer of history writes (``to_json``/``from_json``), used by the
store and by the HTTP control plane alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.runtime.ports.control_plane import CallRecord, CallSummary, TranscriptEntry

WriteKind = Literal["create_call", "transcript", "finalize"]
HistoryWrite = CallRecord | TranscriptEntry | CallSummary


class SpoolError(Exception):
    """The store could not be read or written (disk full, corrupt file, ...)."""


class SpoolInUseError(SpoolError):
    """Another live process holds the store; two engines must not share one."""


@dataclass(frozen=True, slots=True)
class SpooledWrite:
    """One stored write on its way to the replayer."""

    id: int
    kind: WriteKind
    call_id: str
    sequence: int
    payload: HistoryWrite
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A write the backend refused for good, kept with the reason for an operator."""

    kind: WriteKind
    call_id: str
    sequence: int
    payload: str
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class OrphanedCall:
    """A call that was open (no finalize stored) when the previous process died."""

    call_id: str
    started_at: float
    turn_count: int
    last_ended_at: float | None
    pending_entries: int


class HistoryStore(Protocol):
    """Pending writes, dead letters and open calls; synchronous and quick (no network).

    Every method may raise SpoolError.
    """

    def add(self, write: HistoryWrite, *, replay: bool, now: float) -> int:
        """Store a write (and track its call as open/closed); returns the row id."""
        ...

    def hand_to_replayer(self, row_ids: Iterable[int]) -> None:
        """Give live rows to the replayer (exhausted retries, drain timeout, shutdown)."""
        ...

    def replayable(self, limit: int) -> list[SpooledWrite]:
        """Replayer rows of calls with no live row left, in delivery order per call."""
        ...

    def delete(self, row_id: int) -> None:
        """Forget a delivered write."""
        ...

    def record_failure(self, row_id: int) -> None:
        """Count one more failed delivery attempt of a row."""
        ...

    def dead_letter(self, row_id: int, reason: str, *, now: float) -> None:
        """Move a refused write to the dead letters with the reason."""
        ...

    def orphaned_calls(self) -> list[OrphanedCall]:
        """Calls left open by a previous process (the bridge finalizes them)."""
        ...

    def undelivered_entries(self, call_id: str) -> int:
        """Transcript entries of ``call_id`` stored and not yet delivered."""
        ...

    def pending_count(self) -> int:
        """Rows not yet delivered (live and replayer-owned)."""
        ...

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        ...

    def close(self) -> None:
        """Release the store; rows stay for the next process."""
        ...


def kind_of(write: HistoryWrite) -> WriteKind:
    """The kind of a history write."""
    if isinstance(write, TranscriptEntry):
        return "transcript"
    return "create_call" if isinstance(write, CallRecord) else "finalize"


def to_json(write: HistoryWrite) -> dict[str, Any]:
    """A history write as a JSON object (field name -> plain value)."""
    # dataclasses.asdict would choke on a read-only Mapping (e.g. MappingProxyType).
    return {f.name: _plain(getattr(write, f.name)) for f in dataclasses.fields(write)}


def from_json(kind: str, fields: Mapping[str, Any]) -> HistoryWrite:
    """The inverse of ``to_json``."""
    if kind == "transcript":
        return TranscriptEntry(**fields)
    if kind == "create_call":
        return CallRecord(**fields)
    return CallSummary(**fields)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
