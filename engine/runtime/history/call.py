"""One call's history: its entries' numbering, and where each of its writes is."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.runtime.ports.control_plane import CallRecord, CallSummary, TranscriptEntry

if TYPE_CHECKING:
    from engine.runtime.history.bridge import HistoryBridge
    from engine.runtime.history.spool import HistoryWrite

Outcome = Literal["delivered", "spooled", "dropped", "dead_lettered"]


class HistoryClosedError(RuntimeError):
    """``record`` after ``finalize``: the call's history is already closed."""


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


@dataclass(eq=False, slots=True)
class _Write:
    call: CallHistory
    body: HistoryWrite
    row_id: int | None = None
    released: bool = False  # handed to the replayer while still in the queue


class CallHistory:
    """One call's history: numbers its entries and tracks where each one is."""

    def __init__(self, bridge: HistoryBridge, call: CallRecord, *, enabled: bool) -> None:
        self.call = call
        self._bridge = bridge
        self._enabled = enabled
        self._sequence = 0
        self._live: dict[_Write, None] = {}  # queued or in flight, in order
        self._drained = asyncio.Event()
        self._drained.set()
        self._inflight: _Write | None = None
        # Workers take this call's writes in queue order and deliver them one at a time:
        # asyncio.Lock wakes its waiters first-in, first-out.
        self._in_order = asyncio.Lock()
        self._diverted = False  # from now on every write goes through the replayer
        self._finalizing: asyncio.Task[HistoryStatus] | None = None
        self._finalized = False
        self._counts: Counter[str] = Counter()

    @property
    def call_id(self) -> str:
        return self.call.call_id

    def record(
        self,
        role: Literal["user", "assistant"],
        text: str,
        *,
        started_at: float,
        ended_at: float,
        interrupted: bool = False,
        full_text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TranscriptEntry:
        """Number a final turn and hand it over; never waits for the backend."""
        if self._finalizing is not None:
            raise HistoryClosedError(f"call {self.call_id} is already finalized")
        self._sequence += 1
        entry = TranscriptEntry(
            self.call_id, self._sequence, role, text, started_at, ended_at,
            interrupted, full_text, dict(metadata or {}),
        )  # fmt: skip
        if self._enabled:
            self._bridge._submit(self, entry)
        return entry

    async def finalize(self, end_reason: str) -> HistoryStatus:
        """Drain (bounded), then send the finalize once; every caller gets the status."""
        if not self._enabled:
            return self.status()
        if self._finalizing is None:
            self._finalizing = self._bridge._start_finalize(self, end_reason)
        # shield: a cancelled session must not cancel the finalize other callers await
        return await asyncio.shield(self._finalizing)

    def status(self) -> HistoryStatus:
        """A snapshot of this call's transcript entries."""
        c = self._counts
        return HistoryStatus(
            self._enabled, c["enqueued"], c["delivered"], c["pending"], c["spooled"],
            c["dropped"], c["dead_lettered"], self._finalized,
        )  # fmt: skip

    def _track(self, write: _Write) -> None:
        self._live[write] = None
        self._drained.clear()
        if isinstance(write.body, TranscriptEntry):
            self._counts["enqueued"] += 1
            self._counts["pending"] += 1

    def _settle(self, body: HistoryWrite, outcome: Outcome, write: _Write | None) -> None:
        # write is None for a row of the replayer (it was counted as spooled)
        if write is not None:
            del self._live[write]
        if isinstance(body, TranscriptEntry):
            self._counts["spooled" if write is None else "pending"] -= 1
            self._counts[outcome] += 1
        elif isinstance(body, CallSummary) and outcome == "delivered":
            self._finalized = True
        if not self._live:
            self._drained.set()
