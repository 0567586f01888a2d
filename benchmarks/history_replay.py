"""How fast spooled history drains to a slow backend (issue 11).

    .venv/bin/python benchmarks/history_replay.py [--writes 41] [--calls 8] [--delay 3]
        [--workers 1 4] [--timeout SEC] [--max-timeout SEC]

Spools ``--writes`` transcript entries over ``--calls`` calls, then replays them through
the SpoolReplayer to the reference backend (engine/devbackend, in a thread on loopback)
answering each request after ``--delay`` seconds, once per ``--workers`` value, and prints
the drain rate. Bounded by ``--max-sec`` per run. ``--timeout`` is the adapter's
BACKEND_TIMEOUT_SEC (default: delay + 5 s); below ``--delay`` it measures a backend slower
than the timeout, which the bridge's growing write timeout (``send_write``, capped by
``--max-timeout``, HISTORY_MAX_WRITE_TIMEOUT_SEC; 0 = 8x) has to catch up with.
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
from engine.runtime.history.bridge import send_write
from engine.runtime.history.replayer import SpoolReplayer
from engine.runtime.history.retry import WriteTimeouts
from engine.runtime.ports.control_plane import CallRecord, TranscriptEntry
from engine.runtime.ports.history_store import HistoryWrite
from tests.helpers.refbackend import RefBackendThread


async def run(url: str, workers: int, args: argparse.Namespace, directory: Path) -> None:
    spool = HistorySpool(directory / f"spool-{workers}.sqlite3")
    timeout = args.delay + 5 if args.timeout is None else args.timeout
    plane = HttpControlPlane(url, timeout_sec=timeout, config_cache_ttl_sec=0)
    timeouts = WriteTimeouts(args.max_timeout)
    for call in range(args.calls):
        spool.add(CallRecord(f"w{workers}-c{call}", "default", "s", 1000.0), replay=True, now=1.0)
    for n in range(args.writes):
        call, sequence = n % args.calls, n // args.calls + 1
        entry = TranscriptEntry(f"w{workers}-c{call}", sequence, "user", "hi", 1000.0, 1001.0)
        spool.add(entry, replay=True, now=1.0)
    total = args.calls + args.writes
    done = retried = 0

    async def send(write: HistoryWrite) -> None:
        await send_write(plane, write, timeouts)  # as the bridge sends

    def report(_write: HistoryWrite, outcome: str) -> None:
        nonlocal done, retried
        done += outcome == "replayed"
        retried += outcome == "retried"

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
        f"= {done / elapsed:.2f} writes/s at {args.delay:g} s backend latency, "
        f"{timeout:g} s timeout ({retried} attempts timed out/failed, "
        f"write timeout grown to {timeouts.current or timeout:g} s)"
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
    parser.add_argument("--timeout", type=float, default=None, help="BACKEND_TIMEOUT_SEC")
    parser.add_argument("--max-timeout", type=float, default=0.0, help="0: 8x --timeout")
    asyncio.run(main(parser.parse_args()))
