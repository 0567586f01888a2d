"""Turn taking over the real server: semantic end of turn side by side with the fixed silence.

    .venv/bin/python benchmarks/turn_taking.py [--pacings realtime,fast] [--max-sec 900]
        [--voices en-us+f3:160,en-us+m3:190] [--modes semantic,fixed]

Synthesized calls (eSpeak NG, two voices at two speaking rates), each one call of the demo
assistant in a child engine process (``python -m engine serve``, one worker): complete
questions (listed phrases and other wordings, short and long) and questions with a pause
mid-sentence (0.5-1.2 s), on 16 kHz LINEAR16 and 8 kHz mu-law lines (alternating), sent in
real time (40 ms chunks, then an open line of light noise) or as fast as the stream takes
them. Modes, alternated call by call: ``semantic`` (the demo assistant: Smart Turn asked
after 200 ms of silence, up to 1.5 s when incomplete, a "complete" on words ending in
``turn.unfinished_words`` overruled) and ``fixed`` (the same assistant with
``turn.detector: none``: 600 ms of silence); ``semantic90`` (a complete verdict needs 0.9);
``acoustic`` (Smart Turn's verdict alone, ``turn.unfinished_words: []``).

Per mode and pacing: voice to voice at the client (the chunk holding the last speech sample
sent -> the answer's first audio chunk received; real time only), p50/p95; heard right (the
first final transcript is the sentence); wrong answers (a wrong final answered as if heard:
not the unsure reply); unsure replies; false cut-offs (a final before the caller finished:
more than one final in a call with a pause); Whisper fallbacks (source grammar_fallback);
engine CPU per call (the engine process tree, /proc). One call at a time. Bounded: a fixed
set of calls, a per-call timeout, ``--max-sec`` for the run (it stops and reports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
import yaml
from voiceengine.v1 import converse_pb2 as pb

from adapters.tts.espeak import EspeakSynthesizer
from benchmarks.loadkit import background_calls, machine, tree_cpu_sec
from benchmarks.turn_taking_report import report
from engine.audio.codec import StreamResampler, mulaw_encode
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.assistant import DEFAULT_UNSURE_REPLY
from engine.settings import DEFAULT_AGENTS_DIR
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import EngineProcess, free_port, spawn_engine
from tests.helpers.security import scrape

REPO = Path(__file__).resolve().parents[1]
LISTED = ["what are your opening hours", "where are you located", "can i see the menu"]
OTHER = [
    "are you open on sunday",
    "how late is the kitchen open",
    "is the restaurant open on christmas eve",
    "do you have a free table on friday night",
    "i need to cancel my booking for friday",
    "could i reserve a table for six people tomorrow at eight",
]
# (first part, second part): a pause between them is not the end of the turn.
PAUSED = [
    ("i would like to book a table for", "four people on friday"),
    ("do you have any", "vegetarian dishes on the menu"),
]
PAUSES_MS = (500, 800, 1000, 1200)
LINES = {
    "16k": AudioFormat(AudioEncoding.LINEAR16, 16000),
    "mulaw": AudioFormat(AudioEncoding.MULAW, 8000),
}
CHUNK_MS, LEAD_MS, TAIL_MS = 40, 400, 2000
CALL_TIMEOUT_SEC = 30.0
WARM_UP_SEC = 8.0  # background calls start within 3 s and ask their first question


@dataclass
class Call:
    mode: str
    pacing: str
    kind: str  # listed, other, paused
    text: str
    voice: str
    line: str
    wire: bytes
    speech_end_ms: int  # where the last speech sample is in the wire audio


@dataclass
class Outcome:
    call: Call
    finals: list[tuple[str, str, float]] = field(default_factory=list)  # text, source, conf
    replies: list[str] = field(default_factory=list)
    voice_to_voice_ms: float | None = None
    cpu_sec: float = 0.0
    error: str = ""
    turn_log: list[str] = field(default_factory=list)  # the engine's turn decisions (--turn-log)
    load: int = 0  # calls per core during the call, this one included (0: not pinned)


async def _speech(text: str, voice: str, rate_wpm: int, fmt: AudioFormat) -> np.ndarray:
    tts = EspeakSynthesizer(voice=voice, rate_wpm=rate_wpm)
    resampler = StreamResampler(tts.sample_rate_hz, fmt.sample_rate_hz)
    pieces = [resampler.process(c) async for c in tts.synthesize(text)]
    return np.frombuffer(b"".join([*pieces, resampler.flush()]), dtype=np.int16)


def _wire(parts: list[np.ndarray], fmt: AudioFormat, seed: int) -> tuple[bytes, int]:
    rate = fmt.sample_rate_hz
    signal_ = np.concatenate(
        [np.zeros(rate * LEAD_MS // 1000), *parts, np.zeros(rate * TAIL_MS // 1000)]
    )
    speech_end = len(signal_) - rate * TAIL_MS // 1000
    noisy = signal_ + np.random.default_rng(seed).normal(0, 40, signal_.size)
    pcm = np.clip(noisy, -32768, 32767).astype("<i2").tobytes()
    wire = mulaw_encode(pcm) if fmt.encoding is AudioEncoding.MULAW else pcm
    return wire, speech_end * 1000 // rate


async def calls(
    voices: list[tuple[str, int]], modes: list[str], pacings: list[str], kinds: list[str]
) -> list[Call]:
    """Every call of the run, modes alternating call by call."""
    out: list[Call] = []
    items: list[tuple[str, str, tuple[str, str, int] | None]] = []
    items += [("listed", t, None) for t in LISTED] + [("other", t, None) for t in OTHER]
    items += [("paused", f"{a} {b}", (a, b, p)) for a, b in PAUSED for p in PAUSES_MS]
    items = [item for item in items if item[0] in kinds]
    for n, (kind, text, paused) in enumerate(items):
        for v, (voice, rate_wpm) in enumerate(voices):
            line = list(LINES)[(n + v) % len(LINES)]
            fmt = LINES[line]
            if paused:
                first, second, pause_ms = paused
                gap = np.zeros(fmt.sample_rate_hz * pause_ms // 1000)
                parts = [await _speech(first, voice, rate_wpm, fmt), gap]
                parts.append(await _speech(second, voice, rate_wpm, fmt))
                kind_ = f"paused {pause_ms} ms"
            else:
                parts, kind_ = [await _speech(text, voice, rate_wpm, fmt)], kind
            wire, end_ms = _wire(parts, fmt, seed=n * 7 + v)
            for pacing in pacings:
                for mode in modes:
                    out.append(Call(mode, pacing, kind_, text, voice, line, wire, end_ms))
    return out


async def run_call(target: str, call: Call, cpu: Callable[[], float]) -> Outcome:
    """One call: greeting, the caller's audio, the answer; then half-close and read to the end."""
    outcome = Outcome(call)
    fmt = LINES[call.line]
    encoding = pb.AUDIO_ENCODING_MULAW if call.line == "mulaw" else pb.AUDIO_ENCODING_LINEAR16
    wire_fmt = pb.AudioFormat(encoding=encoding, sample_rate_hz=fmt.sample_rate_hz)
    async with grpc.aio.insecure_channel(target) as channel:
        client = ConverseClient(channel)
        client.start(call.mode, input_audio=wire_fmt, output_audio=wire_fmt)
        await client.until("response_done", CALL_TIMEOUT_SEC)  # the greeting
        cpu0 = cpu()
        loop = asyncio.get_running_loop()
        answered, ended = asyncio.Event(), asyncio.Event()
        eos_at: list[float] = []

        async def read() -> None:
            first_audio_seen = False
            while message := await client.next(CALL_TIMEOUT_SEC):
                kind = message.WhichOneof("event")
                if kind == "transcript" and message.transcript.is_final:
                    t = message.transcript
                    outcome.finals.append((t.text, t.source, round(t.confidence, 3)))
                elif kind == "audio" and outcome.finals and not first_audio_seen:
                    first_audio_seen = True
                    if eos_at:
                        outcome.voice_to_voice_ms = (loop.time() - eos_at[0]) * 1000
                elif kind == "response_done":
                    outcome.replies.append(message.response_done.text.strip())
                    if len(outcome.replies) >= len(outcome.finals) >= 1:
                        answered.set()
                elif kind == "ended":
                    ended.set()
                    return

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SEC):
                await _send(client, call, fmt, answered, eos_at)
                client.close_requests()  # half-close: the engine answers, then ends
                await ended.wait()
        except (TimeoutError, StopAsyncIteration) as exc:
            outcome.error = type(exc).__name__
        outcome.cpu_sec = cpu() - cpu0
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        client.call.cancel()
    return outcome


