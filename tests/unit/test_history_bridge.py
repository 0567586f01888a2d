"""The history bridge: non-blocking, ordered, retried, spooled and replayed call history."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.history.spool import HistorySpool
from engine.runtime.history import HistoryBridge, HistoryClosedError, HistoryStatus
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    FetchedAssistant,
    PermanentWriteError,
    TranscriptEntry,
    TransientWriteError,
)

Write = CallRecord | TranscriptEntry | CallSummary


class FakeControlPlane:
    """Implements the ControlPlane port; records writes and misbehaves on request."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.attempts = 0
        self.down = False  # every write raises TransientWriteError
        self.transient_failures = 0  # the next N writes raise TransientWriteError
        self.refuse: Callable[[Write], bool] = lambda _: False  # -> PermanentWriteError
        self.gate = asyncio.Event()  # writes wait here while it is clear
        self.gate.set()
        self.waiting = asyncio.Event()  # a write is waiting at the gate
        self.hold: Callable[[Write], bool] = lambda _: False  # these wait for ``unhold``
        self.unhold = asyncio.Event()
        self.sending: list[Write] = []  # writes the backend is answering now

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        raise AssistantNotFound(assistant_id)

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        await self._write(call)

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        await self._write(entry)

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        await self._write(summary)

    async def close(self) -> None:
        pass

    async def _write(self, body: Write) -> None:
        self.attempts += 1
        self.sending.append(body)
        try:
            if self.hold(body):
                await self.unhold.wait()
            if not self.gate.is_set():
                self.waiting.set()
                await self.gate.wait()
        finally:
            self.sending.remove(body)
        if self.down:
            raise TransientWriteError("503 service unavailable")
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise TransientWriteError("500 internal server error")
        if self.refuse(body):
            raise PermanentWriteError("422 unprocessable entry")
        self.writes.append(body)

    def of_call(self, call_id: str) -> list[Write]:
        return [w for w in self.writes if w.call_id == call_id]

    def sequences(self, call_id: str) -> list[int]:
        return [w.sequence for w in self.of_call(call_id) if isinstance(w, TranscriptEntry)]

    def finalizes(self, call_id: str) -> list[CallSummary]:
        return [w for w in self.of_call(call_id) if isinstance(w, CallSummary)]


