"""One call's delivery state inside the history bridge (event-loop side; bridge-only).

Only ``bridge.py`` imports this module: the bridge creates a ``CallLine`` per open call,
moves its writes between queued, in flight and handed to the replayer, and counts their
outcomes. The call's ``CallHistory`` sees the line only as its ``HistorySink``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.runtime.ports.control_plane import CallRecord, CallSummary, TranscriptEntry
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.history_store import HistoryWrite

Outcome = Literal["delivered", "spooled", "dropped", "dead_lettered"]


@dataclass(eq=False, slots=True)
class PendingWrite:
    """One write of a call on its way: queued or in flight on the live path."""

    line: CallLine
    body: HistoryWrite
    row_id: int | None = None  # its row in the history store
    settled: bool = False  # delivered, dead-lettered, handed to the replayer or lost


class CallLine:
    """Where each of one call's writes is, and how many entries reached each outcome.

    Live writes wait in ``queued`` (in order) until a worker takes the head; at most one
    is ``inflight``. Once one write went to the replayer the line is ``diverted`` and the
    call's later writes follow it there, so they stay in order.
    """

    def __init__(
        self,
        record: CallRecord,
        submit: Callable[[CallLine, HistoryWrite], None],
        finalize: Callable[[CallLine, str], asyncio.Task[HistoryStatus]],
    ) -> None:
        self.record = record
        self.queued: deque[PendingWrite] = deque()
        self.inflight: PendingWrite | None = None
        self.scheduled = False  # waiting in the bridge's queue of calls with work
        self.diverted = False
        self.drained = asyncio.Event()  # set while no write is live (or to wake waiters)
        self.drained.set()
        self._submit = submit
        self._finalize = finalize
        self._counts: Counter[str] = Counter()
        self._finalized = False

    @property
    def call_id(self) -> str:
        return self.record.call_id

    # -- the HistorySink the call's CallHistory holds -----------------------------------

    def submit(self, body: HistoryWrite) -> None:
        """Hand a write of this call to the bridge."""
        self._submit(self, body)

    def start_finalize(self, end_reason: str) -> asyncio.Task[HistoryStatus]:
        """Have the bridge drain the call and send its finalize."""
        return self._finalize(self, end_reason)

    def status(self) -> HistoryStatus:
        """A snapshot of this call's transcript entries."""
        c = self._counts
        return HistoryStatus(
            True, c["enqueued"], c["delivered"], c["pending"], c["spooled"],
            c["dropped"], c["dead_lettered"], self._finalized,
        )  # fmt: skip

    # -- bookkeeping, driven by the bridge ----------------------------------------------

    @property
    def turn_count(self) -> int:
        """Transcript entries submitted (each ``record`` submits one)."""
        return self._counts["enqueued"]

    @property
    def undelivered_entries(self) -> int:
        """Entries not delivered yet: queued, in flight or waiting for the replayer."""
        return self._counts["pending"] + self._counts["spooled"]

    def live(self) -> list[PendingWrite]:
        """Writes queued or in flight, in order."""
        head = [] if self.inflight is None else [self.inflight]
        return head + list(self.queued)

    def track(self, write: PendingWrite) -> None:
        """A new write of this call is on the live path until it settles."""
        if isinstance(write.body, TranscriptEntry):
            self._counts["enqueued"] += 1
            self._counts["pending"] += 1

    def enqueue(self, write: PendingWrite, *, first: bool = False) -> None:
        """Put a write in line (``first``: back at the head, e.g. cut off mid-send)."""
        if first:
            self.queued.appendleft(write)
        else:
            self.queued.append(write)
        self.drained.clear()

    def settle(self, body: HistoryWrite, outcome: Outcome, write: PendingWrite | None) -> None:
        """A write reached its outcome; ``write`` is None for a row of the replayer."""
        if write is not None:
            write.settled = True
        if isinstance(body, TranscriptEntry):
            # a replayer row was counted as spooled, a live write as pending
            self._counts["spooled" if write is None else "pending"] -= 1
            self._counts[outcome] += 1
        elif isinstance(body, CallSummary) and outcome == "delivered":
            self._finalized = True
        self.check_drained()

    def check_drained(self) -> None:
        """Wake whoever waits for the drain once nothing is live."""
        if self.inflight is None and not self.queued:
            self.drained.set()