async def _send(
    client: ConverseClient,
    call: Call,
    fmt: AudioFormat,
    answered: asyncio.Event,
    eos_at: list[float],
) -> None:
    """The caller's audio; in real time then an open line (light noise) until answered."""
    loop = asyncio.get_running_loop()
    step = fmt.bytes_for_ms(CHUNK_MS)
    end_byte = fmt.bytes_for_ms(call.speech_end_ms)
    idle = call.wire[-step:]  # the tail's light noise
    began, position, sent = loop.time(), 0, 0
    while position < len(call.wire) or (call.pacing == "realtime" and not answered.is_set()):
        piece = call.wire[position : position + step] if position < len(call.wire) else idle
        client.send(audio=pb.AudioInput(data=piece))
        if position < end_byte <= position + step and call.pacing == "realtime":
            eos_at.append(loop.time())
        position += step
        sent += 1
        if call.pacing == "realtime":
            await asyncio.sleep(max(0.0, began + sent * CHUNK_MS / 1000 - loop.time()))
    await asyncio.sleep(0)


def _turn_lines(lines: list[str]) -> list[str]:
    """The engine's end-of-turn decisions among its log lines (DEBUG, --turn-log)."""
    keep = ("end_of_turn:", "speech_input:", "hybrid:")
    return [
        line.split(": ", 1)[-1].split(" [session=")[0]
        for line in lines
        if any(k in line for k in keep)
    ]


