"""The reference backend's tool endpoint and booking tools, spoken to over plain HTTP.

What any backend implementing the contract must do: one booking per Idempotency-Key
(sequential and concurrent repeats get the stored answer), JSON errors for unknown tools
and bad arguments, and tool entries in the call history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.refbackend import RefBackend, running_refbackend

TODAY = date(2026, 12, 3)  # a Thursday
CALL_ID = "6f1c2a4e-0000-4000-8000-0000000000bb"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3", today=lambda: TODAY) as ref:
        yield ref


@pytest.fixture
async def http(backend: RefBackend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10.0) as client:
        yield client


async def call_tool(
    http: httpx.AsyncClient,
    name: str,
    arguments: dict[str, Any],
    tool_call_id: str = "call_1",
    *,
    call_id: str = CALL_ID,
    key: str | None = None,
) -> httpx.Response:
    return await http.post(
        f"/v1/calls/{call_id}/tools/{name}",
        json={"tool_call_id": tool_call_id, "assistant_id": "bella-vista", "arguments": arguments},
        headers={"Idempotency-Key": key or f"{call_id}:{tool_call_id}"},
    )


BOOK = {"party_size": "four", "date": "tomorrow", "time": "7 pm"}


async def test_book_table_answers_the_booking(http: httpx.AsyncClient) -> None:
    response = await call_tool(http, "book_table", {**BOOK, "name": "  Ada  Lovelace "})
    assert response.status_code == 200
    assert response.json() == {
        "result": {
            "booking_id": "B0001",
            "party_size": 4,
            "date": "2026-12-04",
            "time": "19:00",
            "name": "Ada Lovelace",
        }
    }


async def test_a_repeated_key_answers_the_same_status_and_body(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    first = await call_tool(http, "book_table", BOOK)
    second = await call_tool(http, "book_table", BOOK)
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert len(await backend.bookings()) == 1


async def test_concurrent_repeats_of_a_key_book_once(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    responses = await asyncio.gather(*(call_tool(http, "book_table", BOOK) for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert len(await backend.bookings()) == 1


async def test_concurrent_repeats_while_the_first_is_held_book_once(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    await backend.faults(tool_delay_ms=10_000, tool_delay_next=1)
    held = asyncio.create_task(call_tool(http, "book_table", BOOK))
    try:
        await booked(backend, 1)  # the first request ran and holds its answer
        repeats = await asyncio.gather(*(call_tool(http, "book_table", BOOK) for _ in range(3)))
        assert {r.json()["result"]["booking_id"] for r in repeats} == {"B0001"}
        assert len(await backend.bookings()) == 1
    finally:
        held.cancel()


async def booked(backend: RefBackend, count: int) -> None:
    """Wait (bounded) until the backend holds ``count`` bookings."""
    async with asyncio.timeout(10):
        while len(await backend.bookings()) < count:
            await asyncio.sleep(0.02)


async def test_a_refusal_is_stored_under_its_key_too(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    first = await call_tool(http, "cancel_booking", {})
    assert first.status_code == 404
    await call_tool(http, "book_table", BOOK, "call_2")
    again = await call_tool(http, "cancel_booking", {})
    assert (again.status_code, again.json()) == (404, first.json())
    assert [b["cancelled"] for b in await backend.bookings()] == [False]


async def test_a_key_reused_with_other_arguments_is_422(http: httpx.AsyncClient) -> None:
    await call_tool(http, "book_table", BOOK)
    response = await call_tool(http, "book_table", {**BOOK, "party_size": 2})
    assert response.status_code == 422
    assert "different body" in response.json()["error"]


async def test_an_unknown_tool_is_404_with_a_json_error(http: httpx.AsyncClient) -> None:
    response = await call_tool(http, "order_pizza", {})
    assert response.status_code == 404
    assert "order_pizza" in response.json()["error"]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"date": "today", "time": "19:00"}, "needs party_size"),
        ({**BOOK, "party_size": 0}, "party_size"),
        ({**BOOK, "party_size": 21}, "party_size"),
        ({**BOOK, "party_size": True}, "party_size"),
        ({**BOOK, "date": "2026-12-01"}, "in the past"),
        ({**BOOK, "date": "someday"}, "date: not understood"),
        ({**BOOK, "time": "25:00"}, "time"),
        ({**BOOK, "time": "teatime"}, "time: not understood"),
        ({**BOOK, "name": 7}, "name"),
    ],
)
async def test_invalid_arguments_are_422(
    backend: RefBackend, http: httpx.AsyncClient, arguments: dict[str, Any], problem: str
) -> None:
    response = await call_tool(http, "book_table", arguments)
    assert response.status_code == 422
    assert problem in response.json()["error"]
    assert await backend.bookings() == []


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"tool_call_id": "call_1", "assistant_id": "a", "arguments": {}}),
        ({"Idempotency-Key": "wrong"}, {"tool_call_id": "call_1", "assistant_id": "a"}),
        (
            {"Idempotency-Key": f"{CALL_ID}:other"},
            {"tool_call_id": "call_1", "assistant_id": "a", "arguments": {}},
        ),
        ({"Idempotency-Key": f"{CALL_ID}:call_1"}, {"assistant_id": "a", "arguments": {}}),
    ],
)
async def test_malformed_tool_requests_are_400(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await http.post(f"/v1/calls/{CALL_ID}/tools/book_table", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]


async def test_list_bookings_lists_active_bookings_by_date_and_time(
    http: httpx.AsyncClient,
) -> None:
    await call_tool(http, "book_table", {**BOOK, "time": "20:30"}, "c1")
    await call_tool(http, "book_table", {**BOOK, "date": "friday", "time": "18:00"}, "c2")
    await call_tool(http, "book_table", {**BOOK, "date": "saturday"}, "c3")
    everything = (await call_tool(http, "list_bookings", {}, "c4")).json()["result"]
    assert [(b["date"], b["time"]) for b in everything["bookings"]] == [
        ("2026-12-04", "18:00"),
        ("2026-12-04", "20:30"),
        ("2026-12-05", "19:00"),
    ]
    saturday = (await call_tool(http, "list_bookings", {"date": "saturday"}, "c5")).json()
    assert [b["booking_id"] for b in saturday["result"]["bookings"]] == ["B0003"]


async def test_cancel_booking_cancels_the_callers_latest_booking(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    await call_tool(http, "book_table", BOOK, "c1")
    await call_tool(http, "book_table", BOOK, "c2")
    other_call = "6f1c2a4e-0000-4000-8000-0000000000cc"
    await call_tool(http, "book_table", BOOK, "c1", call_id=other_call)
    response = await call_tool(http, "cancel_booking", {}, "c3")
    assert response.json() == {"result": {"cancelled": "B0002"}}
    listed = (await call_tool(http, "list_bookings", {}, "c4")).json()["result"]["bookings"]
    assert [b["booking_id"] for b in listed] == ["B0001", "B0003"]


async def test_cancel_booking_by_id_and_an_unknown_id_is_404(http: httpx.AsyncClient) -> None:
    await call_tool(http, "book_table", BOOK, "c1")
    cancelled = await call_tool(http, "cancel_booking", {"booking_id": "b0001"}, "c2")
    assert cancelled.json() == {"result": {"cancelled": "B0001"}}
    again = await call_tool(http, "cancel_booking", {"booking_id": "B0001"}, "c3")
    assert again.status_code == 404
    assert "no active booking" in again.json()["error"]


async def test_tool_faults_are_shown_and_reset(backend: RefBackend) -> None:
    shown = await backend.faults(tool_fail_next=2, tool_status=429, tool_retry_after=3)
    assert (shown["tool_fail_next"], shown["tool_status"], shown["tool_retry_after"]) == (
        2,
        429,
        "3",
    )
    shown = await backend.faults(reset=True)
    assert (shown["tool_fail_next"], shown["tool_delay_ms"]) == (0, 0.0)


async def test_tool_entries_are_stored_and_listed_with_the_call(
    backend: RefBackend, http: httpx.AsyncClient
) -> None:
    call = {"call_id": CALL_ID, "assistant_id": "a", "session_id": "s", "started_at": 1.0}
    await http.post("/v1/calls", json=call, headers={"Idempotency-Key": CALL_ID})
    metadata = {
        "tool_call_id": "call_1",
        "name": "book_table",
        "arguments": BOOK,
        "executor": "backend",
        "outcome": "ok",
        "result": {"booking_id": "B0001"},
        "latency_ms": 12.5,
    }
    entry = {
        "call_id": CALL_ID, "sequence": 1, "role": "tool", "text": "booked B0001",
        "started_at": 2.0, "ended_at": 2.1, "metadata": metadata,
    }  # fmt: skip
    headers = {"Idempotency-Key": f"{CALL_ID}:1"}
    response = await http.post(f"/v1/calls/{CALL_ID}/transcripts", json=entry, headers=headers)
    assert response.status_code == 201
    [stored] = (await backend.get_call(CALL_ID))["transcripts"]
    assert stored["role"] == "tool"
    assert stored["metadata"] == metadata


async def test_a_tool_entry_without_its_call_id_and_name_is_400(http: httpx.AsyncClient) -> None:
    entry = {
        "call_id": CALL_ID, "sequence": 1, "role": "tool", "text": "x",
        "started_at": 2.0, "ended_at": 2.1, "metadata": {"name": "book_table"},
    }  # fmt: skip
    headers = {"Idempotency-Key": f"{CALL_ID}:1"}
    response = await http.post(f"/v1/calls/{CALL_ID}/transcripts", json=entry, headers=headers)
    assert response.status_code == 400
    assert "tool_call_id" in response.json()["error"]
