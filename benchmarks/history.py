"""How much the history bridge costs the turn path, and how fast it delivers.

    .venv/bin/python benchmarks/history.py [--entries N] [--calls C] [--backend URL]

Measures ``CallHistory.record`` (p50/p99 µs) with the spool off and on, then the
delivered rate (entries/s) to an in-process fake backend, or to an HTTP backend over
loopback with ``--backend`` (uses adapters.control_plane.backend.HttpControlPlane).
Bounded: at most ``--entries`` records per run and ``--max-sec`` per delivery run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.history.spool import HistorySpool
from engine.runtime.history import HistoryBridge
from engine.runtime.ports.control_plane import (
    CallRecord,
    CallSummary,
    ControlPlane,
    FetchedAssistant,
    TranscriptEntry,
)


class InProcessBackend:
    """A ControlPlane that accepts every write at once (the upper bound of the bridge)."""

    def __init__(self) -> None:
        self.entries = 0

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        raise NotImplementedError

    async def create_call(self, call: CallRecord) -> None:
        await asyncio.sleep(0)

    async def append_transcript(self, entry: TranscriptEntry) -> None:
        await asyncio.sleep(0)  # a real adapter yields to the loop on every write
        self.entries += 1

    async def finalize_call(self, summary: CallSummary) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        pass


WORKERS = 4  # set from --workers; the engine's default (HISTORY_WORKERS)


def make_bridge(
    control_plane: ControlPlane, spool_path: Path | None, size: int, drain_sec: float = 1.0
) -> HistoryBridge:
    return HistoryBridge(
        control_plane,
        queue_max_size=size,
        retry_max_attempts=5,
        retry_backoff_sec=0.5,
        finalize_drain_timeout_sec=drain_sec,
        spool=HistorySpool(spool_path) if spool_path else None,
        workers=WORKERS,
    )


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


async def record_cost(spool_path: Path | None, entries: int) -> tuple[float, float]:
    """µs per record() while the worker is not started (pure turn-path cost)."""
    bridge = make_bridge(InProcessBackend(), spool_path, entries + 10)
    call = bridge.open_call(CallRecord(f"bench-{time.time_ns()}", "bench", "s", time.time()))
    samples = []
    for i in range(entries):
        t0 = time.perf_counter_ns()
        call.record("user", f"turn {i} " + "x" * 80, started_at=1.0, ended_at=2.0)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    await bridge.close()  # without a spool this logs the (expected) unsent entries as lost
    return percentile(samples, 50), percentile(samples, 99)


async def delivery_rate(
    control_plane: ControlPlane, spool_path: Path | None, entries: int, calls: int, max_sec: float
) -> tuple[int, float]:
    bridge = make_bridge(control_plane, spool_path, entries + calls * 2 + 10, max_sec)
    await bridge.start()
    histories = [
        bridge.open_call(CallRecord(f"bench-{time.time_ns()}-{c}", "bench", "s", time.time()))
        for c in range(calls)
    ]
    t0 = time.perf_counter()
    for i in range(entries):
        histories[i % calls].record("user", f"turn {i}", started_at=1.0, ended_at=2.0)
    # finalize waits (event-driven, bounded by its drain timeout) for each call's entries
    await asyncio.gather(*(h.finalize("bench") for h in histories))
    elapsed = time.perf_counter() - t0
    delivered = sum(h.status().delivered for h in histories)
    await bridge.close()
    return delivered, delivered / elapsed


async def main(args: argparse.Namespace) -> None:
    global WORKERS
    WORKERS = args.workers
    print(f"history workers: {WORKERS}")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"record() cost over {args.entries} entries (worker idle):")
        for label, path in (("spool off", None), ("spool on ", Path(tmp) / "cost.sqlite3")):
            p50, p99 = await record_cost(path, args.entries)
            print(f"  {label}: p50 {p50:7.1f} µs   p99 {p99:7.1f} µs")
        control_plane: Any = InProcessBackend()
        target = "in-process fake backend"
        if args.backend:
            from adapters.control_plane.backend import HttpControlPlane

            control_plane = HttpControlPlane(
                args.backend, api_key=args.api_key, timeout_sec=5.0, config_cache_ttl_sec=0.0
            )
            target = f"HTTP backend at {args.backend}"
        print(f"delivery to the {target}, {args.entries} entries over {args.calls} calls:")
        for label, path in (("spool off", None), ("spool on ", Path(tmp) / "rate.sqlite3")):
            done, rate = await delivery_rate(
                control_plane, path, args.entries, args.calls, args.max_sec
            )
            print(f"  {label}: {done} delivered, {rate:9.0f} entries/s")
        await control_plane.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="records per run (max 10^6)")
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls")
    parser.add_argument("--max-sec", type=float, default=30.0, help="cap per delivery run")
    parser.add_argument("--backend", help="base URL of an HTTP backend (e.g. engine/devbackend)")
    parser.add_argument("--api-key", default=None, help="bearer token for --backend")
    parser.add_argument(
        "--workers", type=int, default=4, choices=range(1, 65), help="HISTORY_WORKERS"
    )
    options = parser.parse_args()
    options.entries = max(1, min(options.entries, 1_000_000))
    asyncio.run(main(options))
