"""The replayer: delivers what the history store holds for it, per call in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from engine.runtime.history.retry import backoff_delay, is_transient
from engine.runtime.ports.history_store import HistoryStore, HistoryWrite, SpooledWrite, SpoolError
from engine.runtime.redact import describe

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
        concurrency: int = 1,
    ) -> None:
        self._concurrency = max(1, concurrency)  # HISTORY_WORKERS, as the live path
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
                if failures in (3, 10) or failures % 50 == 0:  # said clearly, not every pass
                    logger.warning(
                        "history replay: %d passes failed in a row, spooled writes wait (%s)",
                        failures,
                        error,
                    )
                await asyncio.sleep(backoff_delay(self._backoff, failures, error))
                continue
            failures = 0
            if not rows:
                await self._wakeup.wait()

    async def _replay(self, rows: list[SpooledWrite]) -> Exception | None:
        # Calls in parallel (bounded like the live workers), each call's rows in order.
        by_call: dict[str, list[SpooledWrite]] = {}
        for row in rows:
            by_call.setdefault(row.call_id, []).append(row)
        slots = asyncio.Semaphore(self._concurrency)
        errors: list[Exception] = []

        async def deliver(call_rows: list[SpooledWrite]) -> None:
            async with slots:
                for row in call_rows:
                    error = await self._replay_row(row)
                    if error is not None:
                        errors.append(error)
                        return  # its later rows must not overtake the failed one

        await asyncio.gather(*(deliver(call_rows) for call_rows in by_call.values()))
        return errors[0] if errors else None

    async def _replay_row(self, row: SpooledWrite) -> Exception | None:
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
