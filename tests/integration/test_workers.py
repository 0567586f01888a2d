"""`voice-engine serve --workers N`: real processes on one port, drained together, spools apart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from adapters.history.spool import HistorySpool
from engine.cpus import usable_cpus
from engine.workers import orphan_spools, worker_spool_path
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import (
    EngineProcess,
    engine_processes,
    http_backend_env,
    spawn_engine,
)
from tests.helpers.refbackend import RefBackend, running_refbackend
from tests.integration.test_history_e2e import ALWAYS, ASSISTANT, BackendDb

CALLS = 16  # connections the kernel spreads over 2 workers: all on one has p = 2**-15
_DRAINING = re.compile(r"worker-(\d+) engine\.server: shutting down: draining (\d+) live")


async def _until_logged(process: EngineProcess, pattern: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(re.search(pattern, line) for line in process.log):
        if loop.time() > deadline:
            raise AssertionError(f"no {pattern!r} in the log:\n" + "".join(process.log))
        await asyncio.sleep(0.05)


async def _group(tmp_path: Path, workers: int = 2, **env: str) -> EngineProcess:
    env.setdefault("HISTORY_SPOOL_PATH", str(tmp_path / "spool.sqlite3"))
    process = await spawn_engine(tmp_path, ENGINE_WORKERS=str(workers), **env)
    if workers > 1:  # the first worker's line came first; wait for the whole group
        await _until_logged(process, rf"with {workers} workers")
    return process


def _own_channel(target: str) -> grpc.aio.Channel:
    # One TCP connection per call, as separate callers have: SO_REUSEPORT balances connections.
    return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _open_calls(target: str, assistant: str, n: int) -> list[tuple[ConverseClient, str]]:
    calls = []
    for _ in range(n):
        client = ConverseClient(_own_channel(target))
        client.start(assistant, options=pb.SessionOptions(text_only=True))
        calls.append(client)
    opened = []
    for client in calls:
        started = (await client.until("started")).started
        await client.until("response_done")  # the greeting
        opened.append((client, started.call_id))
    return opened


@pytest.fixture
async def spawned(tmp_path: Path) -> AsyncIterator[list[EngineProcess]]:
    async with engine_processes(tmp_path) as processes:
        yield processes


async def test_sigterm_drains_the_calls_of_every_worker_and_exits_zero(
    tmp_path: Path, spawned: list[EngineProcess]
) -> None:
    group = await _group(tmp_path, ENGINE_SHUTDOWN_GRACE_SEC="0.5")
    spawned.append(group)
    workers = _children(group.proc.pid)
    assert len(workers) == 2
    calls = await _open_calls(group.target, "default", CALLS)

    group.proc.send_signal(signal.SIGTERM)
    for client, _ in calls:
        ended = (await client.until("ended", timeout=30)).ended
        assert ended.reason == pb.END_REASON_SERVER_SHUTDOWN
        assert await client.status() == grpc.StatusCode.OK
    assert await asyncio.wait_for(group.proc.wait(), 60) == 0
    assert not any(_alive(pid) for pid in workers)
    # Both workers had live calls to drain, and together exactly ours.
    drained = {m.group(1): int(m.group(2)) for m in map(_DRAINING.search, group.log) if m}
    assert set(drained) == {"0", "1"}
    assert sum(drained.values()) == CALLS and all(drained.values())


async def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(
    tmp_path: Path, spawned: list[EngineProcess]
) -> None:
    group = await _group(tmp_path)
    spawned.append(group)
    before = _children(group.proc.pid)
    victim = min(before)

    os.kill(victim, signal.SIGKILL)
    await _until_logged(group, r"worker \d restarted")
    after = _children(group.proc.pid)
    assert len(after) == 2 and victim not in after
    for client, _ in await _open_calls(group.target, "default", 4):
        client.send(end=pb.EndSession())
        assert (await client.until("ended")).ended.reason == pb.END_REASON_CLIENT_ENDED


async def test_a_killed_supervisor_takes_its_workers_with_it(
    tmp_path: Path, spawned: list[EngineProcess]
) -> None:
    group = await _group(tmp_path)
    spawned.append(group)
    workers = _children(group.proc.pid)
    assert await group.kill() == -9
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while any(_alive(pid) for pid in workers):
        assert loop.time() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.05)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(ASSISTANT)
        await ref.reset()
        try:
            yield ref
        finally:
            await ref.reset()


async def test_each_worker_spools_its_own_calls_and_a_smaller_group_replays_them_all(
    tmp_path: Path, spawned: list[EngineProcess], backend: RefBackend
) -> None:
    spool = tmp_path / "spool.sqlite3"
    env = http_backend_env(backend.url, spool, ENGINE_SHUTDOWN_GRACE_SEC="0.5")
    group = await _group(tmp_path, **env)
    spawned.append(group)
    calls = await _open_calls(group.target, ASSISTANT["id"], CALLS)
    await backend.faults(fail_next=ALWAYS, status=503)  # history can only go to the spools
    for client, _ in calls:
        client.send(end=pb.EndSession())
        await client.until("ended")
    group.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(group.proc.wait(), 60) == 0

    per_worker = []
    for index in (0, 1):
        held = HistorySpool(worker_spool_path(spool, index) or spool)
        per_worker.append({write.call_id for write in held.replayable(10_000)})
        held.close()
    assert per_worker[0] and per_worker[1]  # both workers took calls...
    assert not per_worker[0] & per_worker[1]  # ...each call is in one spool only...
    assert per_worker[0] | per_worker[1] == {call_id for _, call_id in calls}  # ...all of them
    assert orphan_spools(spool, 1) == [worker_spool_path(spool, 1)]

    # One engine now: it replays its own spool and adopts worker 1's, then removes that file.
    await backend.reset()
    single = await _group(tmp_path, workers=1, **env)
    spawned.append(single)
    db = BackendDb(tmp_path / "backend.sqlite3")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not all(db.summaries(call_id) for _, call_id in calls):
        assert loop.time() < deadline, "not every call was finalized from the spools"
        await asyncio.sleep(0.1)
    while orphan_spools(spool, 1):
        assert loop.time() < deadline, "the adopted spool was not removed"
        await asyncio.sleep(0.1)


def test_worker_spools_keep_stable_names_and_orphans_are_found_by_index(tmp_path: Path) -> None:
    base = tmp_path / "history.sqlite3"
    assert worker_spool_path(base, 0) == base
    assert worker_spool_path(base, 3) == tmp_path / "history.worker3.sqlite3"
    assert worker_spool_path(None, 2) is None
    names = ("history.worker1.sqlite3", "history.worker4.sqlite3", "history.worker4.sqlite3-wal",
             "history.worker2.sqlite3.lock", "other.worker5.db")  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("")
    assert orphan_spools(base, 2) == [tmp_path / "history.worker4.sqlite3"]
    assert orphan_spools(base, 1) == [tmp_path / "history.worker1.sqlite3",
                                      tmp_path / "history.worker4.sqlite3"]  # fmt: skip


def test_the_default_worker_count_follows_the_cpus_and_a_container_quota(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    unlimited = tmp_path / "cpu.max"
    unlimited.write_text("max 100000\n")
    assert usable_cpus(unlimited) == cpus
    one_and_a_half = tmp_path / "quota"
    one_and_a_half.write_text("150000 100000\n")
    assert usable_cpus(one_and_a_half) == min(cpus, 2)
    assert usable_cpus(tmp_path / "missing") == cpus


async def test_an_engine_on_uvloop_holds_a_session(
    tmp_path: Path, spawned: list[EngineProcess]
) -> None:
    pytest.importorskip("uvloop")
    engine = await _group(tmp_path, workers=1, ENGINE_EVENT_LOOP="uvloop")
    spawned.append(engine)
    [(client, _)] = await _open_calls(engine.target, "default", 1)
    client.send(text=pb.TextInput(text="what are your opening hours"))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED and "noon" in done.text
    client.send(end=pb.EndSession())
    assert (await client.until("ended")).ended.reason == pb.END_REASON_CLIENT_ENDED
