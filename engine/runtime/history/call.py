"""One call's history: its entries' numbering, and where each of its writes is."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.runtime.ports.control_plane import CallRecord, CallSummary, TranscriptEntry
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.history_store import HistoryWrite

Outcome = Literal["delivered", "spooled", "dropped", "dead_lettered"]


class HistoryClosedError(RuntimeError):
    """``record`` after ``finalize``: the call's history is already closed."""


@dataclass(eq=False, slots=True)
class PendingWrite:
    """One write of a call on its way: queued, in flight, or handed to the replayer."""

    call: CallHistory
    body: HistoryWrite
    row_id: int | None = None  # its row in the history store
    released: bool = False  # handed to the replayer while still in the queue


class HistorySink(Protocol):
    """Where a call's history hands its writes (the bridge)."""

    def submit(self, call: CallHistory, body: HistoryWrite) -> None:
        """Take a write; never waits for the backend."""
        ...

    def start_finalize(self, call: CallHistory, end_reason: str) -> asyncio.Task[HistoryStatus]:
        """Drain the call (bounded), then send its finalize."""
        ...


class CallHistory:
    """One call's history: numbers its entries and tracks where each one is.

    The session uses ``record`` and ``finalize``; the bridge uses the rest (``track``,
    ``settle``, ``live``, ``wait_drained``, ``wake``, ``in_order``, ``inflight``,
    ``diverted``, ``turn_count``, ``pending_entries``).
    """

    def __init__(self, sink: HistorySink, call: CallRecord, *, enabled: bool) -> None:
        self.call = call
        self._sink = sink
        self._enabled = enabled
        self._sequence = 0
        self._live: dict[PendingWrite, None] = {}  # queued or in flight, in order
        self._drained = asyncio.Event()
        self._drained.set()
        self.inflight: PendingWrite | None = None
        # Workers take this call's writes in queue order and deliver them one at a time:
        # asyncio.Lock wakes its waiters first-in, first-out.
        self.in_order = asyncio.Lock()
        self.diverted = False  # from now on every write goes through the replayer
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
            self._sink.submit(self, entry)
        return entry

    async def finalize(self, end_reason: str) -> HistoryStatus:
        """Drain (bounded), then send the finalize once; every caller gets the status."""
        if not self._enabled:
            return self.status()
        if self._finalizing is None:
            self._finalizing = self._sink.start_finalize(self, end_reason)
        # shield: a cancelled session must not cancel the finalize other callers await
        return await asyncio.shield(self._finalizing)

    def status(self) -> HistoryStatus:
        """A snapshot of this call's transcript entries."""
        c = self._counts
        return HistoryStatus(
            self._enabled, c["enqueued"], c["delivered"], c["pending"], c["spooled"],
            c["dropped"], c["dead_lettered"], self._finalized,
        )  # fmt: skip

    @property
    def turn_count(self) -> int:
        """Transcript entries numbered so far."""
        return self._sequence

    @property
    def pending_entries(self) -> int:
        """Entries not delivered yet (queued, in flight or stored for the replayer)."""
        return self._counts["pending"] + self._counts["spooled"]

    def live(self) -> list[PendingWrite]:
        """Writes queued or in flight, in order."""
        return list(self._live)

    async def wait_drained(self) -> None:
        """Return when no write is live (or ``wake`` was called)."""
        await self._drained.wait()

    def wake(self) -> None:
        """Wake whoever waits in ``wait_drained`` (they re-check; shutdown)."""
        self._drained.set()

    def track(self, write: PendingWrite) -> None:
        """A new write of this call is live."""
        self._live[write] = None
        self._drained.clear()
        if isinstance(write.body, TranscriptEntry):
            self._counts["enqueued"] += 1
            self._counts["pending"] += 1

    def settle(self, body: HistoryWrite, outcome: Outcome, write: PendingWrite | None) -> None:
        """A write reached its outcome; ``write`` is None for a row of the replayer."""
        # (a replayer row was counted as spooled)
        if write is not None:
            del self._live[write]
        if isinstance(body, TranscriptEntry):
            self._counts["spooled" if write is None else "pending"] -= 1
            self._counts[outcome] += 1
        elif isinstance(body, CallSummary) and outcome == "delivered":
            self._finalized = True
        if not self._live:
            self._drained.set()
