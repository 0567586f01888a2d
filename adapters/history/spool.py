"""The history store in SQLite: a file that outlives the process.

WAL with ``synchronous=NORMAL`` makes a committed row survive the death of the process
(not a power cut); commits do not fsync, which keeps an append in the tens of
microseconds. Opening the store takes an exclusive lock file, so rows found at open time
belong to a process that is gone and are all handed to the replayer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.runtime.ports.control_plane import CallRecord, TranscriptEntry
from engine.runtime.ports.history_store import (
    DeadLetter,
    HistoryWrite,
    OrphanedCall,
    SpooledWrite,
    SpoolError,
    SpoolInUseError,
    from_json,
    kind_of,
    to_json,
)

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


def encode(write: HistoryWrite) -> str:
    """The stored payload; values JSON cannot hold are kept as their ``str``."""
    return json.dumps(to_json(write), default=str, separators=(",", ":"))


def decode(kind: str, payload: str) -> HistoryWrite:
    """The inverse of ``encode``."""
    return from_json(kind, json.loads(payload))


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

    def undelivered_entries(self, call_id: str) -> int:
        """Transcript entries of ``call_id`` stored and not yet delivered."""
        try:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM pending_writes WHERE call_id = ? AND kind = 'transcript'",
                (call_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(str(exc)) from exc
        return int(count)

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
