"""Engine-only mode books for real: NullControlPlane runs the booking tools in memory."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.control_plane.null import NullControlPlane
from engine.runtime.ports.control_plane import ToolFailed, ToolInvocation

TODAY = date(2026, 12, 3)
BOOK = {"party_size": 4, "date": "tomorrow", "time": "seven", "name": "Ada"}


@pytest.fixture
def plane(tmp_path: Path) -> NullControlPlane:
    return NullControlPlane(tmp_path, today=lambda: TODAY)


def invocation(name: str, arguments: dict[str, Any], tool_call_id: str = "t1") -> ToolInvocation:
    return ToolInvocation("call-1", tool_call_id, "bella-vista", name, arguments)


async def test_book_table_books_in_memory(plane: NullControlPlane) -> None:
    result = await plane.execute_tool(invocation("book_table", BOOK), timeout_sec=5.0)
    assert result == {
        "booking_id": "B0001",
        "party_size": 4,
        "date": "2026-12-04",
        "time": "19:00",
        "name": "Ada",
    }
    listed = await plane.execute_tool(invocation("list_bookings", {}, "t2"), timeout_sec=5.0)
    assert listed == {"bookings": [result]}


async def test_a_repeated_key_books_once(plane: NullControlPlane) -> None:
    calls = [plane.execute_tool(invocation("book_table", BOOK), timeout_sec=5.0) for _ in range(3)]
    results = await asyncio.gather(*calls)
    assert len({r["booking_id"] for r in results}) == 1
    listed = await plane.execute_tool(invocation("list_bookings", {}, "t2"), timeout_sec=5.0)
    assert len(listed["bookings"]) == 1


async def test_cancel_booking_cancels_this_calls_latest(plane: NullControlPlane) -> None:
    await plane.execute_tool(invocation("book_table", BOOK), timeout_sec=5.0)
    cancelled = await plane.execute_tool(invocation("cancel_booking", {}, "t2"), timeout_sec=5.0)
    assert cancelled == {"cancelled": "B0001"}


async def test_invalid_arguments_are_rejected_and_stay_rejected(plane: NullControlPlane) -> None:
    bad = invocation("book_table", {**BOOK, "party_size": 50})
    for _ in range(2):
        with pytest.raises(ToolFailed) as failed:
            await plane.execute_tool(bad, timeout_sec=5.0)
        assert failed.value.outcome == "rejected"
        assert "party_size" in str(failed.value)


async def test_other_tools_are_unavailable_without_a_backend(plane: NullControlPlane) -> None:
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(invocation("order_pizza", {}), timeout_sec=5.0)
    assert failed.value.outcome == "unavailable"
    assert "needs a backend" in str(failed.value)


async def test_each_engine_only_plane_has_its_own_book(tmp_path: Path) -> None:
    first, second = NullControlPlane(tmp_path), NullControlPlane(tmp_path)
    await first.execute_tool(invocation("book_table", BOOK), timeout_sec=5.0)
    listed = await second.execute_tool(invocation("list_bookings", {}, "t2"), timeout_sec=5.0)
    assert listed == {"bookings": []}