# mode -> the demo assistant's turn section with these changes
MODES: dict[str, dict[str, object]] = {
    "semantic": {"detector": "smart_turn"},  # as shipped
    "semantic90": {"detector": "smart_turn", "complete_threshold": 0.9},
    "acoustic": {"detector": "smart_turn", "unfinished_words": []},
    "fixed": {"detector": "none"},
}


def agents_dir(root: Path) -> Path:
    """One assistant per mode: the demo assistant with the mode's turn settings."""
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    for mode, turn in MODES.items():
        copy = {**document, "id": mode, "turn": {**document.get("turn", {}), **turn}}
        (root / f"{mode}.yaml").write_text(yaml.safe_dump(copy))
    (root / "default.yaml").write_text(yaml.safe_dump(document))  # the background calls'
    return root


async def run_level(
    engine: EngineProcess, planned: list[Call], level: int, args: argparse.Namespace
) -> list[Outcome]:
    """Every planned call, one at a time, beside ``level - 1`` background calls (issue 12's
    pattern) when ``level`` > 1. Stops at the run's deadline (``args.deadline``)."""
    background = None
    if level > 1:
        budget = max(1.0, args.deadline - time.monotonic())
        background_log = Path(args.tmp) / f"background-{level}.log"
        background = background_calls(
            engine.target,
            level - 1,
            args.client_cpus,
            seed=level,
            duration_sec=budget,
            log=background_log,
        )
        await asyncio.sleep(WARM_UP_SEC)  # every background call is up and talking
        _check_background(background, background_log)
    outcomes: list[Outcome] = []
    pid = engine.proc.pid
    counted = recognizer_counters(args.metrics_port)
    try:
        for call in planned:
            if time.monotonic() > args.deadline:
                print(f"--max-sec reached: {len(outcomes)} of {len(planned)} calls at {level}")
                break
            seen = len(engine.log)
            outcome = await run_call(engine.target, call, lambda: tree_cpu_sec(pid))
            outcome.turn_log = _turn_lines(engine.log[seen:])
            outcome.load = level if args.calls_per_core else 0
            outcomes.append(outcome)
    finally:
        if background is not None:
            _check_background(background, background_log)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(background.pid, signal.SIGTERM)
            background.wait(30)
    after = recognizer_counters(args.metrics_port)
    changed = {k: round(v - counted.get(k, 0.0)) for k, v in after.items()}
    print(
        f"recognizer at {level} calls per core (all calls):",
        ", ".join(f"{k} {v}" for k, v in sorted(changed.items()) if v),
    )
    return outcomes


