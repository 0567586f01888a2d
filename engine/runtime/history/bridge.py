"""The history bridge: call history to the backend without ever blocking a turn.

``CallHistory.record`` numbers an entry; the bridge stores it in the spool (when there is
one) and puts it in its call's line in memory; the turn path never awaits the backend.
Background workers deliver the lines with tenacity retries; whatever cannot be delivered
live (full queue, exhausted retries, finalize drain timeout, shutdown) is handed to the
spool's replayer, which delivers it in order once the backend answers, also after a
restart. Writes carry (call id, sequence) idempotency keys, so a replay is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from engine.runtime.history.call import CallHistory
from engine.runtime.history.line import CallLine, Outcome, PendingWrite
from engine.runtime.history.replayer import ReplayOutcome, SpoolReplayer
from engine.runtime.history.retry import WriteTimeouts, backoff_delay, is_transient, send_write
from engine.runtime.ports.control_plane import (
    CallRecord,
    CallSummary,
    ControlPlane,
)
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.history_store import HistoryStore, HistoryWrite, SpoolError
from engine.runtime.redact import describe

logger = logging.getLogger(__name__)


class HistorySettings(Protocol):
    """The part of ``engine.settings.Settings`` the bridge reads."""

    @property
    def history_queue_max_size(self) -> int: ...
    @property
    def history_retry_max_attempts(self) -> int: ...
    @property
    def history_retry_backoff_sec(self) -> float: ...
    @property
    def history_finalize_drain_timeout_sec(self) -> float: ...
    @property
    def history_workers(self) -> int: ...
    @property
    def history_max_write_timeout_sec(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HistoryCounters:
    """Process-wide write counts (create_call, transcript and finalize) for metrics.

    ``delivered`` counts the live path, ``replayed`` the spool's replayer.
    """

    enqueued: int
    delivered: int
    retried: int
    spooled: int
    replayed: int
    dead_lettered: int
    dropped: int


class HistoryBridge:
    """Queues, retries and spools call history; a few workers and one replayer per process.

    A small, fixed pool of workers (``workers``, HISTORY_WORKERS) rather than a task per
    call: the load on the customer's backend is bounded by the pool and nothing is spent
    per call. Each call's live writes wait in its own line; a worker takes the next call
    whose head write is not in flight, sends that write, and puts the call back at the end,
    so one call's writes go one at a time and in order while every worker stays busy as
    long as some other call has a write waiting. Head-of-line blocking is bounded too: a
    failing call holds a worker for at most one retry budget, then it is diverted (its
    writes go through the replayer from then on) and, while the backend looks down, later
    writes go straight to the spool instead of each paying the budget again. The replayer
    is a separate consumer, so spooled history never waits behind live history.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        *,
        queue_max_size: int,
        retry_max_attempts: int,
        retry_backoff_sec: float,
        finalize_drain_timeout_sec: float,
        spool: HistoryStore | None,
        enabled: bool = True,
        workers: int = 1,
        clock: Callable[[], float] = time.time,
        max_write_timeout_sec: float = 0.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._control_plane = control_plane
        self._enabled = enabled
        self._ready: asyncio.Queue[CallLine] = asyncio.Queue()  # calls with a write to take
        self._queued = 0  # live writes waiting in some line (at most queue_max_size)
        self._max_queued = queue_max_size
        self._max_attempts = retry_max_attempts
        self._backoff = retry_backoff_sec
        self._drain_timeout = finalize_drain_timeout_sec
        self._spool = spool
        self._clock = clock
        self._lines: dict[str, CallLine] = {}
        self._settled = asyncio.Event()  # some write settled (close waits on it)
        self._counts: Counter[str] = Counter()
        # One grown timeout for the live workers and the replayer: a slow backend is slow
        # for both (see retry.WriteTimeouts).
        self._timeouts = WriteTimeouts(max_write_timeout_sec)
        self._tasks: list[asyncio.Task[None]] = []
        self._finalizers: set[asyncio.Task[HistoryStatus]] = set()
        self._finalize_figures: dict[str, int] = {}  # call id -> pending_entries as first sent
        self._replayer = (
            SpoolReplayer(spool, self._send, self._on_replayed, backoff_sec=retry_backoff_sec,
                          clock=clock, concurrency=workers)
            if spool is not None else None
        )  # fmt: skip
        self._closing = asyncio.Event()
        self._closed = False
        self._backend_down = False  # set by exhausted retries, cleared by any success
        if spool is not None and self._enabled:
            self._finalize_orphans(spool)

    @classmethod
    def from_settings(
        cls,
        control_plane: ControlPlane,
        settings: HistorySettings,
        *,
        store: HistoryStore | None,
        enabled: bool,
    ) -> HistoryBridge:
        """Build from settings around ``store`` (None: no durable spool)."""
        return cls(
            control_plane,
            queue_max_size=settings.history_queue_max_size,
            retry_max_attempts=settings.history_retry_max_attempts,
            retry_backoff_sec=settings.history_retry_backoff_sec,
            finalize_drain_timeout_sec=settings.history_finalize_drain_timeout_sec,
            spool=store,
            enabled=enabled,
            workers=settings.history_workers,
            max_write_timeout_sec=settings.history_max_write_timeout_sec,
        )

    async def start(self) -> None:
        """Start the workers (and the replayer when there is a spool); idempotent."""
        if self._tasks or not self._enabled or self._closed:
            return
        for n in range(self._workers):
            self._tasks.append(asyncio.create_task(self._run_worker(), name=f"history-worker-{n}"))
        if self._replayer is not None:
            self._tasks.append(asyncio.create_task(self._replayer.run(), name="history-replay"))

    def open_call(self, record: CallRecord) -> CallHistory:
        """Begin a call's history; its create-call write is queued, not awaited."""
        if not self._enabled:
            return CallHistory(record.call_id, None)
        if record.call_id in self._lines:
            raise ValueError(f"call {record.call_id} is already open")
        line = CallLine(record, self._submit, self._start_finalize)
        self._lines[record.call_id] = line
        self._submit(line, record)
        return CallHistory(record.call_id, line)

    def counters(self) -> HistoryCounters:
        """Process-wide counts since start-up."""
        c = self._counts
        return HistoryCounters(
            c["enqueued"], c["delivered"], c["retried"], c["spooled"], c["replayed"],
            c["dead_lettered"], c["dropped"],
        )  # fmt: skip

    @property
    def write_timeout_sec(self) -> float | None:
        """The grown write timeout now in use (None: the adapter's default)."""
        return self._timeouts.current

    async def close(self) -> None:
        """Stop the tasks and hand everything undelivered to the spool, then close it."""
        if self._closed:
            return
        self._closing.set()
        for line in self._lines.values():
            line.drained.set()  # wakes finalizers waiting for a drain; they re-check
        await asyncio.gather(*self._finalizers, return_exceptions=True)
        if self._spool is None and self._tasks:
            # Without a spool a queued write is lost at exit: give the workers a chance.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._drain_timeout):
                    await self._all_settled()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._closed = True
        lost = self._counts["dropped"]
        for line in list(self._lines.values()):
            self._release_queued(line, log=False)
        if self._counts["dropped"] > lost:  # one line, not one per write
            logger.error("history: %d queued writes LOST at shutdown (no spool)",
                         self._counts["dropped"] - lost)  # fmt: skip
        if self._spool is not None:
            self._spool.close()

    async def _all_settled(self) -> None:
        while any(line.live() for line in self._lines.values()):
            self._settled.clear()
            await self._settled.wait()

    # -- accepting writes ----------------------------------------------------------------

    def _submit(self, line: CallLine, body: HistoryWrite) -> None:
        """Take one of a call's writes: store it, queue it; never waits for the backend."""
        self._counts["enqueued"] += 1
        write = PendingWrite(line, body)
        line.track(write)
        if self._closed:
            self._lose(write, "the history bridge is closed")
            return
        full = self._queued >= self._max_queued
        if self._spool is not None:
            to_replayer = line.diverted or self._backend_down or full
            try:
                # Stored before record() returns: this is what survives a SIGKILL.
                write.row_id = self._spool.add(body, replay=to_replayer, now=self._clock())
            except SpoolError as exc:
                logger.error(
                    "history spool write failed, %s kept in memory: %s", describe(body), exc
                )
            else:
                if to_replayer:
                    if full and not line.diverted:
                        logger.warning("history queue full: call %s spills", line.call_id)
                    self._handed_over(write)
                    return
        if full:
            self._lose(write, "history queue full and no spool")
            return
        line.enqueue(write)
        self._queued += 1
        self._schedule(line)

    def _schedule(self, line: CallLine) -> None:
        """Queue the call for a worker when its head write can go (none in flight)."""
        if line.queued and line.inflight is None and not line.scheduled:
            line.scheduled = True
            self._ready.put_nowait(line)

    def _start_finalize(self, line: CallLine, end_reason: str) -> asyncio.Task[HistoryStatus]:
        """Drain the call (bounded by the drain timeout), then send its finalize once."""
        task = asyncio.create_task(self._finalize(line, end_reason), name="history-finalize")
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        return task

    async def _finalize(self, line: CallLine, end_reason: str) -> HistoryStatus:
        deadline = asyncio.get_running_loop().time() + self._drain_timeout
        await self._wait_drained(line, deadline)
        ended_at = self._clock()
        # pending_entries is set again when the finalize is sent (see _send)
        summary = CallSummary(
            line.call_id, ended_at, max(0.0, ended_at - line.record.started_at),
            line.turn_count, end_reason, pending_entries=line.undelivered_entries,
        )  # fmt: skip
        if self._spool is not None and line.live():
            # Drain timed out: the rest (and the finalize after it) goes to the replayer.
            self._divert(line)
        self._submit(line, summary)
        await self._wait_drained(line, deadline)
        return line.status()

    async def _wait_drained(self, line: CallLine, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while line.live() and not self._closing.is_set():
                    await line.drained.wait()

    # -- outcomes ------------------------------------------------------------------------

    def _settle(
        self, body: HistoryWrite, outcome: Outcome, write: PendingWrite | None = None
    ) -> None:
        line = write.line if write is not None else self._lines.get(body.call_id)
        self._settled.set()
        if isinstance(body, CallSummary) and outcome in ("delivered", "dead_lettered"):
            self._finalize_figures.pop(body.call_id, None)
        if line is None:  # a call of a previous process
            return
        line.settle(body, outcome, write)
        if isinstance(body, CallSummary) and outcome != "spooled":
            self._lines.pop(line.call_id, None)

    def _release(self, write: PendingWrite, *, log: bool = True) -> None:
        """Hand a live write to the replayer (or count it lost when there is no spool)."""
        if self._spool is None or write.row_id is None:
            self._lose(write, "undeliverable and no spool", log=log)
            return
        self._spool.hand_to_replayer([write.row_id])
        self._handed_over(write)

    def _release_queued(self, line: CallLine, *, log: bool = True) -> None:
        """Hand every queued write of ``line`` to the replayer (or count it lost)."""
        writes = list(line.queued)
        line.queued.clear()
        self._queued -= len(writes)
        for write in writes:
            self._release(write, log=log)

    def _handed_over(self, write: PendingWrite) -> None:
        # From here on the call's writes go through the replayer, keeping them in order.
        write.line.diverted = True
        self._counts["spooled"] += 1
        self._settle(write.body, "spooled", write)
        self._wake_replayer()

    def _lose(self, write: PendingWrite, reason: str, *, log: bool = True) -> None:
        self._counts["dropped"] += 1
        if log:
            logger.error("history write LOST (%s): %s", reason, describe(write.body))
        self._settle(write.body, "dropped", write)

    def _divert(self, line: CallLine) -> None:
        # Writes kept only in memory (the spool failed) stay live: the replayer cannot see them.
        in_memory = [write for write in line.queued if write.row_id is None]
        stored = [write for write in line.queued if write.row_id is not None]
        line.queued.clear()
        line.queued.extend(in_memory)
        self._queued -= len(stored)
        for write in stored:
            self._release(write)
        line.diverted = True

    def _on_replayed(self, body: HistoryWrite, outcome: ReplayOutcome) -> None:
        self._counts[outcome] += 1
        if outcome == "replayed":
            self._backend_down = False
            self._settle(body, "delivered")
        elif outcome == "dead_lettered":
            self._settle(body, "dead_lettered")

    def _wake_replayer(self) -> None:
        if self._replayer is not None:
            self._replayer.wake()

    def _dead_letter(self, body: HistoryWrite, row_id: int | None, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self._spool is not None and row_id is not None:
            self._spool.dead_letter(row_id, reason, now=self._clock())
        self._counts["dead_lettered"] += 1
        logger.error("history write refused by the backend (%s): %s", reason, describe(body))

    def _finalize_orphans(self, spool: HistoryStore) -> None:
        # Calls a dead process left open get the finalize it never sent.
        for orphan in spool.orphaned_calls():
            ended_at = orphan.last_ended_at or orphan.started_at
            summary = CallSummary(
                orphan.call_id, ended_at, max(0.0, ended_at - orphan.started_at),
                orphan.turn_count, "engine_restarted", orphan.pending_entries,
            )  # fmt: skip
            spool.add(summary, replay=True, now=self._clock())
            logger.warning("call %s was open at the last exit; finalizing it", orphan.call_id)

    # -- delivery ------------------------------------------------------------------------

    async def _run_worker(self) -> None:
        while True:
            line = await self._ready.get()
            line.scheduled = False
            if line.inflight is not None or not line.queued:
                continue  # its writes went to the replayer meanwhile
            write = line.queued.popleft()
            self._queued -= 1
            line.inflight = write
            try:
                await self._deliver_live(write)
            except Exception:  # the worker must outlive any one write
                logger.exception("history worker failed on %s", describe(write.body))
            finally:
                line.inflight = None
                if not write.settled:  # cut off mid-send (shutdown): close() hands it over
                    line.enqueue(write, first=True)
                    self._queued += 1
                self._schedule(line)  # its next write, behind the calls already waiting
                line.check_drained()
                if line.diverted:
                    self._wake_replayer()  # its last live row may just have settled

    async def _deliver_live(self, write: PendingWrite) -> None:
        line = write.line
        if line.diverted or (self._backend_down and self._spool is not None):
            self._release(write)
            return
        try:
            await AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=self._retry_wait,
                retry=retry_if_exception(is_transient),
                before_sleep=self._count_retry,
                reraise=True,
            )(self._send, write.body)
        except Exception as exc:
            if not is_transient(exc):
                self._dead_letter(write.body, write.row_id, exc)
                self._settle(write.body, "dead_lettered", write)
            else:
                logger.warning("history call %s: retries exhausted (%s)", line.call_id, exc)
                if self._spool is not None:
                    self._backend_down = True
                self._release(write)
        else:
            if self._spool is not None and write.row_id is not None:
                self._spool.delete(write.row_id)
            self._counts["delivered"] += 1
            self._backend_down = False
            self._settle(write.body, "delivered", write)

    async def _send(self, body: HistoryWrite) -> None:
        if isinstance(body, CallSummary):
            # The true figure when it first leaves, not when the finalize was queued; a
            # retry repeats it, since a changed body under the same key would be refused.
            figure = self._finalize_figures.setdefault(body.call_id, self._undelivered(body))
            body = dataclasses.replace(body, pending_entries=figure)
        await send_write(self._control_plane, body, self._timeouts)

    def _undelivered(self, summary: CallSummary) -> int:
        """Entries of the call not delivered yet (a call of a previous process: the store's)."""
        line = self._lines.get(summary.call_id)
        if line is not None:
            return line.undelivered_entries
        if self._spool is None:
            return summary.pending_entries
        try:
            return self._spool.undelivered_entries(summary.call_id)
        except SpoolError:
            return summary.pending_entries

    def _retry_wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return backoff_delay(self._backoff, state.attempt_number, error)

    def _count_retry(self, state: RetryCallState) -> None:
        self._counts["retried"] += 1
