"""The history spool: durable pending writes, dead letters and open calls in SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.history.spool import HistorySpool, decode, encode
from engine.runtime.history import SpoolInUseError
from engine.runtime.ports.control_plane import CallRecord, CallSummary, TranscriptEntry

NOW = 2000.0


def entry(call_id: str, sequence: int) -> TranscriptEntry:
    return TranscriptEntry(call_id, sequence, "user", f"turn {sequence}", 1000.0, 1000.0 + sequence)


def summary(call_id: str) -> CallSummary:
    return CallSummary(call_id, 1010.0, 10.0, 2, "hangup")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "history.sqlite3"


@pytest.fixture
def spool(path: Path) -> Iterator[HistorySpool]:
    spool = HistorySpool(path)
    yield spool
    spool.close()


def test_the_file_is_in_wal_mode_with_the_three_tables(spool: HistorySpool, path: Path) -> None:
    db = sqlite3.connect(path)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    db.close()
    assert {"pending_writes", "dead_letters", "open_calls"} <= tables
    assert mode == "wal"


def test_replay_order_is_create_then_entries_by_sequence_then_finalize(
    spool: HistorySpool,
) -> None:
    spool.add(summary("a"), replay=True, now=NOW)
    spool.add(entry("a", 2), replay=True, now=NOW)
    spool.add(entry("a", 1), replay=True, now=NOW)
    spool.add(CallRecord("a", "support", "s", 1000.0), replay=True, now=NOW)
    kinds = [(row.kind, row.sequence) for row in spool.replayable(100)]
    assert kinds == [("create_call", 0), ("transcript", 1), ("transcript", 2), ("finalize", 0)]


def test_a_call_with_a_live_row_is_held_back_from_the_replayer(spool: HistorySpool) -> None:
    live = spool.add(entry("a", 1), replay=False, now=NOW)
    spool.add(entry("a", 2), replay=True, now=NOW)
    spool.add(entry("b", 1), replay=True, now=NOW)
    assert [row.call_id for row in spool.replayable(100)] == ["b"]
    spool.hand_to_replayer([live])
    assert [(r.call_id, r.sequence) for r in spool.replayable(100)] == [
        ("a", 1), ("a", 2), ("b", 1),
    ]  # fmt: skip


def test_delete_and_dead_letter_remove_the_pending_row(spool: HistorySpool) -> None:
    delivered = spool.add(entry("a", 1), replay=True, now=NOW)
    refused = spool.add(entry("a", 2), replay=True, now=NOW)
    spool.record_failure(refused)
    spool.delete(delivered)
    spool.dead_letter(refused, "PermanentWriteError: 422", now=NOW)
    assert spool.pending_count() == 0
    [letter] = spool.dead_letters()
    assert (letter.call_id, letter.sequence, letter.attempts) == ("a", 2, 2)
    assert letter.reason == "PermanentWriteError: 422"


def test_reopening_hands_live_rows_to_the_replayer_and_reports_open_calls(path: Path) -> None:
    first = HistorySpool(path)
    first.add(CallRecord("open", "support", "s", 1000.0), replay=False, now=NOW)
    first.add(entry("open", 1), replay=False, now=NOW)
    first.add(entry("open", 2), replay=False, now=NOW)
    first.add(CallRecord("done", "support", "s", 1000.0), replay=False, now=NOW)
    first.add(summary("done"), replay=False, now=NOW)
    first.close()

    second = HistorySpool(path)
    try:
        assert len(second.replayable(100)) == 5
        [orphan] = second.orphaned_calls()
        assert (orphan.call_id, orphan.turn_count, orphan.last_ended_at) == ("open", 2, 1002.0)
        assert orphan.pending_entries == 2
    finally:
        second.close()


def test_a_second_holder_is_refused_while_the_first_is_alive(
    spool: HistorySpool, path: Path
) -> None:
    with pytest.raises(SpoolInUseError):
        HistorySpool(path)


def test_payloads_round_trip_and_odd_metadata_is_kept_as_text() -> None:
    original = TranscriptEntry(
        "a", 3, "assistant", "Hel", 1.0, 2.0, interrupted=True, full_text="Hello there",
        metadata={"latency_ms": 120, "obj": object()},
    )  # fmt: skip
    restored = decode("transcript", encode(original))
    assert isinstance(restored, TranscriptEntry)
    assert restored.full_text == "Hello there" and restored.interrupted
    assert restored.metadata["latency_ms"] == 120
    assert isinstance(restored.metadata["obj"], str)
