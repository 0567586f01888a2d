"""The booking tool set (book_table, list_bookings, cancel_booking): arguments and results.

Pure logic, no I/O and no aiohttp: the reference backend runs it on its SQLite store
(``engine/devbackend/booking_store.py``) and the engine-only control plane on an
in-memory book (``MemoryBookingBook``, in the engine process), so both answer alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

BOOKING_TOOLS = frozenset({"book_table", "list_bookings", "cancel_booking"})
PARTY_SIZE_MAX = 20
NAME_CHARS_MAX = 80
BOOKING_HORIZON_DAYS = 365

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBER_WORD_LIST = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
_NUMBER_WORDS = {word: value for value, word in enumerate(_NUMBER_WORD_LIST)}
_MINUTE_WORDS = {"fifteen": 15, "thirty": 30, "forty five": 45, "forty-five": 45}
# Checked in this order, so "seven o'clock in the evening" loses both.
_SPOKEN_SUFFIXES = (
    (" pm", "pm"), (" p.m.", "pm"), (" am", "am"), (" a.m.", "am"),
    (" in the evening", "pm"), (" in the morning", "am"), (" o'clock", None),
)  # fmt: skip
_CLOCK = re.compile(r"^(\d{1,2})(?:[:.h](\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?$")


class ToolRejected(Exception):
    """The tool refused this call for good; ``status`` is the HTTP status it maps to.

    Messages never repeat the caller's free text (names), so they are safe to log.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """The validated arguments of ``book_table``."""

    party_size: int
    date: str  # ISO date
    time: str  # HH:MM, 24 h
    name: str | None


@dataclass(frozen=True, slots=True)
class Booking:
    """One stored booking; ``as_result`` is the shape every tool answers with."""

    booking_id: str
    call_id: str
    party_size: int
    date: str
    time: str
    name: str | None

    def as_result(self) -> dict[str, Any]:
        """{booking_id, party_size, date, time, name}."""
        return {
            "booking_id": self.booking_id,
            "party_size": self.party_size,
            "date": self.date,
            "time": self.time,
            "name": self.name,
        }


def booking_id_for(number: int) -> str:
    """The public id of the ``number``-th booking of a book (``B0001``)."""
    return f"B{number:04d}"


class BookingBook(Protocol):
    """Where bookings live: the reference backend's SQLite tables or process memory."""

    def add(self, call_id: str, request: BookingRequest) -> Booking:
        """Store a new booking and return it with its id."""
        ...

    def active(self, on_date: str | None) -> list[Booking]:
        """Bookings not cancelled (on one date, or all), by date and time."""
        ...

    def find(self, booking_id: str) -> Booking | None:
        """An active booking by id."""
        ...

    def latest_of_call(self, call_id: str) -> Booking | None:
        """The most recent active booking made during ``call_id``."""
        ...

    def cancel(self, booking_id: str) -> None:
        """Mark an active booking cancelled."""
        ...


def run_booking_tool(
    book: BookingBook, name: str, call_id: str, arguments: Mapping[str, Any], today: date
) -> dict[str, Any]:
    """Run one booking tool on ``book``; raises ToolRejected (404 unknown tool, 422 bad
    arguments, 404 nothing to cancel). Arguments the tool does not know are ignored.
    """
    if name == "book_table":
        return book.add(call_id, parse_book_table(arguments, today)).as_result()
    if name == "list_bookings":
        raw_date = arguments.get("date")
        on_date = None if raw_date in (None, "") else resolve_date(raw_date, today).isoformat()
        return {"bookings": [booking.as_result() for booking in book.active(on_date)]}
    if name == "cancel_booking":
        return {"cancelled": _cancel(book, call_id, arguments)}
    raise ToolRejected(404, f"no tool {name!r}; this backend offers {sorted(BOOKING_TOOLS)}")


def _cancel(book: BookingBook, call_id: str, arguments: Mapping[str, Any]) -> str:
    booking_id = arguments.get("booking_id")
    if booking_id in (None, ""):
        latest = book.latest_of_call(call_id)
        if latest is None:
            raise ToolRejected(404, "no booking was made in this call; give a booking_id")
        booking_id = latest.booking_id
    if not isinstance(booking_id, str):
        raise ToolRejected(422, "booking_id: must be a string such as B0001")
    booking_id = booking_id.strip().upper()
    if book.find(booking_id) is None:
        raise ToolRejected(404, f"no active booking {booking_id[:16]!r}")
    book.cancel(booking_id)
    return booking_id


def parse_book_table(arguments: Mapping[str, Any], today: date) -> BookingRequest:
    """Validate and resolve ``book_table``'s arguments (raises ToolRejected 422)."""
    if "date" not in arguments or "time" not in arguments or "party_size" not in arguments:
        raise ToolRejected(422, "book_table needs party_size, date and time")
    name = arguments.get("name")
    if name is not None and not isinstance(name, str):
        raise ToolRejected(422, "name: must be a string")
    name = " ".join((name or "").split())[:NAME_CHARS_MAX] or None
    return BookingRequest(
        party_size=parse_party_size(arguments["party_size"]),
        date=resolve_date(arguments["date"], today).isoformat(),
        time=resolve_time(arguments["time"]),
        name=name,
    )