async def eventually(predicate: Callable[[], bool], within_sec: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_sec
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def call_record(call_id: str) -> CallRecord:
    return CallRecord(call_id, "support", f"session-{call_id}", started_at=1000.0)


def say(call: Any, n: int) -> list[TranscriptEntry]:
    return [
        call.record("user" if i % 2 else "assistant", f"turn {i}", started_at=1000.0 + i,
                    ended_at=1000.5 + i)
        for i in range(n)
    ]  # fmt: skip


def assert_complete(backend: FakeControlPlane, call_id: str, turns: int) -> None:
    """create first, every entry exactly once in order, one finalize last."""
    writes = backend.of_call(call_id)
    assert isinstance(writes[0], CallRecord)
    assert backend.sequences(call_id) == list(range(1, turns + 1))
    assert len(backend.finalizes(call_id)) == 1
    assert isinstance(writes[-1], CallSummary)


def entries_after_finalize(backend: FakeControlPlane, call_id: str) -> int:
    """Transcript entries of the call the backend received after its finalize."""
    writes = backend.of_call(call_id)
    finalize = next(i for i, w in enumerate(writes) if isinstance(w, CallSummary))
    return sum(isinstance(w, TranscriptEntry) for w in writes[finalize:])


def balanced(status: HistoryStatus) -> bool:
    parts = status.delivered + status.pending + status.spooled + status.dropped
    return status.enqueued == parts + status.dead_lettered


@pytest.fixture
def backend() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.sqlite3"


@pytest.fixture
async def make_bridge(
    backend: FakeControlPlane,
) -> AsyncIterator[Callable[..., HistoryBridge]]:
    bridges: list[HistoryBridge] = []

    def make(spool: Path | None = None, **overrides: Any) -> HistoryBridge:
        options: dict[str, Any] = dict(
            queue_max_size=100, retry_max_attempts=3, retry_backoff_sec=0.0,
            finalize_drain_timeout_sec=2.0,
        )  # fmt: skip
        options.update(overrides)
        control_plane = options.pop("control_plane", backend)
        bridge = HistoryBridge(
            control_plane, spool=HistorySpool(spool) if spool else None, **options
        )
        bridges.append(bridge)
        return bridge

    yield make
    for bridge in bridges:
        await bridge.close()


async def test_interleaved_calls_are_each_delivered_in_order(make_bridge, backend) -> None:
    bridge = make_bridge()
    await bridge.start()
    a, b = bridge.open_call(call_record("a")), bridge.open_call(call_record("b"))
    for _ in range(5):
        say(a, 1)
        say(b, 2)
    statuses = await asyncio.gather(a.finalize("hangup"), b.finalize("hangup"))
    assert_complete(backend, "a", 5)
    assert_complete(backend, "b", 10)
    assert [s.finalized for s in statuses] == [True, True]
    assert statuses[1].delivered == 10


async def test_record_does_not_wait_for_a_slow_backend(make_bridge, backend) -> None:
    backend.gate.clear()
    bridge = make_bridge()
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    entries = say(call, 3)
    await backend.waiting.wait()
    assert [e.sequence for e in entries] == [1, 2, 3]
    assert call.status().pending == 3
    assert backend.writes == []
    backend.gate.set()
    await call.finalize("hangup")
    assert_complete(backend, "a", 3)


async def test_a_call_waiting_on_the_backend_holds_one_worker_not_two(make_bridge, backend) -> None:
    backend.hold = lambda w: w.call_id == "slow"
    bridge = make_bridge(workers=2)
    await bridge.start()
    slow = bridge.open_call(call_record("slow"))
    say(slow, 3)  # its create is at the gate; its entries wait for it, not a worker
    other = bridge.open_call(call_record("other"))
    say(other, 2)
    await eventually(lambda: len(backend.of_call("other")) == 3)  # create + 2 entries
    assert [w.call_id for w in backend.sending] == ["slow"]
    backend.unhold.set()
    await asyncio.gather(slow.finalize("hangup"), other.finalize("hangup"))
    assert_complete(backend, "slow", 3)


async def test_the_finalize_tells_how_many_entries_were_not_delivered_when_it_was_sent(
    make_bridge, backend, spool_path
) -> None:
    backend.gate.clear()
    bridge = make_bridge(spool_path, finalize_drain_timeout_sec=0.05)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 4)
    queued = await call.finalize("hangup")  # drain timed out: 4 entries still on their way
    assert queued.pending + queued.spooled == 4
    backend.gate.set()
    await eventually(lambda: len(backend.finalizes("a")) == 1)
    assert_complete(backend, "a", 4)
    assert backend.finalizes("a")[0].pending_entries == entries_after_finalize(backend, "a")


async def test_transient_errors_are_retried_until_delivered(make_bridge, backend) -> None:
    backend.transient_failures = 3
    bridge = make_bridge(retry_max_attempts=5)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 2)
    status = await call.finalize("hangup")
    assert_complete(backend, "a", 2)
    assert status.delivered == 2 and status.finalized
    counters = bridge.counters()
    assert counters.retried == 3
    assert counters.spooled == counters.dropped == 0


async def test_backend_down_for_a_whole_call_then_up_delivers_it_once(
    make_bridge, backend, spool_path
) -> None:
    backend.down = True
    bridge = make_bridge(spool_path, retry_max_attempts=2, finalize_drain_timeout_sec=0.05)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 5)
    status = await call.finalize("hangup")
    assert status.spooled == 5 and not status.finalized and balanced(status)
    backend.down = False
    await eventually(lambda: len(backend.finalizes("a")) == 1)
    assert_complete(backend, "a", 5)
    assert backend.finalizes("a")[0].pending_entries == entries_after_finalize(backend, "a") == 0
    assert call.status().delivered == 5 and call.status().finalized
    assert bridge.counters().replayed == 7  # create, 5 entries, finalize


