"""The replayer: delivers what the history store holds for it, per call in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from engine.runtime.history.retry import backoff_delay, is_transient
from engine.runtime.ports.history_store import HistoryStore, HistoryWrite, SpooledWrite, SpoolError

logger = logging.getLogger(__name__)

ReplayOutcome = Literal["replayed", "retried", "dead_lettered"]
_MIN_REPLAY_WAIT_SEC = 0.05  # the replayer polls a down backend no faster than this
_REPLAY_BATCH = 500


class SpoolReplayer:
    """Delivers the replayer's rows of the spool, per call in order, until none are left.

    A call's rows wait while the live path still owns one of its rows. A call whose row
    fails is skipped for the rest of the pass, so one bad call cannot stall the others;
    after a pass with a failure the replayer backs off exponentially (Retry-After is
    honoured). A refused row becomes a dead letter. A row is deleted only once delivered:
    a kill mid-replay at worst sends it twice, which the idempotency keys absorb.
    """

    def __init__(
        self,
        spool: HistoryStore,
        send: Callable[[HistoryWrite], Awaitable[None]],
        report: Callable[[HistoryWrite, ReplayOutcome], None],
        *,
        backoff_sec: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spool = spool
        self._send = send
        self._report = report
        self._backoff = max(backoff_sec, _MIN_REPLAY_WAIT_SEC)
        self._clock = clock
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Something may have become replayable; look again."""
        self._wakeup.set()

    async def run(self) -> None:
        """Replay until cancelled; sleeps on ``wake`` when the spool has nothing to give."""
        failures = 0
        while True:
            self._wakeup.clear()
            try:
                rows = self._spool.replayable(_REPLAY_BATCH)
                error = await self._replay(rows)
            except SpoolError as exc:
                logger.error("history spool unreadable, retrying: %s", exc)
                rows, error = [], exc
            if error is not None:
                failures += 1
                await asyncio.sleep(backoff_delay(self._backoff, failures, error))
                continue
            failures = 0
            if not rows:
                await self._wakeup.wait()

    async def _replay(self, rows: list[SpooledWrite]) -> Exception | None:
        failed_calls: set[str] = set()
        error: Exception | None = None
        for row in rows:
            if row.call_id in failed_calls:
                continue  # its later rows must not overtake the failed one
            try:
                await self._send(row.payload)
            except Exception as exc:
                if is_transient(exc):
                    self._spool.record_failure(row.id)
                    failed_calls.add(row.call_id)
                    error = exc
                    self._report(row.payload, "retried")
                else:
                    reason = f"{type(exc).__name__}: {exc}"
                    self._spool.dead_letter(row.id, reason, now=self._clock())
                    logger.error("history write refused by the backend (%s): %r", reason, row)
                    self._report(row.payload, "dead_lettered")
                continue
            self._spool.delete(row.id)
            self._report(row.payload, "replayed")
        return error
