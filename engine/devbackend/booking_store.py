"""The reference backend's booking book: the booking tools' storage in its SQLite file.

Runs in the reference backend, inside ``DevStore``'s transactions: a booking and the
idempotency record of the tool call that made it commit together or not at all.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from engine.devbackend.bookings import Booking, BookingRequest, booking_id_for

BOOKINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL,
    party_size INTEGER NOT NULL, date TEXT NOT NULL, time TEXT NOT NULL, name TEXT,
    cancelled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS bookings_by_call ON bookings (call_id, id);
"""

_COLUMNS = "id, call_id, party_size, date, time, name"


def _booking(row: tuple[Any, ...]) -> Booking:
    number, call_id, party_size, on_date, at_time, name = row
    return Booking(booking_id_for(int(number)), call_id, int(party_size), on_date, at_time, name)


def _number(booking_id: str) -> int | None:
    """``B0042`` -> 42; None for anything else."""
    digits = booking_id.removeprefix("B")
    return int(digits) if digits.isdigit() and booking_id.startswith("B") else None


class SqliteBookingBook:
    """``BookingBook`` over the ``bookings`` table; the caller holds the transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def add(self, call_id: str, request: BookingRequest) -> Booking:
        """Insert a booking; its id is the row id."""
        cursor = self._db.execute(
            "INSERT INTO bookings (call_id, party_size, date, time, name, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, request.party_size, request.date, request.time, request.name, time.time()),
        )
        number = int(cursor.lastrowid or 0)
        return Booking(
            booking_id_for(number),
            call_id,
            request.party_size,
            request.date,
            request.time,
            request.name,
        )

    def active(self, on_date: str | None) -> list[Booking]:
        """Bookings not cancelled (on one date, or all), by date and time."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM bookings WHERE cancelled = 0 "
            "AND (? IS NULL OR date = ?) ORDER BY date, time, id",
            (on_date, on_date),
        ).fetchall()
        return [_booking(row) for row in rows]

    def find(self, booking_id: str) -> Booking | None:
        """An active booking by id."""
        number = _number(booking_id)
        if number is None:
            return None
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM bookings WHERE id = ? AND cancelled = 0", (number,)
        ).fetchone()
        return None if row is None else _booking(row)

    def latest_of_call(self, call_id: str) -> Booking | None:
        """The most recent active booking made during ``call_id``."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM bookings WHERE call_id = ? AND cancelled = 0 "
            "ORDER BY id DESC LIMIT 1",
            (call_id,),
        ).fetchone()
        return None if row is None else _booking(row)

    def cancel(self, booking_id: str) -> None:
        """Mark an active booking cancelled."""
        number = _number(booking_id)
        self._db.execute("UPDATE bookings SET cancelled = 1 WHERE id = ?", (number,))


def all_bookings(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every booking, cancelled ones too, in the order they were made (for /_bookings)."""
    rows = db.execute(f"SELECT {_COLUMNS}, cancelled FROM bookings ORDER BY id").fetchall()
    return [
        {**_booking(row[:-1]).as_result(), "call_id": row[1], "cancelled": bool(row[-1])}
        for row in rows
    ]
