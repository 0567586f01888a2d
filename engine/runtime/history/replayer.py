"""The replayer: delivers what the history store holds for it, per call in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from engine.runtime.history.retry import is_transient, probe_delay
from engine.runtime.ports.history_store import HistoryStore, HistoryWrite, SpooledWrite, SpoolError
from engine.runtime.redact import describe

logger = logging.getLogger(__name__)

ReplayOutcome = Literal["replayed", "retried", "dead_lettered"]
_MIN_REPLAY_WAIT_SEC = 0.05  # the replayer polls a down backend no faster than this
PROBE_MAX_SEC = 1.0  # a failing backend is probed at least this often (Retry-After aside)
_LOAD_BATCH = 500  # rows read from the store at a time, beyond those already loaded


@dataclass(eq=False, slots=True)
class _Chain:
    """One call's loaded rows, in delivery order; only the head is ever in flight."""

    rows: deque[SpooledWrite] = field(default_factory=deque)
    busy: bool = False  # its head is being sent
    failures: int = 0  # transient failures of its head in a row
    not_before: float = 0.0  # loop time before which its head is not tried again


class SpoolReplayer:
    """Delivers the replayer's rows of the spool, per call in order, until none are left.

    A call's rows wait while the live path still owns one of its rows. Every worker
    (``concurrency``, HISTORY_WORKERS) takes the idle call with the most rows loaded and
    sends its head, so no worker waits for another's call while rows of other calls are
    ready. A transient failure puts that call's head on its own backoff and pauses the
    others: while paused, one probe at a time (at least every ``PROBE_MAX_SEC``; a
    Retry-After is honoured) checks whether the backend is back, and the first answer
    resumes every worker. A refused row becomes a dead letter. A row is deleted only once
    delivered: a kill mid-replay at worst sends it twice, which the idempotency keys absorb.
    """

    def __init__(
        self,
        spool: HistoryStore,
        send: Callable[[HistoryWrite], Awaitable[None]],
        report: Callable[[HistoryWrite, ReplayOutcome], None],
        *,
        backoff_sec: float,
        clock: Callable[[], float] = time.time,
        concurrency: int = 1,
    ) -> None:
        self._concurrency = max(1, concurrency)
        self._spool = spool
        self._send = send
        self._report = report
        self._backoff = max(backoff_sec, _MIN_REPLAY_WAIT_SEC)
        self._clock = clock
        self._chains: dict[str, _Chain] = {}
        self._loaded: set[int] = set()  # row ids in some chain
        self._changed = asyncio.Event()  # rows, a call or the pause changed: look again
        self._paused = asyncio.Event()  # set while the backend looks down
        self._failures = 0  # transient failures since the last delivery
        self._last_error: Exception | None = None

    def wake(self) -> None:
        """Something may have become replayable; look again."""
        self._changed.set()

    async def run(self) -> None:
        """Replay until cancelled; idle workers wait on ``wake``."""
        async with asyncio.TaskGroup() as group:
            for n in range(self._concurrency):
                group.create_task(self._work(), name=f"history-replay-{n}")
            group.create_task(self._probe_while_paused(), name="history-replay-probe")

    async def _work(self) -> None:
        while True:
            chain = await self._next_chain()
            await self._deliver_head(chain)

    async def _next_chain(self) -> _Chain:
        loop = asyncio.get_running_loop()
        while True:
            wait: float | None = None
            if not self._paused.is_set():
                chain, wait = self._pick(loop.time())
                if chain is None and self._load():
                    continue
                if chain is not None:
                    chain.busy = True
                    return chain
            self._changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass  # a call's backoff ended

    def _pick(self, now: float) -> tuple[_Chain | None, float | None]:
        """The idle call with the most rows, or how long until a call's backoff ends."""
        best: _Chain | None = None
        soonest: float | None = None
        for chain in self._chains.values():
            if chain.busy:
                continue
            if chain.not_before > now:
                soonest = chain.not_before if soonest is None else min(soonest, chain.not_before)
            elif best is None or len(chain.rows) > len(best.rows):
                best = chain
        return best, None if best is not None or soonest is None else soonest - now

    def _load(self) -> bool:
        """Add rows the store holds for the replayer beyond those loaded; True if any."""
        try:
            rows = self._spool.replayable(len(self._loaded) + _LOAD_BATCH)
        except SpoolError as exc:
            logger.error("history spool unreadable, retrying: %s", exc)
            self._pause(exc)
            return False
        added = False
        for row in rows:
            if row.id not in self._loaded:
                self._loaded.add(row.id)
                self._chains.setdefault(row.call_id, _Chain()).rows.append(row)
                added = True
        return added

    async def _deliver_head(self, chain: _Chain) -> None:
        row = chain.rows[0]
        try:
            error = await self._replay_row(row)
        except SpoolError as exc:
            logger.error("history spool write failed during replay: %s", exc)
            error = exc
        except Exception as exc:  # the replayer must outlive any one row
            logger.exception("history replay failed on %s", describe(row.payload))
            error = exc
        finally:
            chain.busy = False
        if error is None:
            chain.rows.popleft()
            self._loaded.discard(row.id)
            chain.failures = 0
            if not chain.rows:
                self._chains.pop(row.call_id, None)
            self._resume()
        else:
            chain.failures += 1
            wait = probe_delay(self._backoff, chain.failures, error, PROBE_MAX_SEC)
            chain.not_before = asyncio.get_running_loop().time() + wait
            self._pause(error)
        self._changed.set()

    def _pause(self, error: Exception) -> None:
        self._failures += 1
        self._last_error = error
        self._paused.set()
        if self._failures in (3, 10) or self._failures % 50 == 0:  # said clearly, not always
            logger.warning(
                "history replay: %d attempts failed in a row, spooled writes wait (%s)",
                self._failures,
                error,
            )

    def _resume(self) -> None:
        self._failures = 0
        self._last_error = None
        self._paused.clear()

    async def _probe_while_paused(self) -> None:
        while True:
            await self._paused.wait()
            await asyncio.sleep(
                probe_delay(self._backoff, self._failures, self._last_error, PROBE_MAX_SEC)
            )
            if not self._paused.is_set():
                continue
            chain = self._probe_target()
            if chain is not None:
                chain.busy = True
                await self._deliver_head(chain)
            elif not self._chains and self._readable():
                self._resume()
                self._changed.set()

    def _readable(self) -> bool:
        """The store answers again (it failed while nothing was loaded)."""
        try:
            self._spool.replayable(1)
        except SpoolError:
            return False
        return True

    def _probe_target(self) -> _Chain | None:
        """An idle call that has not failed lately, else the one whose backoff ends first."""
        idle = [chain for chain in self._chains.values() if not chain.busy]
        fresh = [chain for chain in idle if chain.failures == 0]
        if fresh:
            return fresh[0]
        return min(idle, key=lambda chain: chain.not_before, default=None)

    async def _replay_row(self, row: SpooledWrite) -> Exception | None:
        """Send one row: None once it is delivered or dead-lettered, else the failure."""
        try:
            await self._send(row.payload)
        except Exception as exc:
            if is_transient(exc):
                self._spool.record_failure(row.id)
                self._report(row.payload, "retried")
                return exc
            reason = f"{type(exc).__name__}: {exc}"
            self._spool.dead_letter(row.id, reason, now=self._clock())
            logger.error(
                "history write refused by the backend (%s): %s", reason, describe(row.payload)
            )
            self._report(row.payload, "dead_lettered")
            return None
        self._spool.delete(row.id)
        self._report(row.payload, "replayed")
        return None