def _check_background(background: subprocess.Popen[bytes], log: Path) -> None:
    """Stop the run if the background calls' client has stopped: the level would be
    measured without its load."""
    if background.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the background calls stopped ({background.returncode}):\n{tail}")


def recognizer_counters(port: int) -> dict[str, float]:
    """The engine's recognizer counters (finals by source, Whisper pool) from /metrics."""
    return {
        name.replace("voiceengine_", ""): value
        for name, value in scrape(port).items()
        if name.startswith(("voiceengine_asr_hybrid_total", "voiceengine_whisper_pool_"))
        and "pending" not in name
        and "workers" not in name
    }


async def main(args: argparse.Namespace) -> None:
    voices = [(v.split(":")[0], int(v.split(":")[1])) for v in args.voices.split(",")]
    planned = await calls(
        voices, args.modes.split(","), args.pacings.split(","), args.kinds.split(",")
    )
    levels = [int(n) for n in args.calls_per_core.split(",")] if args.calls_per_core else [1]
    pinned = f", engine on CPUs {args.engine_cpus}" if args.calls_per_core else ""
    print(f"{machine()}\n{len(planned)} calls planned per level {levels}, one at a time{pinned}")
    args.deadline = time.monotonic() + args.max_sec
    args.metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        engine = await spawn_engine(
            REPO,
            ENGINE_METRICS_HOST="127.0.0.1",
            ENGINE_METRICS_PORT=str(args.metrics_port),
            cpus=args.engine_cpus if args.calls_per_core else "",
            ASSISTANT_LOCAL_CONFIG_DIR=str(agents_dir(Path(tmp))),
            HISTORY_SPOOL_PATH="",
            ENGINE_MAX_SESSIONS="200",
            **({"ENGINE_LOG_LEVEL": "DEBUG"} if args.turn_log else {}),
        )
        outcomes: list[Outcome] = []
        try:
            for level in levels:
                outcomes += await run_level(engine, planned, level, args)
        finally:
            await engine.stop()
    report(outcomes, DEFAULT_UNSURE_REPLY)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="semantic,fixed")
    parser.add_argument("--pacings", default="realtime,fast")
    parser.add_argument("--kinds", default="listed,other,paused")
    parser.add_argument("--voices", default="en-us+f3:160,en-us+m3:190")
    parser.add_argument("--max-sec", type=float, default=900.0)
    parser.add_argument(
        "--turn-log", action="store_true", help="the engine's turn decisions under each miss"
    )
    parser.add_argument(
        "--calls-per-core",
        default="",
        help="e.g. 1,10,20: the engine pinned to --engine-cpus, each level's calls beside "
        "that many calls less one in issue 12's pattern (default: one unpinned call)",
    )
    parser.add_argument("--engine-cpus", default="0")
    parser.add_argument("--client-cpus", default="1", help="the background calls' client")
    asyncio.run(main(parser.parse_args()))
