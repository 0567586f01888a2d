"""The spool's replayer delivers like the live workers: calls in parallel up to
HISTORY_WORKERS, each call's writes in order, a failing call never holding up the others,
and a backend that comes back is probed soon."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.history.spool import HistorySpool
from engine.runtime.history.replayer import SpoolReplayer
from engine.runtime.history.retry import probe_delay
from engine.runtime.ports.control_plane import (
    ControlPlaneUnavailable,
    TranscriptEntry,
    TransientWriteError,
)
from engine.runtime.ports.history_store import HistoryWrite

NOW = 2000.0


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[HistorySpool]:
    spool = HistorySpool(tmp_path / "history.sqlite3")
    yield spool
    spool.close()


class SlowBackend:
    """Answers each write after the test releases it; records order and concurrency."""

    def __init__(self, failing_call: str = "") -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.delivered: list[tuple[str, int]] = []
        self.release = asyncio.Event()
        self.failing_call = failing_call

    async def send(self, write: HistoryWrite) -> None:
        assert isinstance(write, TranscriptEntry)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.release.wait()
            if write.call_id == self.failing_call:
                raise ControlPlaneUnavailable("backend did not answer within 5 s")
            self.delivered.append((write.call_id, write.sequence))
        finally:
            self.in_flight -= 1


async def replay_all(spool: HistorySpool, backend: SlowBackend, workers: int) -> None:
    replayer = SpoolReplayer(
        spool, backend.send, lambda _w, _o: None, backoff_sec=60, concurrency=workers
    )
    task = asyncio.create_task(replayer.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while backend.in_flight < min(workers, 10):
        assert loop.time() < deadline, "the replayer never filled its slots"
        await asyncio.sleep(0.01)
    backend.release.set()
    while spool.replayable(1000) and not backend.failing_call:
        assert loop.time() < deadline, "the spool never drained"
        await asyncio.sleep(0.01)
    while backend.failing_call and len(backend.delivered) < 9 * 3:
        assert loop.time() < deadline, "healthy calls waited behind the failing one"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def fill(spool: HistorySpool, calls: int, per_call: int) -> None:
    for sequence in range(1, per_call + 1):
        for call in range(calls):
            write = TranscriptEntry(f"c{call}", sequence, "user", "hi", 1000.0, 1000.0 + sequence)
            spool.add(write, replay=True, now=NOW)


async def test_replay_runs_calls_in_parallel_up_to_the_worker_count(spool: HistorySpool) -> None:
    fill(spool, calls=10, per_call=3)
    backend = SlowBackend()
    await replay_all(spool, backend, workers=4)
    assert backend.max_in_flight == 4
    assert len(backend.delivered) == 30
    for call in range(10):
        sequences = [seq for cid, seq in backend.delivered if cid == f"c{call}"]
        assert sequences == [1, 2, 3]


async def test_a_failing_call_holds_back_only_its_own_later_writes(spool: HistorySpool) -> None:
    fill(spool, calls=10, per_call=3)
    backend = SlowBackend(failing_call="c0")
    await replay_all(spool, backend, workers=4)
    assert not [w for w in backend.delivered if w[0] == "c0"]
    assert len(backend.delivered) == 27
    assert [(row.call_id, row.sequence) for row in spool.replayable(1000)] == [
        ("c0", 1), ("c0", 2), ("c0", 3),
    ]  # fmt: skip


class GatedBackend:
    """Holds the writes of ``held_call`` until released; fails everything while ``down``."""

    def __init__(self, held_call: str = "") -> None:
        self.held_call = held_call
        self.release = asyncio.Event()
        self.down = False
        self.delivered: list[tuple[str, int]] = []
        self.failed = 0

    async def send(self, write: HistoryWrite) -> None:
        assert isinstance(write, TranscriptEntry)
        if write.call_id == self.held_call:
            await self.release.wait()
        if self.down:
            self.failed += 1
            raise ControlPlaneUnavailable("backend unreachable")
        self.delivered.append((write.call_id, write.sequence))


async def until(predicate: Callable[[], bool], message: str, within_sec: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_sec
    while not predicate():
        assert loop.time() < deadline, message
        await asyncio.sleep(0.01)


def entry(call_id: str, sequence: int) -> TranscriptEntry:
    return TranscriptEntry(call_id, sequence, "user", "hi", 1000.0, 1000.0 + sequence)


async def test_rows_spooled_while_a_long_call_replays_do_not_wait_for_it(
    spool: HistorySpool,
) -> None:
    for sequence in (1, 2, 3):
        spool.add(entry("long", sequence), replay=True, now=NOW)
    backend = GatedBackend(held_call="long")
    replayer = SpoolReplayer(spool, backend.send, lambda _w, _o: None, backoff_sec=0.1,
                             concurrency=2)  # fmt: skip
    async with asyncio.TaskGroup() as group:
        task = group.create_task(replayer.run())
        spool.add(entry("late", 1), replay=True, now=NOW)
        replayer.wake()
        await until(lambda: backend.delivered == [("late", 1)], "the late call waited")
        backend.release.set()
        await until(lambda: len(backend.delivered) == 4, "the long call never finished")
        task.cancel()
    assert [seq for cid, seq in backend.delivered if cid == "long"] == [1, 2, 3]


async def test_after_an_outage_the_first_write_does_not_wait_out_the_backoff(
    spool: HistorySpool,
) -> None:
    fill(spool, calls=3, per_call=2)
    backend = GatedBackend()
    backend.down = True
    # A 60 s backoff: only the probe, at least once a second, can deliver within the test.
    replayer = SpoolReplayer(spool, backend.send, lambda _w, _o: None, backoff_sec=60,
                             concurrency=2)  # fmt: skip
    async with asyncio.TaskGroup() as group:
        task = group.create_task(replayer.run())
        await until(lambda: backend.failed >= 3, "the replayer never tried")
        backend.down = False
        await until(lambda: len(backend.delivered) == 6, "no probe after the outage")
        task.cancel()
    assert backend.failed < 10  # paused while down: one probe at a time, not a storm


def test_a_probe_waits_at_most_its_cap_unless_the_backend_asks_for_longer() -> None:
    assert probe_delay(60, 5, None, cap=1.0) == 1.0
    assert probe_delay(0.1, 1, None, cap=1.0) == pytest.approx(0.1)
    asked = TransientWriteError("429 too many requests", retry_after_sec=7)
    assert probe_delay(0.1, 1, asked, cap=1.0) == 7
