"""The booking tools' argument resolution, shared by the reference backend and engine-only mode."""

from __future__ import annotations

from datetime import date

import pytest

from engine.devbackend.bookings import (
    MemoryBookingBook,
    ToolRejected,
    parse_party_size,
    resolve_date,
    resolve_time,
    run_booking_tool,
)

TODAY = date(2026, 12, 3)  # a Thursday


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [
        ("19:00", "19:00"),
        ("19.30", "19:30"),
        ("7 pm", "19:00"),
        ("7pm", "19:00"),
        ("7:30 p.m.", "19:30"),
        ("12 pm", "12:00"),
        ("12 am", "00:00"),
        ("10 am", "10:00"),
        ("at 8", "20:00"),
        ("11", "11:00"),
        ("seven", "19:00"),
        ("Seven thirty", "19:30"),
        ("half past seven", "19:30"),
        ("quarter past eight pm", "20:15"),
        ("seven o'clock in the evening", "19:00"),
        ("noon", "12:00"),
    ],
)
def test_times_resolve_to_hh_mm(spoken: str, expected: str) -> None:
    assert resolve_time(spoken) == expected


@pytest.mark.parametrize("spoken", ["", "teatime", "25:00", "13 pm", "7:75", "seven banana", 19])
def test_times_that_are_not_times_are_refused(spoken: object) -> None:
    with pytest.raises(ToolRejected) as refused:
        resolve_time(spoken)
    assert refused.value.status == 422


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [
        ("today", date(2026, 12, 3)),
        ("tomorrow", date(2026, 12, 4)),
        ("Friday", date(2026, 12, 4)),
        ("on monday", date(2026, 12, 7)),
        ("thursday", date(2026, 12, 3)),
        ("next thursday", date(2026, 12, 10)),
        ("2026-12-24", date(2026, 12, 24)),
    ],
)
def test_dates_resolve_against_the_servers_date(spoken: str, expected: date) -> None:
    assert resolve_date(spoken, TODAY) == expected


@pytest.mark.parametrize("spoken", ["yesterday", "2026-12-02", "2028-01-01", "", None])
def test_past_far_or_unknown_dates_are_refused(spoken: object) -> None:
    with pytest.raises(ToolRejected):
        resolve_date(spoken, TODAY)


@pytest.mark.parametrize(("raw", "expected"), [(4, 4), ("4", 4), ("four", 4), ("Twenty", 20)])
def test_party_sizes(raw: object, expected: int) -> None:
    assert parse_party_size(raw) == expected


@pytest.mark.parametrize("raw", [0, 21, -1, 4.5, True, "many", None])
def test_party_sizes_outside_1_to_20_are_refused(raw: object) -> None:
    with pytest.raises(ToolRejected):
        parse_party_size(raw)


def test_the_memory_book_books_lists_and_cancels() -> None:
    book = MemoryBookingBook()
    booked = run_booking_tool(
        book, "book_table", "call-1", {"party_size": 2, "date": "today", "time": "8 pm"}, TODAY
    )
    assert booked == {
        "booking_id": "B0001",
        "party_size": 2,
        "date": "2026-12-03",
        "time": "20:00",
        "name": None,
    }
    listed = run_booking_tool(book, "list_bookings", "call-2", {"date": "today"}, TODAY)
    assert listed == {"bookings": [booked]}
    with pytest.raises(ToolRejected):
        run_booking_tool(book, "cancel_booking", "call-2", {}, TODAY)  # none in call-2
    assert run_booking_tool(book, "cancel_booking", "call-1", {}, TODAY) == {"cancelled": "B0001"}
    assert run_booking_tool(book, "list_bookings", "call-1", {}, TODAY) == {"bookings": []}


def test_a_full_memory_book_refuses_with_409() -> None:
    book = MemoryBookingBook(max_active=1)
    arguments = {"party_size": 2, "date": "today", "time": "8 pm"}
    run_booking_tool(book, "book_table", "call-1", arguments, TODAY)
    with pytest.raises(ToolRejected) as refused:
        run_booking_tool(book, "book_table", "call-1", arguments, TODAY)
    assert refused.value.status == 409