async def test_full_queue_spills_to_the_spool_and_loses_nothing(
    make_bridge, backend, spool_path
) -> None:
    backend.gate.clear()
    bridge = make_bridge(spool_path, queue_max_size=2)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 20)
    assert call.status().spooled > 0 and call.status().dropped == 0
    backend.gate.set()
    status = await call.finalize("hangup")
    await eventually(lambda: len(backend.finalizes("a")) == 1)
    assert_complete(backend, "a", 20)
    assert status.dropped == 0 and bridge.counters().dropped == 0


async def test_full_queue_without_spool_drops_and_counts(make_bridge) -> None:
    bridge = make_bridge(queue_max_size=2)  # not started: nothing drains the queue
    call = bridge.open_call(call_record("a"))
    say(call, 20)
    status = call.status()
    assert status.dropped == 19  # the create-call and entry 1 fill the queue
    assert status.pending == 1 and balanced(status)
    assert bridge.counters().dropped == 19


async def test_finalize_twice_and_concurrently_sends_one_finalize(make_bridge, backend) -> None:
    bridge = make_bridge()
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 2)
    first, second = await asyncio.gather(call.finalize("hangup"), call.finalize("error"))
    third = await call.finalize("again")
    assert first == second == third
    assert [f.end_reason for f in backend.finalizes("a")] == ["hangup"]


async def test_finalize_on_a_blocked_backend_returns_and_replays_later(
    make_bridge, backend, spool_path
) -> None:
    backend.gate.clear()
    bridge = make_bridge(spool_path, finalize_drain_timeout_sec=0.1)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 3)
    status = await call.finalize("hangup")
    assert status.spooled == 3 and status.pending == 0 and not status.finalized
    assert backend.writes == []
    backend.gate.set()
    await eventually(lambda: len(backend.finalizes("a")) == 1)
    assert_complete(backend, "a", 3)
    assert backend.finalizes("a")[0].pending_entries == entries_after_finalize(backend, "a") == 0


async def test_a_refused_entry_is_dead_lettered_with_the_reason(
    make_bridge, backend, spool_path
) -> None:
    backend.refuse = lambda w: isinstance(w, TranscriptEntry) and w.sequence == 2
    bridge = make_bridge(spool_path)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 3)
    status = await call.finalize("hangup")
    assert backend.sequences("a") == [1, 3]
    assert status.dead_lettered == 1 and status.finalized and balanced(status)
    assert bridge.counters().dead_lettered == 1
    assert backend.attempts == 5  # create, 3 entries, finalize: the refusal is not retried
    await bridge.close()  # it holds the spool's lock
    reader = HistorySpool(spool_path)
    try:
        [letter] = reader.dead_letters()
        assert (letter.call_id, letter.sequence, letter.kind) == ("a", 2, "transcript")
        assert "422 unprocessable entry" in letter.reason
    finally:
        reader.close()


async def test_restart_replays_what_a_killed_bridge_left_and_finalizes_it(
    make_bridge, backend, spool_path
) -> None:
    backend.down = True
    spool = HistorySpool(spool_path)
    killed = HistoryBridge(
        backend, queue_max_size=100, retry_max_attempts=1, retry_backoff_sec=0.0,
        finalize_drain_timeout_sec=1.0, spool=spool,
    )  # fmt: skip
    await killed.start()
    call = killed.open_call(call_record("a"))
    say(call, 4)
    await eventually(lambda: killed.counters().spooled == 5)  # create + 4, all undelivered
    await _kill(spool)

    fresh_backend = FakeControlPlane()
    bridge = make_bridge(spool_path, control_plane=fresh_backend)
    await bridge.start()
    await eventually(lambda: len(fresh_backend.finalizes("a")) == 1)
    assert_complete(fresh_backend, "a", 4)
    [summary] = fresh_backend.finalizes("a")
    assert summary.end_reason == "engine_restarted"
    assert summary.turn_count == 4
    assert summary.duration_sec == pytest.approx(3.5)  # last entry ended at 1003.5
    assert summary.pending_entries == entries_after_finalize(fresh_backend, "a") == 0


