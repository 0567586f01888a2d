"""Backend-executed tools: HttpControlPlane.execute_tool against the reference backend.

A real HTTP server on 127.0.0.1 with its real SQLite store; faults are injected through
the backend's own ``POST /_faults`` (``tool_*`` keys), and the backend counts attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.control_plane.backend import HttpControlPlane
from engine.runtime.ports.control_plane import ToolFailed, ToolInvocation
from tests.helpers.refbackend import RefBackend, running_refbackend

TODAY = date(2026, 12, 3)  # a Thursday
CALL_ID = "6f1c2a4e-0000-4000-8000-0000000000aa"
API_KEY = "tool-test-key"
TOOL_ROUTE = "POST /v1/calls/{call_id}/tools/{name}"
FOUR_TOMORROW_AT_SEVEN = {"party_size": 4, "date": "tomorrow", "time": "seven", "name": "Ada"}


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(
        tmp_path / "backend.sqlite3", api_key=API_KEY, today=lambda: TODAY
    ) as ref:
        yield ref


def make_plane(url: str, *, attempt_timeout_sec: float = 2.0) -> HttpControlPlane:
    return HttpControlPlane(
        url, api_key=API_KEY, timeout_sec=attempt_timeout_sec, config_cache_ttl_sec=60.0
    )


@pytest.fixture
async def plane(backend: RefBackend) -> AsyncIterator[HttpControlPlane]:
    adapter = make_plane(backend.url)
    yield adapter
    await adapter.close()


def booking_call(tool_call_id: str = "call_1", **arguments: Any) -> ToolInvocation:
    return ToolInvocation(
        CALL_ID, tool_call_id, "bella-vista", "book_table", arguments or FOUR_TOMORROW_AT_SEVEN
    )


async def attempts(backend: RefBackend) -> int:
    return (await backend.stats()).get(TOOL_ROUTE, 0)


EXPECTED = {
    "booking_id": "B0001",
    "party_size": 4,
    "date": "2026-12-04",
    "time": "19:00",
    "name": "Ada",
}


async def test_a_booking_answers_its_result_and_is_stored(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    result = await plane.execute_tool(booking_call(), timeout_sec=5.0)
    assert result == EXPECTED
    [row] = await backend.bookings()
    assert row == {**EXPECTED, "call_id": CALL_ID, "cancelled": False}


async def test_a_repeated_key_gets_the_stored_result_not_a_second_booking(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    first = await plane.execute_tool(booking_call(), timeout_sec=5.0)
    second = await plane.execute_tool(booking_call(), timeout_sec=5.0)
    assert first == second == EXPECTED
    assert await attempts(backend) == 2
    assert len(await backend.bookings()) == 1


async def test_concurrent_duplicates_book_once(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    results = await asyncio.gather(
        *(plane.execute_tool(booking_call(), timeout_sec=5.0) for _ in range(5))
    )
    assert all(result == EXPECTED for result in results)
    assert len(await backend.bookings()) == 1


async def test_another_tool_call_id_is_another_booking(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await plane.execute_tool(booking_call("call_1"), timeout_sec=5.0)
    second = await plane.execute_tool(booking_call("call_2"), timeout_sec=5.0)
    assert second["booking_id"] == "B0002"
    assert len(await backend.bookings()) == 2


async def test_503s_are_retried_and_the_table_is_booked_once(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(tool_fail_next=2, tool_status=503)
    assert await plane.execute_tool(booking_call(), timeout_sec=5.0) == EXPECTED
    assert await attempts(backend) == 3
    assert len(await backend.bookings()) == 1


async def test_an_answer_lost_to_a_timeout_is_retried_and_gets_the_stored_booking(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    # The first attempt books, then its answer is held past the 2 s attempt timeout.
    await backend.faults(tool_delay_ms=10_000, tool_delay_next=1)
    assert await plane.execute_tool(booking_call(), timeout_sec=8.0) == EXPECTED
    assert await attempts(backend) >= 2
    assert len(await backend.bookings()) == 1


async def test_a_503_then_a_timeout_then_the_answer_books_once(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(tool_fail_next=1, tool_status=503, tool_delay_ms=10_000, tool_delay_next=1)
    assert await plane.execute_tool(booking_call(), timeout_sec=8.0) == EXPECTED
    assert await attempts(backend) >= 3
    assert len(await backend.bookings()) == 1


async def test_a_refusal_is_rejected_at_once_with_the_backends_message(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(
            booking_call(party_size=40, date="today", time="7 pm"), timeout_sec=5.0
        )
    assert failed.value.outcome == "rejected"
    assert "422" in str(failed.value)
    assert "party_size: must be an integer from 1 to 20" in str(failed.value)
    assert await attempts(backend) == 1
    assert await backend.bookings() == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_no_4xx_is_retried(backend: RefBackend, plane: HttpControlPlane, status: int) -> None:
    await backend.faults(tool_fail_next=1, tool_status=status)
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(booking_call(), timeout_sec=5.0)
    assert failed.value.outcome == "rejected"
    assert "injected tool fault" in str(failed.value)
    assert await attempts(backend) == 1


async def test_an_unknown_tool_is_rejected_by_the_backend(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    invocation = ToolInvocation(CALL_ID, "call_1", "bella-vista", "order_pizza", {})
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(invocation, timeout_sec=5.0)
    assert failed.value.outcome == "rejected"
    assert "404" in str(failed.value)
    assert await attempts(backend) == 1


async def test_408_and_429_are_retried(backend: RefBackend, plane: HttpControlPlane) -> None:
    await backend.faults(tool_fail_next=1, tool_status=408)
    assert await plane.execute_tool(booking_call("call_1"), timeout_sec=5.0) == EXPECTED
    await backend.faults(tool_fail_next=1, tool_status=429)
    await plane.execute_tool(booking_call("call_2"), timeout_sec=5.0)
    assert await attempts(backend) == 4


async def test_retry_after_within_the_timeout_is_waited_for_then_retried(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(tool_fail_next=1, tool_status=429, tool_retry_after=1)
    assert await plane.execute_tool(booking_call(), timeout_sec=5.0) == EXPECTED
    assert await attempts(backend) == 2


async def test_retry_after_beyond_the_timeout_ends_the_call_without_retrying_early(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    # Without the hint the backoff (50 ms) would have allowed many retries in 2 s.
    await backend.faults(tool_fail_next=1, tool_status=503, tool_retry_after=30)
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(booking_call(), timeout_sec=2.0)
    assert failed.value.outcome == "unavailable"
    assert await attempts(backend) == 1
    assert await backend.bookings() == []


async def test_a_backend_that_never_answers_in_time_is_a_timeout(
    backend: RefBackend, tmp_path: Path
) -> None:
    plane = make_plane(backend.url, attempt_timeout_sec=0.5)
    await backend.faults(tool_delay_ms=10_000)
    try:
        with pytest.raises(ToolFailed) as failed:
            await plane.execute_tool(booking_call(), timeout_sec=1.2)
    finally:
        await plane.close()
    assert failed.value.outcome == "timeout"
    assert await attempts(backend) >= 2
    # The tool ran (its answer was late), and every retry found the stored booking.
    assert len(await backend.bookings()) == 1


async def test_a_5xx_until_the_time_runs_out_is_unavailable(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(tool_fail_next=1000, tool_status=503)
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(booking_call(), timeout_sec=0.5)
    assert failed.value.outcome == "unavailable"
    assert "503" in str(failed.value)
    assert await attempts(backend) >= 2


async def test_a_malformed_answer_is_unavailable_and_not_retried(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(malformed_next=1)
    with pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(booking_call(), timeout_sec=5.0)
    assert failed.value.outcome == "unavailable"
    assert await attempts(backend) == 1


async def test_an_unreachable_backend_is_unavailable() -> None:
    plane = make_plane("http://127.0.0.1:9", attempt_timeout_sec=0.5)
    try:
        with pytest.raises(ToolFailed) as failed:
            await plane.execute_tool(booking_call(), timeout_sec=0.5)
    finally:
        await plane.close()
    assert failed.value.outcome == "unavailable"
    assert "unreachable" in str(failed.value)


async def test_failures_never_log_the_arguments(
    backend: RefBackend, plane: HttpControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    secret = {"party_size": 99, "date": "today", "time": "7 pm", "name": "Zebulon Quartz"}
    with caplog.at_level(logging.DEBUG), pytest.raises(ToolFailed) as failed:
        await plane.execute_tool(booking_call(**secret), timeout_sec=5.0)
    assert "Zebulon" not in caplog.text
    assert "Zebulon" not in str(failed.value)
    assert "book_table" in caplog.text
