"""Capacity: N live calls against one engine process group, measured from outside.

    .venv/bin/python benchmarks/load.py --providers testkit --workers 1          # test kit
    .venv/bin/python benchmarks/load.py --providers embedded --workers 1         # embedded
    .venv/bin/python benchmarks/load.py --providers testkit --workers 2 --engine-cpus 0,1
    .venv/bin/python benchmarks/load.py --providers embedded --synchronized --sweep 1,10
    .venv/bin/python benchmarks/load.py --target 127.0.0.1:50051 --sweep 20  # a running engine

The engine runs as its own process group (``python -m engine serve --workers W``), pinned
with ``taskset`` to ``--engine-cpus`` (default core 0); the callers are separate client
processes (``--sessions-per-client`` calls each) pinned to ``--client-cpus`` (default
core 1), all on loopback. Every call streams 20 ms LINEAR16 16 kHz frames paced in real
time: a question of about 1.2 s, digital silence while it waits for the reply to be
spoken to the end (``response_done``), a random pause of 1-4 s, the next question; with
``--synchronized`` every call starts its questions on the same shared clock slots.

Per turn: server ``end_of_speech_to_first_audio_ms`` (the capacity budget's figure), the client's
own end of speech (last speech frame sent) -> first reply audio received, for the test
kit the engine overhead (from sending the frame that completes the configured end
silence to the first reply audio received: both gRPC hops and the whole turn path, free
of the client's own pacing jitter), and how many 20 ms input frames the server was behind when it
signalled end of speech (frames sent by then minus frames it had processed). Per point:
engine CPU (% of one core, the whole process tree) and RSS, the clients' own CPU and how
late they were at pacing (a saturated client invalidates the point), errors.

Calls start at random within ``--ramp-sec`` (3 s: a herd whose first questions all come
within a few seconds) or at ``--arrival-rate`` calls a second. The "later turns" column is
the p95 without each call's first question: the steady state once the calls are up.

The sweep (``--sweep``, default 1,10,20,40,60,80,100,...) stops after the first point
whose p95 is more than ``--budget-ms`` (100) over the single-call p95, or at ``--max-n``.
Bounded: every point lasts ``--duration-sec`` (+ ramp), every client has a timeout, the
whole run ``--max-sec``. Prints one markdown table row per point.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadkit
from loadkit import (
    REPO_ROOT,
    CpuMeter,
    machine,
    percentile,
    pinned,
    run_clients,
    tree_rss_mib,
    wait_for_line,
)

RATE = 16000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
QUESTIONS = [  # the testkit assistant's transcripts, in order; the default assistant's phrases
    "what are your opening hours",
    "where are you located",
    "i would like to book a table",
    "can i see the menu",
]
SPEECH_MS = 1200  # test-kit question length
PAUSE_SEC = (1.0, 4.0)
REPLY_TIMEOUT_SEC = 20.0
SPEECH_LEVEL = 500  # |sample| above this is speech in the embedded questions
DEFAULT_SWEEP = "1,10,20,40,60,80,100,120,150,200"
_LISTENING = re.compile(r"listening on [\w.:\[\]-]+:(\d+)( with \d+ workers)?")


# --- the client: N sessions in one process ---------------------------------------------


@dataclass
class Turn:
    server_ms: float | None = None  # end_of_speech_to_first_audio_ms
    final_ms: float | None = None  # end_of_speech_to_final_transcript_ms
    client_ms: float | None = None  # last speech frame sent -> first audio received
    lag_frames: float | None = None  # frames the server was behind at speech_stopped
    overhead_ms: float | None = None  # frame that completed the end silence sent -> first audio
    heard_right: bool | None = None
    nth: int = 0  # the call's first question is 1 (asked while all calls are starting)
    at_sec: float = 0.0  # when it was asked, from the client's start


@dataclass
class SessionReport:
    turns: list[Turn] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    frames: int = 0
    late_frames: int = 0  # the client itself sent a frame > 10 ms after its time
    underruns: int = 0  # reply audio chunks that arrived after their play time


async def _question_frames(providers: str) -> list[tuple[list[bytes], int]]:
    """Per question: its 20 ms frames and the index of the last one holding speech."""
    out = []
    if providers == "testkit":
        for index in range(len(QUESTIONS)):
            frame = (index + 1).to_bytes(2, "little", signed=True) * (FRAME_BYTES // 2)
            frames = [frame] * (SPEECH_MS // FRAME_MS)
            out.append((frames, len(frames) - 1))
        return out
    import numpy as np

    from engine.audio.formats import AudioEncoding, AudioFormat
    from tests.helpers.speech import spoken

    fmt = AudioFormat(AudioEncoding.LINEAR16, RATE)
    for text in QUESTIONS:
        pcm = await spoken(text, fmt, lead_ms=0, tail_ms=0, noise_level=0)
        pcm += bytes(-len(pcm) % FRAME_BYTES)
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        loud = [
            i for i, f in enumerate(frames)
            if np.abs(np.frombuffer(f, dtype="<i2")).max() > SPEECH_LEVEL
        ]  # fmt: skip
        out.append((frames, loud[-1]))
    return out


async def _session(
    args: argparse.Namespace,
    questions: list[tuple[list[bytes], int]],
    rng: random.Random,
    start_at: float,
    stop_at: float,
    sync_origin: float | None,
) -> SessionReport:
    import grpc
    from voiceengine.v1 import converse_pb2 as pb
    from voiceengine.v1 import converse_pb2_grpc as pb_grpc

    report = SessionReport()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    # A connection of its own, as a real caller has (and so SO_REUSEPORT can spread them).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channel = grpc.aio.insecure_channel(args.target, options=options)
    silence = pb.ConverseRequest(audio=pb.AudioInput(data=bytes(FRAME_BYTES)))
    speech = [[pb.ConverseRequest(audio=pb.AudioInput(data=f)) for f in q] for q, _ in questions]
    wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
    state: dict[str, Any] = {"sent": 0, "eos_at": None, "turn": None, "eot_frame": -1}
    reply_done = asyncio.Event()
    try:
        call = pb_grpc.VoiceEngineServiceStub(channel).Converse()
        await call.write(pb.ConverseRequest(start=pb.StartSession(
            assistant_id=args.assistant, input_audio=wire, output_audio=wire,
            options=pb.SessionOptions(interim_transcripts=args.interim))))  # fmt: skip

        async def read() -> None:
            first_audio_at = 0.0
            played_ms = 0
            async for message in call:
                kind = message.WhichOneof("event")
                now = loop.time()
                turn: Turn | None = state["turn"]
                if kind == "audio":
                    if turn is not None and turn.client_ms is None and state["eos_at"]:
                        turn.client_ms = (now - state["eos_at"]) * 1000
                        if state["eot_at"]:
                            turn.overhead_ms = (now - state["eot_at"]) * 1000
                    if played_ms == 0:
                        first_audio_at = now
                    elif now > first_audio_at + played_ms / 1000 + 0.02:
                        report.underruns += 1
                    played_ms += message.audio.duration_ms
                elif kind == "speech_stopped" and turn is not None:
                    done_ms = message.speech_stopped.offset_ms + args.end_silence_ms
                    turn.lag_frames = max(0.0, (state["sent"] * FRAME_MS - done_ms) / FRAME_MS)
                elif kind == "transcript" and turn is not None and message.transcript.is_final:
                    turn.heard_right = message.transcript.text == state["expected"]
                elif kind == "metrics" and turn is not None:
                    if message.metrics.HasField("end_of_speech_to_first_audio_ms"):
                        turn.server_ms = message.metrics.end_of_speech_to_first_audio_ms
                    if message.metrics.HasField("end_of_speech_to_final_transcript_ms"):
                        turn.final_ms = message.metrics.end_of_speech_to_final_transcript_ms
                elif kind == "response_done":
                    played_ms = 0
                    reply_done.set()

        reader = asyncio.create_task(read())
        next_at = loop.time()

        async def send(request: Any) -> None:
            nonlocal next_at
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.010:
                report.late_frames += 1
            await call.write(request)
            state["sent"] += 1
            if state["sent"] == state["eot_frame"]:
                state["eot_at"] = loop.time()
            report.frames += 1
            next_at += FRAME_MS / 1000

        async def silence_until(done: asyncio.Event | None, until: float | None) -> bool:
            while not (done is not None and done.is_set()):
                if until is not None and loop.time() >= until:
                    return done is None
                if reader.done():
                    return False
                await send(silence)
            return True

        # The greeting, then: question, reply, pause, again.
        if not await silence_until(reply_done, loop.time() + REPLY_TIMEOUT_SEC):
            report.errors.append("no greeting")
        q = rng.randrange(len(questions))
        while loop.time() < stop_at and not reader.done():
            if sync_origin is not None:
                period = args.sync_period_sec
                slot = sync_origin + math.ceil((loop.time() + 1.0 - sync_origin) / period) * period
                await silence_until(None, slot)
            else:
                await silence_until(None, loop.time() + rng.uniform(*PAUSE_SEC))
            if loop.time() >= stop_at:
                break
            last_speech = questions[q][1]
            turn = Turn(nth=len(report.turns) + 1, at_sec=loop.time() - start_at)
            # The frame whose arrival completes the end silence: the turn ends there.
            eot = state["sent"] + last_speech + 1 + args.end_silence_ms // FRAME_MS
            state.update(turn=turn, expected=QUESTIONS[q], eos_at=None, eot_at=None, eot_frame=eot)
            reply_done.clear()
            for i, request in enumerate(speech[q]):
                await send(request)
                if i == last_speech:
                    state["eos_at"] = loop.time()
            ok = await silence_until(reply_done, loop.time() + REPLY_TIMEOUT_SEC)
            report.turns.append(turn)
            if not ok:
                report.errors.append("no reply" if not reader.done() else "stream ended")
                break
            q = (q + 1) % len(questions)
        await call.write(pb.ConverseRequest(end=pb.EndSession()))
        await call.done_writing()
        await asyncio.wait_for(reader, 15)
    except Exception as exc:  # a benchmark counts failures instead of stopping
        report.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await channel.close()
    return report


async def _client_main(args: argparse.Namespace) -> dict[str, Any]:
    questions = await _question_frames(args.providers)
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = loop.time()
    # Shared wall-clock origin (--sync-origin, epoch seconds) mapped onto this loop's clock.
    sync = None if args.sync_origin is None else t0 + (args.sync_origin - time.time())
    starts = [t0 + rng.uniform(0, args.ramp_sec) for _ in range(args.sessions)]
    stop_at = t0 + args.ramp_sec + args.duration_sec
    reports = await asyncio.gather(*(
        _session(args, questions, random.Random(rng.random()), s, stop_at, sync) for s in starts
    ))  # fmt: skip
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = loop.time() - t0
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "turns": [asdict(t) for r in reports for t in r.turns],
        "errors": [e for r in reports for e in r.errors],
        "frames": sum(r.frames for r in reports),
        "late_frames": sum(r.late_frames for r in reports),
        "underruns": sum(r.underruns for r in reports),
        "cpu_sec": cpu,
        "wall_sec": wall,
    }


# --- the orchestrator --------------------------------------------------------------------


class EngineGroup:
    """``python -m engine serve --workers W`` pinned to some CPUs; its log in a temp dir."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        env = {
            **os.environ,
            "ENGINE_HOST": "127.0.0.1",
            "ENGINE_PORT": "0",
            "BACKEND_MODE": "disabled",
            "ENGINE_MAX_SESSIONS": "2000",
            "HISTORY_SPOOL_PATH": str(workdir / "spool.sqlite3"),
            "ASSISTANT_LOCAL_CONFIG_DIR": str(_agents_dir(args, workdir)),
            "ENGINE_EVENT_LOOP": args.event_loop,
        }
        self.log = workdir / "engine.log"
        cmd = [sys.executable, "-m", "engine", "serve", "--workers", str(args.workers)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                pinned(cmd, args.engine_cpus), env=env, cwd=REPO_ROOT, stderr=log,
                stdout=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        pattern = _LISTENING if args.workers == 1 else re.compile(r":(\d+) with \d+ workers")
        self.port = int(wait_for_line(self.log, pattern, self.proc, 120).group(1))
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _agents_dir(args: argparse.Namespace, workdir: Path) -> Path:
    """The bundled assistants, with ``asr.final`` and ``turn.detector`` set on ``default``
    when asked."""
    import yaml

    source = args.agents_dir or REPO_ROOT / "engine" / "config" / "agents"
    if not args.asr_final and not args.turn_detector:
        return source
    target = workdir / "agents"
    target.mkdir()
    for path in source.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc.get("id") == "default" and args.asr_final:
            doc.setdefault("asr", {})["final"] = args.asr_final
        if doc.get("id") == "default" and args.turn_detector:
            doc.setdefault("turn", {})["detector"] = args.turn_detector
        (target / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


GO_CLIENT = Path(__file__).resolve().parent.parent / ".tools" / "go" / "bin" / "voice-engine-load"


def _write_questions(providers: str, path: Path) -> None:
    """The questions for the Go client (benchmarks/goload): text, PCM, last speech frame."""
    frames = asyncio.run(_question_frames(providers))
    path.write_text(json.dumps([
        {"text": text, "pcm": base64.b64encode(b"".join(q)).decode(), "last_speech": last}
        for text, (q, last) in zip(QUESTIONS, frames, strict=True)
    ]))  # fmt: skip


def _client_cmds(args: argparse.Namespace, target: str, n: int, point: int) -> list[list[str]]:
    per = max(1, args.sessions_per_client) if args.client == "python" else n
    procs = math.ceil(n / per)
    sync = str(time.time() + args.ramp_sec + 3.0) if args.synchronized else None
    cmds = []
    for i in range(procs):
        count = n // procs + (1 if i < n % procs else 0)
        if args.client == "go":
            cmd = [
                str(GO_CLIENT), "-target", target, "-sessions", str(count),
                "-assistant", args.assistant, "-questions", args.questions_file,
                "-duration-sec", str(args.duration_sec), "-ramp-sec", str(args.ramp_sec),
                "-seed", str(point * 1000 + i), "-end-silence-ms", str(args.end_silence_ms),
                "-sync-period-sec", str(args.sync_period_sec),
            ]  # fmt: skip
            cmd += ["-sync-origin", sync] if sync is not None else []
            cmd += ["-interim"] if args.interim else []
            cmds.append(pinned(cmd, args.client_cpus))
            continue
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "client", "--target", target,
            "--sessions", str(count), "--providers", args.providers,
            "--assistant", args.assistant, "--duration-sec", str(args.duration_sec),
            "--ramp-sec", str(args.ramp_sec), "--seed", str(point * 1000 + i),
            "--end-silence-ms", str(args.end_silence_ms),
            "--sync-period-sec", str(args.sync_period_sec),
        ]  # fmt: skip
        if sync is not None:
            cmd += ["--sync-origin", sync]
        if args.interim:
            cmd += ["--interim"]
        cmds.append(pinned(cmd, args.client_cpus))
    return cmds


def _fmt(values: list[float], *qs: float) -> str:
    if not values:
        return "-"
    return " / ".join(f"{percentile(values, q):.0f}" for q in qs)


def _point(args: argparse.Namespace, target: str, pid: int | None, n: int) -> dict[str, Any]:
    meter = CpuMeter(pid) if pid else None
    if meter:
        meter.start()
    duration = args.duration_sec * (2 if n == 1 else 1)
    ramp = args.ramp_sec if args.arrival_rate is None else max(1.0, n / args.arrival_rate)
    args = argparse.Namespace(**{**vars(args), "ramp_sec": ramp})
    run_args = argparse.Namespace(**{**vars(args), "duration_sec": duration})
    cmds = _client_cmds(run_args, target, n, n)
    # RSS while every call is live: sampled in the middle of the point by a helper thread.
    rss: list[float] = []
    if pid:
        import threading

        def sample() -> None:
            time.sleep(args.ramp_sec + duration / 2)
            rss.append(tree_rss_mib(pid))

        threading.Thread(target=sample, daemon=True).start()
    results = run_clients(cmds, timeout_sec=args.ramp_sec + duration + 90)
    cpu_sec, cpu_pct = meter.stop() if meter else (math.nan, math.nan)
    run_wait_pct = meter.wait_pct if meter else math.nan
    turns = [t for r in results for t in r.get("turns", [])]
    errors = [e for r in results for e in r.get("errors", [])]
    errors += [r["error"] + ": " + r.get("stderr", "")[-300:] for r in results if "error" in r]
    server = [t["server_ms"] for t in turns if t["server_ms"] is not None]
    # Every call asks its first question while all calls are starting (ramp, greetings):
    # the later turns are the steady state.
    later = [t["server_ms"] for t in turns if t["server_ms"] is not None and t["nth"] > 1]
    # (a turn without the server's figure, counted as "no-metrics" below, sorts with -1)
    timeline = sorted(
        (round(t["at_sec"], 2), t["nth"], t["server_ms"] if t["server_ms"] is not None else -1)
        for t in turns
    )
    final = [t["final_ms"] for t in turns if t.get("final_ms") is not None]
    client = [t["client_ms"] for t in turns if t["client_ms"] is not None]
    lag = [t["lag_frames"] for t in turns if t["lag_frames"] is not None]
    overhead = [t["overhead_ms"] for t in turns if t["overhead_ms"] is not None]
    misheard = sum(1 for t in turns if t["heard_right"] is False)
    missing = sum(1 for t in turns if t["server_ms"] is None)
    client_cpu = sum(r.get("cpu_sec", 0.0) for r in results)
    client_wall = max((r.get("wall_sec", 0.0) for r in results), default=1.0)
    frames = sum(r.get("frames", 0) for r in results)
    late = sum(r.get("late_frames", 0) for r in results)
    return {
        "n": n, "turns": len(turns), "server": server, "final": final, "client": client,
        "server_later": later, "timeline": timeline,
        "lag": lag,
        "overhead": overhead,
        "errors": errors, "misheard": misheard, "missing": missing,
        "cpu_pct": cpu_pct, "cpu_sec": cpu_sec, "run_wait_pct": run_wait_pct,
        "rss_mib": rss[0] if rss else math.nan,
        "client_cpu_pct": 100 * client_cpu / max(1e-9, client_wall), "clients": len(cmds),
        "late_pct": 100 * late / max(1, frames),
        "underruns": sum(r.get("underruns", 0) for r in results),
    }  # fmt: skip


def _row(p: dict[str, Any], idle_rss: float, base_p95: float | None, overhead: bool) -> str:
    extra = (p["rss_mib"] - idle_rss) / p["n"] if not math.isnan(p["rss_mib"]) else math.nan
    p95 = percentile(p["server"], 95)
    delta = "" if base_p95 is None or math.isnan(p95) else f"{p95 - base_p95:+.0f}"
    over = ""
    if overhead:
        over = " | " + _fmt(p["overhead"], 50, 95, 99)
    return (
        f"| {p['n']} | {p['turns']} | {p['cpu_pct']:.0f}% ({p['run_wait_pct']:.0f}%)"
        f" | {p['rss_mib']:.0f} ({extra:.2f}/call)"
        f" | {_fmt(p['server'], 50, 95, 99)} | {delta} | {_fmt(p['server_later'], 95)}"
        f" | {_fmt(p['final'], 50, 95)}"
        f" | {_fmt(p['client'], 50, 95, 99)}{over}"
        f" | {_fmt(p['lag'], 95)} / {max(p['lag'], default=0):.0f}"
        f" | {len(p['errors'])} err, {p['missing']} no-metrics, {p['misheard']} misheard"
        f" | {p['client_cpu_pct']:.0f}% ({p['clients']} proc), late {p['late_pct']:.1f}% |"
    )


def _orchestrate(args: argparse.Namespace) -> int:
    print(f"# benchmarks/load.py {' '.join(sys.argv[1:])}")
    print(f"# {machine()}")
    print(f"# providers={args.providers} workers={args.workers} engine cpus={args.engine_cpus} "
          f"client cpus={args.client_cpus} synchronized={args.synchronized}")  # fmt: skip
    deadline = time.monotonic() + args.max_sec
    with tempfile.TemporaryDirectory(prefix="voice-load-") as tmp:
        if args.client == "go":
            if not GO_CLIENT.exists():
                print(f"# {GO_CLIENT} is missing: run `bash scripts/clients.sh` (it builds it)")
                return 2
            args.questions_file = str(Path(tmp) / "questions.json")
            _write_questions(args.providers, Path(args.questions_file))
        engine = None if args.target else EngineGroup(args, Path(tmp))
        target = args.target or (engine.target if engine else "")
        pid = engine.proc.pid if engine else None
        try:
            idle_rss = tree_rss_mib(pid) if pid else math.nan
            print(f"# engine at {target}, idle RSS {idle_rss:.0f} MiB (process tree)")
            overhead = args.providers == "testkit"
            print("| calls | turns | engine CPU (waiting for a CPU) | RSS MiB (extra per call) "
                  "| server eos->first audio p50/p95/p99 ms | p95 vs 1 call "
                  "| p95, calls' later turns "
                  "| server eos->final transcript p50/p95 "
                  "| client eos->first audio p50/p95/p99"
                  + (" | engine overhead p50/p95/p99" if overhead else "")
                  + " | input lag frames p95/max | errors | client CPU, late frames |")  # fmt: skip
            print("|---" * (13 if overhead else 12) + "|")
            base_p95: float | None = None
            for n in [int(x) for x in args.sweep.split(",") if x.strip()]:
                if n > args.max_n or time.monotonic() > deadline:
                    break
                point = _point(args, target, pid, n)
                point["end_silence_ms"] = args.end_silence_ms
                print(_row(point, idle_rss, base_p95, overhead), flush=True)
                for error in sorted(set(point["errors"]))[:3]:
                    print(f"#   error: {error}")
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps({**point, "args": vars(args)}) + "\n")
                p95 = percentile(point["server"], 95)
                if base_p95 is None:
                    base_p95 = p95
                elif p95 > base_p95 + args.budget_ms and not args.keep_going:
                    print(f"# p95 is over the single-call p95 + {args.budget_ms} ms: stop")
                    break
                if engine is not None and engine.proc.poll() is not None:
                    print("# the engine died")
                    return 1
        finally:
            if engine is not None:
                engine.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "client"])
    parser.add_argument("--providers", choices=["testkit", "embedded"], default="testkit")
    parser.add_argument("--assistant", help="default: testkit or default (by --providers)")
    parser.add_argument("--asr-final", help="set asr.final on the default assistant")
    parser.add_argument(
        "--turn-detector",
        choices=("smart_turn", "none"),
        help="set turn.detector on the default assistant (none: the fixed end silence)",
    )
    parser.add_argument("--agents-dir", type=Path, help="assistant YAML files (default: bundled)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--engine-cpus", default="0", help="taskset list for the engine")
    parser.add_argument("--client-cpus", default="1", help="taskset list for the clients")
    parser.add_argument("--event-loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--target", help="use a running engine instead of spawning one")
    parser.add_argument("--sweep", default=DEFAULT_SWEEP)
    parser.add_argument("--max-n", type=int, default=200)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument(
        "--keep-going", action="store_true",
        help="run every --sweep point even past the budget (CPU and memory per call at scale)",
    )  # fmt: skip
    parser.add_argument("--duration-sec", type=float, default=30.0)
    parser.add_argument(
        "--ramp-sec",
        type=float,
        default=3.0,
        help="the calls start at random within this (all N: a herd)",
    )
    parser.add_argument(
        "--arrival-rate",
        type=float,
        default=None,
        help="calls starting per second instead (ramp = N / rate)",
    )
    parser.add_argument("--sessions-per-client", type=int, default=25)
    parser.add_argument(
        "--client", choices=("python", "go"), default="python",
        help="the callers: Python processes of --sessions-per-client calls, or one Go process "
        "(benchmarks/goload, built by scripts/clients.sh; a fraction of the CPU per call)",
    )  # fmt: skip
    parser.add_argument("--synchronized", action="store_true")
    parser.add_argument(
        "--interim", action="store_true", help="ask for interim transcripts (a live ASR pass)"
    )
    parser.add_argument("--sync-period-sec", type=float, default=8.0)
    parser.add_argument("--end-silence-ms", type=int, default=600, help="the assistant's")
    parser.add_argument(
        "--nice", type=int, default=0,
        help="run the engine/server and clients at this niceness (e.g. -20 as root on a shared "
        "machine, so other load disturbs the figures less)",
    )  # fmt: skip
    parser.add_argument("--max-sec", type=float, default=1800.0)
    parser.add_argument("--json", help="append each point's raw figures to this file")
    # client mode
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sync-origin", type=float)
    args = parser.parse_args()
    loadkit.NICE = args.nice
    args.assistant = args.assistant or ("testkit" if args.providers == "testkit" else "default")
    if args.mode == "client":
        print(json.dumps(asyncio.run(_client_main(args))))
        return 0
    return _orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
