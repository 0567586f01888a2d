"""SQLite storage of the reference backend: assistants, calls, transcripts, idempotency keys.

Synchronous on purpose (stdlib sqlite3); the web layer runs each method in a worker
thread. One connection guarded by a lock: a development backend does not need a pool,
and WAL keeps readers (``sqlite3`` CLI, tests) from blocking the writer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from engine.devbackend.booking_store import BOOKINGS_SCHEMA, SqliteBookingBook, all_bookings
from engine.devbackend.bookings import ToolRejected, run_booking_tool

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assistants (
    id TEXT PRIMARY KEY, document TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS transcripts (
    call_id TEXT NOT NULL REFERENCES calls(call_id), sequence INTEGER NOT NULL,
    body TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (call_id, sequence));
CREATE TABLE IF NOT EXISTS summaries (
    call_id TEXT PRIMARY KEY REFERENCES calls(call_id), body TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
    status INTEGER NOT NULL, response TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (scope, key));
"""


@dataclass(frozen=True, slots=True)
class StoreResult:
    """An HTTP-shaped outcome: status code and JSON payload."""

    status: int
    payload: dict[str, Any]


def _error(status: int, message: str) -> StoreResult:
    return StoreResult(status, {"error": message})


class DevStore:
    """The reference backend's database (one SQLite file, WAL journal)."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        # check_same_thread=False: methods run in asyncio.to_thread workers; the lock
        # serialises them.
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA + BOOKINGS_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # Assistants ------------------------------------------------------------------

    def get_assistant(self, assistant_id: str) -> dict[str, Any] | None:
        """The stored document, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT document FROM assistants WHERE id = ?", (assistant_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_assistant(self, assistant_id: str, document: dict[str, Any]) -> None:
        """Insert or replace one assistant document."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO assistants (id, document, updated_at) VALUES (?, ?, ?)",
                (assistant_id, json.dumps(document), time.time()),
            )

    # Calls -----------------------------------------------------------------------

    def create_call(self, key: str, body: dict[str, Any]) -> StoreResult:
        """Store a call once; a repeated idempotency key returns the first answer."""
        call_id = str(body["call_id"])

        def write() -> StoreResult:
            exists = self._db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,))
            if exists.fetchone() is not None:
                return _error(409, f"call {call_id} already exists under another key")
            self._db.execute(
                "INSERT INTO calls (call_id, body, created_at) VALUES (?, ?, ?)",
                (call_id, json.dumps(body), time.time()),
            )
            return StoreResult(201, {"call": body})

        return self._idempotent("create_call", key, body, write)

    def append_transcript(self, key: str, body: dict[str, Any]) -> StoreResult:
        """Store one transcript entry once per (call_id, sequence)."""
        call_id, sequence = str(body["call_id"]), int(body["sequence"])

        def write() -> StoreResult:
            if not self._call_exists(call_id):
                return _error(404, f"unknown call {call_id}; create it first")
            taken = self._db.execute(
                "SELECT 1 FROM transcripts WHERE call_id = ? AND sequence = ?",
                (call_id, sequence),
            )
            if taken.fetchone() is not None:
                return _error(409, f"entry {sequence} of call {call_id} exists under another key")
            self._db.execute(
                "INSERT INTO transcripts (call_id, sequence, body, created_at) VALUES (?, ?, ?, ?)",
                (call_id, sequence, json.dumps(body), time.time()),
            )
            return StoreResult(201, {"entry": body})

        return self._idempotent(f"transcripts:{call_id}", key, body, write)

    def finalize_call(self, key: str, body: dict[str, Any]) -> StoreResult:
        """Store the call summary once."""
        call_id = str(body["call_id"])

        def write() -> StoreResult:
            if not self._call_exists(call_id):
                return _error(404, f"unknown call {call_id}; create it first")
            done = self._db.execute("SELECT 1 FROM summaries WHERE call_id = ?", (call_id,))
            if done.fetchone() is not None:
                return _error(409, f"call {call_id} was finalized under another key")
            self._db.execute(
                "INSERT INTO summaries (call_id, body, created_at) VALUES (?, ?, ?)",
                (call_id, json.dumps(body), time.time()),
            )
            return StoreResult(200, {"summary": body})

        return self._idempotent(f"finalize:{call_id}", key, body, write)

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The call with its entries ordered by sequence and its summary (or null)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM calls WHERE call_id = ?", (call_id,))
            call = row.fetchone()
            if call is None:
                return None
            entries = self._db.execute(
                "SELECT body FROM transcripts WHERE call_id = ? ORDER BY sequence", (call_id,)
            ).fetchall()
            summary = self._db.execute(
                "SELECT body FROM summaries WHERE call_id = ?", (call_id,)
            ).fetchone()
        return {
            "call": json.loads(call[0]),
            "transcripts": [json.loads(entry[0]) for entry in entries],
            "summary": None if summary is None else json.loads(summary[0]),
        }

    # Tools -----------------------------------------------------------------------

    def execute_tool(
        self, key: str, call_id: str, name: str, body: Mapping[str, Any], today: date
    ) -> StoreResult:
        """Run a booking tool once per idempotency key, in one transaction with its key.

        Every answer of the tool is kept, refusals too, and a repeat gets it back with
        the same status: the same call always has the same outcome (``tomorrow`` stays
        the day it meant the first time). The call need not exist yet: its create is
        history, delivered in the background, while a tool runs at once.
        """

        def run() -> StoreResult:
            book = SqliteBookingBook(self._db)
            try:
                result = run_booking_tool(book, name, call_id, body["arguments"], today)
            except ToolRejected as exc:
                return _error(exc.status, str(exc))
            return StoreResult(200, {"result": result})

        keyed = {"name": name, **body}
        return self._idempotent(f"tools:{call_id}", key, keyed, run, tool=True)

    def bookings(self) -> list[dict[str, Any]]:
        """Every booking, cancelled ones too, in the order they were made."""
        with self._lock:
            return all_bookings(self._db)

    def count_transcripts(self, call_id: str) -> int:
        """Rows stored for a call (tests use it to prove a retry stored nothing new)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM transcripts WHERE call_id = ?", (call_id,)
            ).fetchone()
        return int(row[0])

    # Helpers ---------------------------------------------------------------------

    def _call_exists(self, call_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,))
        return found.fetchone() is not None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # Explicit BEGIN IMMEDIATE: the key check and the write commit together, also
        # when a second process (another dev server, a script) shares the file.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _idempotent(
        self,
        scope: str,
        key: str,
        body: dict[str, Any],
        write: Callable[[], StoreResult],
        *,
        tool: bool = False,
    ) -> StoreResult:
        """Run ``write`` once per (scope, key), in one transaction with its key record.

        A repeat with the same body replays the first successful answer as 200; a repeat
        with a different body is a client bug and gets 422. Failed writes (4xx) do not
        record the key, so the client may fix the cause and retry with the same key.
        A ``tool`` keeps every answer, refusals too, and replays it with its own status.
        """
        request_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
        with self._transaction():
            seen = self._db.execute(
                "SELECT request_hash, response, status FROM idempotency "
                "WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if seen is not None:
                if seen[0] != request_hash:
                    return _error(422, "Idempotency-Key was already used with a different body")
                return StoreResult(seen[2] if tool else 200, dict(json.loads(seen[1])))
            result = write()
            if result.status < 300 or tool:
                self._db.execute(
                    "INSERT INTO idempotency (scope, key, request_hash, status, response, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        scope,
                        key,
                        request_hash,
                        result.status,
                        json.dumps(result.payload),
                        time.time(),
                    ),
                )
            return result