async def test_restart_keeps_the_end_reason_of_a_spooled_finalize(
    make_bridge, backend, spool_path
) -> None:
    backend.down = True
    spool = HistorySpool(spool_path)
    killed = HistoryBridge(
        backend, queue_max_size=100, retry_max_attempts=1, retry_backoff_sec=0.0,
        finalize_drain_timeout_sec=0.0, spool=spool,
    )  # fmt: skip
    call = killed.open_call(call_record("a"))  # never started: everything stays queued
    say(call, 2)
    await call.finalize("hangup")
    await _kill(spool)

    fresh_backend = FakeControlPlane()
    bridge = make_bridge(spool_path, control_plane=fresh_backend)
    await bridge.start()
    await eventually(lambda: len(fresh_backend.finalizes("a")) == 1)
    assert_complete(fresh_backend, "a", 2)
    assert fresh_backend.finalizes("a")[0].end_reason == "hangup"


async def test_close_spools_the_queue_and_leaves_no_task(make_bridge, backend, spool_path) -> None:
    backend.gate.clear()
    bridge = make_bridge(spool_path)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    say(call, 3)
    await backend.waiting.wait()
    await bridge.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert call.status().spooled == 3 and balanced(call.status())
    reader = HistorySpool(spool_path)
    try:
        assert reader.pending_count() == 4  # create + 3 entries, ready for the next start
    finally:
        reader.close()


async def test_disabled_history_accepts_calls_and_writes_nothing(make_bridge) -> None:
    backend = FakeControlPlane()
    bridge = make_bridge(control_plane=backend, enabled=False)
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    assert say(call, 2)[1].sequence == 2
    status = await call.finalize("hangup")
    assert not status.enabled and status.enqueued == 0
    assert backend.attempts == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_record_after_finalize_is_refused(make_bridge) -> None:
    bridge = make_bridge()
    await bridge.start()
    call = bridge.open_call(call_record("a"))
    await call.finalize("hangup")
    with pytest.raises(HistoryClosedError):
        say(call, 1)


async def _kill(spool: HistorySpool) -> None:
    """What SIGKILL leaves: every task stops mid-write, the kernel releases the files."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    spool.close()


class JitteryControlPlane(FakeControlPlane):
    """Answers each write after a random short delay, so concurrent writes overtake."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._random = random.Random(seed)

    async def _write(self, body: Write) -> None:
        await asyncio.sleep(self._random.random() * 0.003)
        await super()._write(body)


@pytest.mark.parametrize("workers", [2, 4, 8])
async def test_several_workers_keep_each_call_in_order(make_bridge, workers: int) -> None:
    backend = JitteryControlPlane(seed=workers)
    bridge = make_bridge(control_plane=backend, workers=workers)
    await bridge.start()
    calls = [bridge.open_call(call_record(f"c{n}")) for n in range(6)]
    for _ in range(5):
        for call in calls:
            say(call, 2)
    await asyncio.gather(*(call.finalize("hangup") for call in calls))
    for n in range(6):
        assert_complete(backend, f"c{n}", turns=10)


async def test_a_stuck_call_does_not_hold_up_the_others(make_bridge, backend) -> None:
    bridge = make_bridge(workers=2)
    await bridge.start()
    stuck = bridge.open_call(call_record("stuck"))
    backend.gate.clear()  # the stuck call's create_call hangs at the gate
    await backend.waiting.wait()
    backend.gate = asyncio.Event()  # later writes pass a fresh, open gate
    backend.gate.set()
    other = bridge.open_call(call_record("other"))
    say(other, 3)
    await eventually(lambda: backend.sequences("other") == [1, 2, 3])
    assert backend.of_call("stuck") == []
    say(stuck, 1)