def parse_party_size(raw: Any) -> int:
    """An integer from 1 to 20; digits and number words ("four") are accepted too."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip().lower()
        value = int(text) if text.isdigit() else _NUMBER_WORDS.get(text)
    if value is None or not 1 <= value <= PARTY_SIZE_MAX:
        raise ToolRejected(422, f"party_size: must be an integer from 1 to {PARTY_SIZE_MAX}")
    return value


def resolve_date(raw: Any, today: date) -> date:
    """An ISO date, ``today``, ``tomorrow`` or a weekday name (the next one, today
    included; ``next friday`` excludes today). Past dates and dates more than a year
    ahead are refused."""
    if not isinstance(raw, str) or not raw.strip():
        raise ToolRejected(422, "date: must be a string (2026-12-24, today, tomorrow, friday)")
    text = " ".join(raw.strip().lower().split())
    for prefix in ("on ", "this "):
        text = text.removeprefix(prefix)
    strictly_after = text.startswith("next ")
    text = text.removeprefix("next ")
    if text == "today":
        resolved = today
    elif text == "tomorrow":
        resolved = today + timedelta(days=1)
    elif text in _WEEKDAYS:
        ahead = (_WEEKDAYS.index(text) - today.weekday()) % 7
        resolved = today + timedelta(days=7 if strictly_after and ahead == 0 else ahead)
    else:
        try:
            resolved = date.fromisoformat(text)
        except ValueError:
            raise ToolRejected(
                422, "date: not understood; use YYYY-MM-DD, today, tomorrow or a weekday"
            ) from None
    if resolved < today:
        raise ToolRejected(422, f"date: {resolved.isoformat()} is in the past")
    if resolved > today + timedelta(days=BOOKING_HORIZON_DAYS):
        raise ToolRejected(422, "date: bookings open at most a year ahead")
    return resolved


def resolve_time(raw: Any) -> str:
    """``HH:MM`` from "19:00", "7 pm", "7:30pm", "seven", "seven thirty", "noon".

    A bare hour from 1 to 10 ("at seven") is the evening: a restaurant books dinners.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ToolRejected(422, "time: must be a string such as 19:00 or 7 pm")
    text = " ".join(raw.strip().lower().removeprefix("at ").split())
    if text in ("noon", "midday"):
        return "12:00"
    parsed = _clock(text) or _spoken_clock(text)
    if parsed is None:
        raise ToolRejected(422, "time: not understood; use HH:MM or a time such as 7 pm")
    hour, minute, meridiem = parsed
    if meridiem is not None:
        if not 1 <= hour <= 12:
            raise ToolRejected(422, "time: the hour must be 1-12 with am/pm")
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    elif 1 <= hour <= 10:
        hour += 12
    if hour > 23 or minute > 59:
        raise ToolRejected(422, "time: not a time of day")
    return f"{hour:02d}:{minute:02d}"


def _clock(text: str) -> tuple[int, int, str | None] | None:
    match = _CLOCK.match(text)
    if match is None:
        return None
    meridiem = match.group(3)
    return int(match.group(1)), int(match.group(2) or 0), _meridiem(meridiem)


def _spoken_clock(text: str) -> tuple[int, int, str | None] | None:
    """ "seven", "seven pm", "seven thirty", "half past seven", "quarter past seven"."""
    meridiem = None
    for suffix, said in _SPOKEN_SUFFIXES:
        if text.endswith(suffix):
            text = text.removesuffix(suffix)
            meridiem = said or meridiem
    minute = 0
    for prefix, value in (("half past ", 30), ("quarter past ", 15)):
        if text.startswith(prefix):
            text, minute = text.removeprefix(prefix), value
    hour_word, _, rest = text.partition(" ")
    hour = _NUMBER_WORDS.get(hour_word)
    if hour is None or (rest and (minute or rest not in _MINUTE_WORDS)):
        return None
    return hour, _MINUTE_WORDS.get(rest, minute), meridiem


def _meridiem(raw: str | None) -> str | None:
    if raw is None:
        return None
    return "pm" if raw.startswith("p") else "am"


class MemoryBookingBook:
    """A booking book in process memory (engine-only mode), bounded in size."""

    def __init__(self, max_active: int = 1000) -> None:
        self._bookings: list[Booking] = []
        self._cancelled: set[str] = set()
        self._max_active = max_active

    def add(self, call_id: str, request: BookingRequest) -> Booking:
        """Store a new booking; refuses (409) once ``max_active`` bookings are held."""
        if len(self._bookings) - len(self._cancelled) >= self._max_active:
            raise ToolRejected(409, "the book is full")
        booking = Booking(
            booking_id_for(len(self._bookings) + 1),
            call_id,
            request.party_size,
            request.date,
            request.time,
            request.name,
        )
        self._bookings.append(booking)
        return booking

    def active(self, on_date: str | None) -> list[Booking]:
        """Bookings not cancelled (on one date, or all), by date and time."""
        found = [
            b
            for b in self._bookings
            if b.booking_id not in self._cancelled and on_date in (None, b.date)
        ]
        return sorted(found, key=lambda b: (b.date, b.time, b.booking_id))

    def find(self, booking_id: str) -> Booking | None:
        """An active booking by id."""
        for booking in self._bookings:
            if booking.booking_id == booking_id and booking_id not in self._cancelled:
                return booking
        return None

    def latest_of_call(self, call_id: str) -> Booking | None:
        """The most recent active booking made during ``call_id``."""
        for booking in reversed(self._bookings):
            if booking.call_id == call_id and booking.booking_id not in self._cancelled:
                return booking
        return None

    def cancel(self, booking_id: str) -> None:
        """Mark an active booking cancelled."""
        self._cancelled.add(booking_id)
