"""How fast spooled history drains to a slow backend (issue 11).

    .venv/bin/python benchmarks/history_replay.py [--writes 41] [--calls 8] [--delay 3]
        [--workers 1 4]

Spools ``--writes`` transcript entries over ``--calls`` calls, then replays them through
the SpoolReplayer to the reference backend (engine/devbackend, in a thread on loopback)
answering each request after ``--delay`` seconds, once per ``--workers`` value, and prints
the drain rate. Bounded by ``--max-sec`` per run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.control_plane.backend import HttpControlPlane
from adapters.history.spool import HistorySpool
from engine.runtime.history.replayer import SpoolReplayer
from engine.runtime.ports.control_plane import CallRecord, TranscriptEntry
from engine.runtime.ports.history_store import HistoryWrite
from tests.helpers.refbackend import RefBackendThread


async def run(url: str, workers: int, args: argparse.Namespace, directory: Path) -> None:
    spool = HistorySpool(directory / f"spool-{workers}.sqlite3")
    plane = HttpControlPlane(url, timeout_sec=args.delay + 5, config_cache_ttl_sec=0)
    for call in range(args.calls):
        spool.add(CallRecord(f"w{workers}-c{call}", "default", "s", 1000.0), replay=True, now=1.0)
    for n in range(args.writes):
        call, sequence = n % args.calls, n // args.calls + 1
        entry = TranscriptEntry(f"w{workers}-c{call}", sequence, "user", "hi", 1000.0, 1001.0)
        spool.add(entry, replay=True, now=1.0)
    total = args.calls + args.writes
    done = 0

    async def send(write: HistoryWrite) -> None:
        if isinstance(write, CallRecord):
            await plane.create_call(write)
        elif isinstance(write, TranscriptEntry):
            await plane.append_transcript(write)

    def report(_write: HistoryWrite, outcome: str) -> None:
        nonlocal done
        done += outcome == "replayed"

    replayer = SpoolReplayer(spool, send, report, backoff_sec=0.1, concurrency=workers)
    started = time.monotonic()
    task = asyncio.create_task(replayer.run())
    while done < total and time.monotonic() - started < args.max_sec:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await plane.close()
    spool.close()
    print(
        f"workers={workers}: {done}/{total} writes in {elapsed:.1f} s "
        f"= {done / elapsed:.2f} writes/s at {args.delay:g} s backend latency"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with RefBackendThread(directory / "backend.sqlite3") as backend:
            await backend.faults(delay_sec=args.delay)
            for workers in args.workers:
                await run(backend.url, workers, args, directory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=41)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--delay", type=float, default=3.0, help="backend latency, seconds")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-sec", type=float, default=180.0)
    asyncio.run(main(parser.parse_args()))
