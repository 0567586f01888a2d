"""The durable side of the history bridge: a SQLite file that outlives the process, and
the replayer that delivers it.

Every history write is added here *before* the bridge acknowledges it and deleted once
the backend has it, so a SIGKILL mid-call loses nothing that was already final. WAL with
``synchronous=NORMAL`` makes a committed row survive the death of the process (not a
power cut); commits do not fsync, which keeps an append in the tens of microseconds.

A row is owned either by the live queue of the running process (``replay = 0``) or by the
replayer (``replay = 1``). Opening the spool takes an exclusive lock file, so rows found
at open time belong to a process that is gone and are all handed to the replayer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.runtime.ports.control_plane import (
    CallRecord,
    CallSummary,
    ControlPlaneUnavailable,
    TranscriptEntry,
    TransientWriteError,
)
from engine.runtime.redact import describe

logger = logging.getLogger(__name__)

WriteKind = Literal["create_call", "transcript", "finalize"]
HistoryWrite = CallRecord | TranscriptEntry | CallSummary
ReplayOutcome = Literal["replayed", "retried", "dead_lettered"]
MAX_WAIT_SEC = 30.0  # cap on any backoff and on a backend's Retry-After hint
_MIN_REPLAY_WAIT_SEC = 0.05  # the replayer polls a down backend no faster than this
_REPLAY_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_writes (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('create_call', 'transcript', 'finalize')),
    call_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,          -- transcript sequence; 0 for create_call/finalize
    payload TEXT NOT NULL,              -- the port dataclass as JSON
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    replay INTEGER NOT NULL DEFAULT 0   -- 0: live queue owns it, 1: the replayer does
);
CREATE INDEX IF NOT EXISTS pending_writes_by_call ON pending_writes (call_id, replay);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    call_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS open_calls (
    call_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    turn_count INTEGER NOT NULL DEFAULT 0,
    last_ended_at REAL
);
"""

# create_call first, finalize last, transcripts by sequence in between.
_REPLAY_QUERY = """
SELECT id, kind, call_id, sequence, payload, created_at, attempts FROM pending_writes AS p
WHERE replay = 1
  AND NOT EXISTS (SELECT 1 FROM pending_writes AS q WHERE q.call_id = p.call_id AND q.replay = 0)
ORDER BY call_id, CASE kind WHEN 'create_call' THEN 0 WHEN 'transcript' THEN 1 ELSE 2 END,
         sequence, id
LIMIT ?
"""


class SpoolError(Exception):
    """The spool file could not be read or written (disk full, corrupt file, ...)."""


class SpoolInUseError(SpoolError):
    """Another live process holds the spool; two engines must not share one file."""


@dataclass(frozen=True, slots=True)
class SpooledWrite:
    """One row of ``pending_writes`` on its way to the replayer."""

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
    """A call that was open (no finalize spooled) when the previous process died."""

    call_id: str
    started_at: float
    turn_count: int
    last_ended_at: float | None
    pending_entries: int


def kind_of(write: HistoryWrite) -> WriteKind:
    """The spool kind of a port dataclass."""
    if isinstance(write, TranscriptEntry):
        return "transcript"
    return "create_call" if isinstance(write, CallRecord) else "finalize"


def encode(write: HistoryWrite) -> str:
    """JSON for a port dataclass; values JSON cannot hold are kept as their ``str``."""
    fields = {f.name: getattr(write, f.name) for f in dataclasses.fields(write)}
    if "metadata" in fields:
        fields["metadata"] = dict(fields["metadata"])
    return json.dumps(fields, default=str, separators=(",", ":"))


def decode(kind: str, payload: str) -> HistoryWrite:
    """The inverse of ``encode``."""
    fields: dict[str, Any] = json.loads(payload)
    if kind == "transcript":
        return TranscriptEntry(**fields)
    if kind == "create_call":
        return CallRecord(**fields)
    return CallSummary(**fields)


