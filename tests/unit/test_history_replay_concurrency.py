"""The spool's replayer delivers like the live workers: calls in parallel up to
HISTORY_WORKERS, each call's writes in order, a failing call never holding up the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.history.spool import HistorySpool
from engine.runtime.history.replayer import SpoolReplayer
from engine.runtime.ports.control_plane import ControlPlaneUnavailable, TranscriptEntry
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
