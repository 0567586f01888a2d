"""How fast spooled history drains to a slow backend, and how soon after an outage.

    .venv/bin/python benchmarks/history_replay.py [--writes 120] [--calls 12] [--delay 3]
        [--workers 4] [--outage SEC] [--backoff 0.5] [--timeout SEC] [--max-timeout SEC]

Spools ``--writes`` transcript entries over ``--calls`` calls of uneven length (call ``c``
gets a share proportional to ``c % 4 + 1``: real calls differ), then replays them through
the SpoolReplayer to the reference backend (engine/devbackend, in a thread on loopback)
answering each request after ``--delay`` seconds, once per ``--workers`` value, and prints
the drain rate. With ``--outage SEC`` every write fails at once for the first SEC seconds
(as against a backend that refuses connections) and the run also prints how long after
the recovery the first write was delivered (that includes one ``--delay``).
``--backoff`` is HISTORY_RETRY_BACKOFF_SEC. Bounded by ``--max-sec`` per run.
``--timeout`` is the adapter's BACKEND_TIMEOUT_SEC (default: delay + 5 s); below
``--delay`` it measures a backend slower than the timeout, which the bridge's growing
write timeout (``send_write``, capped by ``--max-timeout``, HISTORY_MAX_WRITE_TIMEOUT_SEC;
0 = 8x) has to catch up with.
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
from engine.runtime.history.retry import WriteTimeouts, send_write
from engine.runtime.ports.control_plane import CallRecord, TranscriptEntry, TransientWriteError
from engine.runtime.ports.history_store import HistoryWrite
from tests.helpers.refbackend import RefBackend, RefBackendThread


def call_lengths(writes: int, calls: int) -> list[int]:
    """Uneven call lengths (weights 1, 2, 3, 4, 1, 2, ...) summing to ``writes``."""
    weights = [c % 4 + 1 for c in range(calls)]
    lengths = [writes * w // sum(weights) for w in weights]
    for c in range(writes - sum(lengths)):
        lengths[-1 - c % calls] += 1
    return lengths


def fill(spool: HistorySpool, prefix: str, lengths: list[int]) -> int:
    """Spool a create and ``lengths[c]`` entries per call; returns the rows stored."""
    for call, length in enumerate(lengths):
        call_id = f"{prefix}-c{call}"
        spool.add(CallRecord(call_id, "default", "s", 1000.0), replay=True, now=1.0)
        for sequence in range(1, length + 1):
            entry = TranscriptEntry(call_id, sequence, "user", "hi", 1000.0, 1001.0)
            spool.add(entry, replay=True, now=1.0)
    return len(lengths) + sum(lengths)


async def run(backend: RefBackend, workers: int, args: argparse.Namespace, tmp: Path) -> None:
    spool = HistorySpool(tmp / f"spool-{workers}.sqlite3")
    timeout = args.delay + 5 if args.timeout is None else args.timeout
    plane = HttpControlPlane(backend.url, timeout_sec=timeout, config_cache_ttl_sec=0)
    timeouts = WriteTimeouts(args.max_timeout)
    total = fill(spool, f"w{workers}-{time.monotonic_ns()}", call_lengths(args.writes, args.calls))
    done = retried = 0
    first_after_recovery: float | None = None
    recovered_at: float | None = None

    async def send(write: HistoryWrite) -> None:
        if recovered_at is None and args.outage > 0:
            raise TransientWriteError("backend unreachable (simulated outage)")
        await send_write(plane, write, timeouts)  # as the bridge sends

    def report(_write: HistoryWrite, outcome: str) -> None:
        nonlocal done, retried, first_after_recovery
        done += outcome == "replayed"
        retried += outcome == "retried"
        if outcome == "replayed" and first_after_recovery is None and recovered_at is not None:
            first_after_recovery = time.monotonic() - recovered_at

    replayer = SpoolReplayer(spool, send, report, backoff_sec=args.backoff, concurrency=workers)
    started = time.monotonic()
    task = asyncio.create_task(replayer.run())
    while done < total and time.monotonic() - started < args.max_sec:
        if recovered_at is None and time.monotonic() - started >= args.outage:
            recovered_at = time.monotonic()
        await asyncio.sleep(0.05)
    ended = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await plane.close()
    spool.close()
    drain = ended - (recovered_at or started)
    outage = "" if args.outage <= 0 else (
        f"; outage {args.outage:g} s, first write {first_after_recovery or float('nan'):.1f} s "
        f"after the recovery"
    )  # fmt: skip
    print(
        f"workers={workers}: {done}/{total} writes in {drain:.1f} s after the backend was up "
        f"= {done / drain:.2f} writes/s at {args.delay:g} s backend latency, "
        f"{timeout:g} s timeout ({retried} attempts timed out/failed, "
        f"write timeout grown to {timeouts.current or timeout:g} s){outage}"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with RefBackendThread(directory / "backend.sqlite3") as backend:
            await backend.faults(delay_sec=args.delay)
            for workers in args.workers:
                await run(backend, workers, args, directory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writes", type=int, default=120)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--delay", type=float, default=3.0, help="backend latency, seconds")
    parser.add_argument("--workers", type=int, nargs="+", default=[4])
    parser.add_argument("--outage", type=float, default=0.0, help="seconds of 503 at the start")
    parser.add_argument("--backoff", type=float, default=0.5, help="HISTORY_RETRY_BACKOFF_SEC")
    parser.add_argument("--max-sec", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=None, help="BACKEND_TIMEOUT_SEC")
    parser.add_argument("--max-timeout", type=float, default=0.0, help="0: 8x --timeout")
    asyncio.run(main(parser.parse_args()))