class HistorySpool:
    """Pending writes, dead letters and open calls in one SQLite file (WAL mode).

    Synchronous and meant for one event-loop thread: every method is a few indexed
    statements and one commit without fsync.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.path.with_name(self.path.name + ".lock"))
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            # We hold the lock, so whoever owned the live rows is gone.
            with self._db:
                self._db.execute("UPDATE pending_writes SET replay = 1 WHERE replay = 0")
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"cannot open history spool {self.path}: {exc}") from exc
        self._closed = False

    def add(self, write: HistoryWrite, *, replay: bool, now: float) -> int:
        """Store a write (and track the call as open/closed); returns the row id."""
        kind = kind_of(write)
        sequence = write.sequence if isinstance(write, TranscriptEntry) else 0
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO pending_writes (kind, call_id, sequence, payload, created_at, replay)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (kind, write.call_id, sequence, encode(write), now, int(replay)),
            )
            if isinstance(write, CallRecord):
                db.execute(
                    "INSERT OR REPLACE INTO open_calls (call_id, started_at) VALUES (?, ?)",
                    (write.call_id, write.started_at),
                )
            elif isinstance(write, TranscriptEntry):
                db.execute(
                    "UPDATE open_calls SET turn_count = ?, last_ended_at = ? WHERE call_id = ?",
                    (write.sequence, write.ended_at, write.call_id),
                )
            else:
                db.execute("DELETE FROM open_calls WHERE call_id = ?", (write.call_id,))
        row_id = cursor.lastrowid
        assert row_id is not None  # always set after an INSERT
        return row_id

    def hand_to_replayer(self, row_ids: Iterable[int]) -> None:
        """Give live rows to the replayer (exhausted retries, drain timeout, shutdown)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE pending_writes SET replay = 1 WHERE id = ?", ((i,) for i in row_ids)
            )

    def replayable(self, limit: int) -> list[SpooledWrite]:
        """Replayer rows of calls with no live row left, in delivery order per call."""
        try:
            rows = self._db.execute(_REPLAY_QUERY, (limit,)).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(str(exc)) from exc
        return [
            SpooledWrite(id_, kind, call_id, seq, decode(kind, payload), created, attempts)
            for id_, kind, call_id, seq, payload, created, attempts in rows
        ]

    def delete(self, row_id: int) -> None:
        """Forget a delivered write."""
        with self._transaction() as db:
            db.execute("DELETE FROM pending_writes WHERE id = ?", (row_id,))

    def record_failure(self, row_id: int) -> None:
        """Count one more failed delivery attempt of a row."""
        with self._transaction() as db:
            db.execute("UPDATE pending_writes SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    def dead_letter(self, row_id: int, reason: str, *, now: float) -> None:
        """Move a refused write to ``dead_letters`` with the reason."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO dead_letters (kind, call_id, sequence, payload, created_at,"
                " attempts, failed_at, reason) SELECT kind, call_id, sequence, payload,"
                " created_at, attempts + 1, ?, ? FROM pending_writes WHERE id = ?",
                (now, reason, row_id),
            )
            db.execute("DELETE FROM pending_writes WHERE id = ?", (row_id,))

    def orphaned_calls(self) -> list[OrphanedCall]:
        """Calls left open by a previous process (the bridge finalizes them)."""
        rows = self._db.execute(
            "SELECT o.call_id, o.started_at, o.turn_count, o.last_ended_at,"
            " (SELECT COUNT(*) FROM pending_writes AS p"
            "  WHERE p.call_id = o.call_id AND p.kind = 'transcript')"
            " FROM open_calls AS o ORDER BY o.started_at"
        ).fetchall()
        return [OrphanedCall(*row) for row in rows]

    def pending_count(self) -> int:
        """Rows not yet delivered (live and replayer-owned)."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM pending_writes").fetchone()
        return int(count)

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        rows = self._db.execute(
            "SELECT kind, call_id, sequence, payload, attempts, reason FROM dead_letters"
            " ORDER BY id"
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def close(self) -> None:
        """Close the file and release the lock; rows stay for the next process."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        os.close(self._lock_fd)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as exc:
            raise SpoolError(str(exc)) from exc


def _lock(path: Path) -> int:
    # flock is released by the kernel when the process dies, SIGKILL included.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolInUseError(f"history spool {path} is held by another process") from None
    return fd


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
        spool: HistorySpool,
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


def is_transient(exc: BaseException) -> bool:
    """Worth retrying; OSError covers connection errors an adapter failed to wrap."""
    return isinstance(exc, TransientWriteError | ControlPlaneUnavailable | OSError)


def backoff_delay(base: float, attempt: int, error: BaseException | None) -> float:
    """Exponential from ``base``; a Retry-After hint can only lengthen it; capped."""
    delay = base * 2.0 ** (attempt - 1)
    if isinstance(error, TransientWriteError) and error.retry_after_sec is not None:
        delay = max(delay, error.retry_after_sec)
    return min(delay, MAX_WAIT_SEC)
