"""The gRPC limit: real-time 20 ms streams a bare ``grpc.aio`` bidi echo carries per core.

    .venv/bin/python benchmarks/echo_baseline.py                    # sweep, server on core 0
    .venv/bin/python benchmarks/echo_baseline.py --sweep 40,60,70   # chosen points

The server is a bare ``grpc.aio`` server with one generic bidi method that writes every
message back (raw bytes, no protobuf, no engine), in its own process pinned to
``--server-cpus``. The clients are the load benchmark's pattern: separate processes
pinned to ``--client-cpus``, one TCP connection per stream, 640-byte messages (20 ms of
16 kHz PCM16) paced every 20 ms in real time. Per point: round-trip p50/p99 of every
message, server CPU (% of one core). The limit is the largest number of streams whose
p99 stays under ``--p99-ms`` (20); "per core" divides it by the server's CPU share there.
Bounded: every point lasts ``--duration-sec``, the whole run ``--max-sec``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadkit
from loadkit import CpuMeter, machine, percentile, pinned, run_clients, wait_for_line

FRAME_BYTES = 640
FRAME_SEC = 0.020
METHOD = "/echo.Echo/Stream"


async def _serve(port: int) -> None:
    import grpc

    async def echo(requests: Any, context: Any) -> Any:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo listening on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


async def _stream(target: str, start_at: float, stop_at: float, rtts: list[float]) -> int:
    import grpc

    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    options = [("grpc.use_local_subchannel_pool", 1)]
    errors = 0
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.stream_stream(METHOD)()
        sent: list[float] = []

        async def read() -> None:
            async for _ in call:
                rtts.append((loop.time() - sent.pop(0)) * 1000)

        reader = asyncio.create_task(read())
        payload = bytes(FRAME_BYTES)
        next_at = loop.time()
        try:
            while next_at < stop_at:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(loop.time())
                await call.write(payload)
                next_at += FRAME_SEC
            await call.done_writing()
            await asyncio.wait_for(reader, 10)
        except Exception:  # counted, not fatal: a benchmark reports failures
            errors += 1
            reader.cancel()
    return errors


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = loop.time()
    rtts: list[float] = []
    starts = [t0 + i * args.ramp_sec / max(1, args.streams) for i in range(args.streams)]
    stop_at = t0 + args.ramp_sec + args.duration_sec
    errors = await asyncio.gather(*(_stream(args.target, s, stop_at, rtts) for s in starts))
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    # Only the steady part: drop the ramp's messages (they are the first ones sent).
    skip = int(len(rtts) * args.ramp_sec / (args.ramp_sec + args.duration_sec) / 2)
    return {
        "rtts": rtts[skip:],
        "errors": sum(errors),
        "cpu_sec": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        "wall_sec": loop.time() - t0,
    }


def _orchestrate(args: argparse.Namespace) -> int:
    print(f"# benchmarks/echo_baseline.py {' '.join(sys.argv[1:])}")
    print(f"# {machine()}")
    with tempfile.TemporaryDirectory(prefix="echo-") as tmp:
        log = Path(tmp) / "server.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "server"]
        with open(log, "wb") as out:
            server = subprocess.Popen(pinned(cmd, args.server_cpus), stderr=out)
        try:
            port = wait_for_line(log, re.compile(r"listening on [\d.]+:(\d+)"), server, 60)
            target = f"127.0.0.1:{port.group(1)}"
            print("| streams | server CPU (waiting for a CPU) | streams per core at this load "
                  "| RTT p50 / p99 ms | errors | client CPU |")  # fmt: skip
            print("|---|---|---|---|---|---|")
            best: tuple[int, float] | None = None
            deadline = time.monotonic() + args.max_sec
            for n in [int(x) for x in args.sweep.split(",") if x.strip()]:
                if time.monotonic() > deadline:
                    break
                per = args.streams_per_client
                procs = math.ceil(n / per)
                cmds = []
                for i in range(procs):
                    count = n // procs + (1 if i < n % procs else 0)
                    cmds.append(pinned([
                        sys.executable, str(Path(__file__).resolve()), "client",
                        "--target", target, "--streams", str(count),
                        "--duration-sec", str(args.duration_sec), "--ramp-sec", str(args.ramp_sec),
                    ], args.client_cpus))  # fmt: skip
                meter = CpuMeter(server.pid)
                meter.start()
                results = run_clients(cmds, args.ramp_sec + args.duration_sec + 60)
                _, cpu_pct = meter.stop()
                waited = meter.wait_pct
                rtts = [r for res in results for r in res.get("rtts", [])]
                errors = sum(res.get("errors", 1) for res in results)
                client_cpu = sum(res.get("cpu_sec", 0.0) for res in results)
                wall = max((res.get("wall_sec", 0.0) for res in results), default=1.0)
                p99 = percentile(rtts, 99)
                per_core = n / max(1e-9, cpu_pct / 100)
                print(f"| {n} | {cpu_pct:.0f}% ({waited:.0f}%) | {per_core:.0f} | "
                      f"{percentile(rtts, 50):.1f} / {p99:.1f} | {errors} | "
                      f"{100 * client_cpu / wall:.0f}% ({procs} proc) |",
                      flush=True)  # fmt: skip
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps({"n": n, "cpu_pct": cpu_pct, "p50": percentile(
                            rtts, 50), "p99": p99, "errors": errors}) + "\n")  # fmt: skip
                if p99 < args.p99_ms and not errors:
                    best = (n, cpu_pct)
                elif best is not None and not args.keep_going:
                    break
            if best is not None:
                n, cpu_pct = best
                print(f"# limit: {n} streams with p99 < {args.p99_ms:g} ms at {cpu_pct:.0f}% "
                      f"of a core: {n / max(1e-9, min(1.0, cpu_pct / 100)):.0f} streams per "
                      "core")  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "server", "client"])
    parser.add_argument("--sweep", default="10,20,40,60,70,80,100,120,150")
    parser.add_argument("--p99-ms", type=float, default=20.0)
    parser.add_argument("--keep-going", action="store_true", help="run every point")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--duration-sec", type=float, default=15.0)
    parser.add_argument("--ramp-sec", type=float, default=2.0)
    parser.add_argument("--streams-per-client", type=int, default=25)
    parser.add_argument(
        "--nice", type=int, default=0,
        help="run the engine/server and clients at this niceness (e.g. -20 as root on a shared "
        "machine, so other load disturbs the figures less)",
    )  # fmt: skip
    parser.add_argument("--max-sec", type=float, default=900.0)
    parser.add_argument("--json", help="append each point's figures to this file")
    parser.add_argument("--target")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    loadkit.NICE = args.nice
    if args.mode == "server":
        asyncio.run(_serve(args.port))
        return 0
    if args.mode == "client":
        print(json.dumps(asyncio.run(_client(args))))
        return 0
    return _orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
