"""End-to-end voice latency under concurrent calls, and CPU cost per pipeline stage.

    .venv/bin/python benchmarks/voice_latency.py [--sessions 20] [--concurrency 4]
        [--chunk-ms 40] [--rate 16000 | --mulaw] [--target HOST:PORT | --spawn]
        [--max-sec 120] [--no-stage-cost]

Sessions: each call talks to the assistant ``default``: start, wait for the greeting's
``response_done``, stream one spoken question (eSpeak NG speech padded with light noise,
rotating among four of the assistant's phrases) in real time in ``--chunk-ms`` chunks,
keep streaming light noise (an open phone line) and wait for the answer. Reported:
client-observed end of user speech -> first assistant audio byte (end of speech = when
the chunk holding the last speech sample was sent), the server's ``metrics`` fields, and
the fraction of exact final transcripts, each as p50/p95/max.

Engine CPU per second of conversation: the engine's CPU seconds across the session phase
divided by seconds of caller + assistant audio handled. In-process (the default) the
engine shares this process with the benchmark client, so the figure includes the client;
``--spawn`` runs ``python -m engine serve`` as a child and reads its CPU from /proc.

Stage cost (on by default): CPU milliseconds (time.process_time, all threads) per second
of audio for each stage alone on prepared audio: input conversion, VAD, ASR, TTS, output
conversion.

Bounded: ``--max-sec`` wall clock for the whole run (it stops and reports what it has),
a per-session timeout, a bounded number of sessions and of stage repetitions. Loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
from voiceengine.v1 import converse_pb2 as pb

from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from adapters.tts.espeak import EspeakSynthesizer
from adapters.vad.webrtc import WebRtcVad
from engine.audio.codec import (
    InputConverter,
    OutputConverter,
    mulaw_decode,
)
from engine.audio.formats import AudioEncoding, AudioFormat
from tests.helpers.converse import ConverseClient
from tests.helpers.speech import chunks, silence, spoken

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSISTANT = "default"
AGENT_YAML = Path(__file__).resolve().parents[1] / "engine" / "config" / "agents" / "default.yaml"
QUESTIONS = [
    "what are your opening hours",
    "where are you located",
    "i would like to book a table",
    "can i see the menu",
]
REPLIES = [  # what the scripted assistant answers (the TTS stage synthesizes these)
    "We are open from noon to ten in the evening, Tuesday to Sunday. We are closed on Mondays.",
    "We are at twelve Harbour Street, next to the old lighthouse.",
    "I would be happy to book a table for you. For how many people, and on which day and time?",
    "Our menu changes with the seasons, and every course has a vegetarian and a gluten free "
    "option.",
]
LEAD_MS, TAIL_MS = 400, 1200
SPEECH_THRESHOLD = 500  # |sample| above the padding noise (normal, sigma 40): speech
SESSION_TIMEOUT_SEC = 60.0


# --------------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summary_row(name: str, values: list[float], unit: str = "ms") -> str:
    if not values:
        return f"| {name} | 0 | - | - | - | - |"
    return (
        f"| {name} | {len(values)} | {pct(values, 50):.0f} | {pct(values, 95):.0f} | "
        f"{max(values):.0f} | {statistics.fmean(values):.0f} |"
    )


def speech_end_byte(audio: bytes, fmt: AudioFormat) -> int:
    """Byte offset just past the last speech sample of a padded ``spoken()`` buffer."""
    pcm = mulaw_decode(audio) if fmt.encoding is AudioEncoding.MULAW else audio
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    loud = np.flatnonzero(samples > SPEECH_THRESHOLD)
    last = int(loud[-1]) + 1 if loud.size else len(samples)
    return last * fmt.bytes_per_sample


def default_phrases() -> list[str]:
    """The default assistant's asr.phrases (read without a YAML dependency at module level)."""
    import yaml

    config = yaml.safe_load(AGENT_YAML.read_text(encoding="utf-8"))
    return list(config["asr"]["phrases"])


def proc_cpu_sec(pid: int) -> float:
    """utime + stime of a process from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- sessions


@dataclass
class Prepared:
    phrase: str
    audio: bytes
    speech_end: int  # byte offset past the last speech sample


@dataclass
class SessionResult:
    index: int
    phrase: str
    ok: bool = False
    error: str = ""
    transcript: str = ""
    client_eos_to_first_audio_ms: float | None = None
    client_eos_to_transcript_ms: float | None = None
    greeting_wait_ms: float | None = None
    vad_stop_minus_speech_end_ms: float | None = None  # speech_stopped offset - true end
    metrics: dict[str, int] = field(default_factory=dict)
    caller_audio_sec: float = 0.0
    assistant_audio_sec: float = 0.0
    answer_status: str = ""
    interrupted: int = 0
    errors: list[str] = field(default_factory=list)


async def run_session(
    index: int,
    channel: grpc.aio.Channel,
    fmt: AudioFormat,
    wire: pb.AudioFormat,
    prepared: Prepared,
    chunk_ms: int,
    timeout_sec: float,
) -> SessionResult:
    result = SessionResult(index, prepared.phrase)
    client = ConverseClient(channel)
    loop = asyncio.get_running_loop()
    greeting_done = asyncio.Event()
    answer_done = asyncio.Event()  # the answer's metrics arrived (its last event)
    ended = asyncio.Event()
    speech_start_ms: float | None = None  # input stream offset where the question starts
    stop_offset_ms: float | None = None
    eos_at: float | None = None
    final_seen = False
    first_answer_audio = False
    answer_id = ""
    chunk_bytes = fmt.bytes_for_ms(chunk_ms)
    noise = silence(fmt, chunk_ms, seed=index)

    async def reader() -> None:
        nonlocal final_seen, answer_id, first_answer_audio, stop_offset_ms
        while True:
            try:
                message = await client.next(timeout_sec)
            except StopAsyncIteration:
                ended.set()
                return
            now = loop.time()
            kind = message.WhichOneof("event")
            if kind == "response_done":
                if not greeting_done.is_set():
                    greeting_done.set()
                    result.greeting_wait_ms = (now - t_start) * 1000
                elif message.response_done.response_id == answer_id:
                    status = pb.ResponseStatus.Name(message.response_done.status)
                    result.answer_status = status.removeprefix("RESPONSE_STATUS_")
            elif kind == "transcript" and message.transcript.is_final and not final_seen:
                final_seen = True
                result.transcript = message.transcript.text
                if eos_at is not None:
                    result.client_eos_to_transcript_ms = (now - eos_at) * 1000
            elif kind == "audio":
                if final_seen and not first_answer_audio:
                    first_answer_audio = True
                    answer_id = answer_id or message.audio.response_id
                    if eos_at is not None:
                        result.client_eos_to_first_audio_ms = (now - eos_at) * 1000
                result.assistant_audio_sec += message.audio.duration_ms / 1000
            elif kind == "assistant_text" and final_seen and not answer_id:
                answer_id = message.assistant_text.response_id
            elif kind == "metrics" and answer_id and message.metrics.response_id == answer_id:
                m = message.metrics
                for name in (
                    "end_of_speech_to_final_transcript_ms",
                    "llm_first_token_ms",
                    "tts_first_audio_ms",
                    "end_of_speech_to_first_audio_ms",
                ):
                    if m.HasField(name):
                        result.metrics[name] = getattr(m, name)
                answer_done.set()
            elif kind == "speech_stopped" and stop_offset_ms is None:
                stop_offset_ms = message.speech_stopped.offset_ms
            elif kind == "interrupted":
                result.interrupted += 1
            elif kind == "error":
                result.errors.append(message.error.code)
            elif kind == "ended":
                ended.set()

    async def sender() -> None:
        nonlocal eos_at, speech_start_ms
        speech = chunks(prepared.audio, fmt, chunk_ms)
        eos_chunk = max(0, (prepared.speech_end - 1) // chunk_bytes)
        position = -1  # index into speech; -1: not speaking yet
        tick = 0
        limit = int(timeout_sec * 1000 / chunk_ms) + 1  # bounded: one session's worth
        while tick < limit and not answer_done.is_set() and not ended.is_set():
            if position < 0 and greeting_done.is_set():
                position = 0
                speech_start_ms = tick * chunk_ms
            if 0 <= position < len(speech):
                piece = speech[position]
                client.send(audio=pb.AudioInput(data=piece))
                if position == eos_chunk:
                    eos_at = loop.time()
                position += 1
            else:
                piece = noise
                client.send(audio=pb.AudioInput(data=piece))
            result.caller_audio_sec += len(piece) / fmt.bytes_per_second
            tick += 1
            due = t_start + tick * chunk_ms / 1000
            await asyncio.sleep(max(0.0, due - loop.time()))

    t_start = loop.time()
    client.start(ASSISTANT, input_audio=wire, output_audio=wire)
    reading = asyncio.create_task(reader(), name=f"reader-{index}")
    sending = asyncio.create_task(sender(), name=f"sender-{index}")
    try:
        async with asyncio.timeout(timeout_sec):
            await answer_done.wait()
            await sending
            client.send(end=pb.EndSession(reason="benchmark"))
            client.close_requests()
            await ended.wait()
        result.ok = True
    except TimeoutError:
        result.error = "timeout" if not ended.is_set() else "ended early"
    except grpc.aio.AioRpcError as exc:
        result.error = f"rpc {exc.code().name}"
    finally:
        for task in (sending, reading):
            task.cancel()
        for task in (sending, reading):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client.call.cancel()
    if stop_offset_ms is not None and speech_start_ms is not None:
        true_end_ms = speech_start_ms + fmt.duration_ms(prepared.speech_end)
        result.vad_stop_minus_speech_end_ms = stop_offset_ms - true_end_ms
    if reading.done() and not reading.cancelled() and reading.exception() is not None:
        result.error = result.error or repr(reading.exception())
    return result


async def prepare_audio(fmt: AudioFormat) -> list[Prepared]:
    out = []
    for phrase in QUESTIONS:
        audio = await spoken(phrase, fmt, lead_ms=LEAD_MS, tail_ms=TAIL_MS)
        out.append(Prepared(phrase, audio, speech_end_byte(audio, fmt)))
    return out


@dataclass
class EngineHandle:
    target: str
    cpu_sec: Any  # () -> float | None
    close: Any  # async () -> None
    label: str


async def start_engine(args: argparse.Namespace) -> EngineHandle:
    env = {
        "ENGINE_HOST": "127.0.0.1",
        "ENGINE_PORT": "0",
        "BACKEND_MODE": "disabled",
        "HISTORY_SPOOL_PATH": "",
        "ENGINE_SHUTDOWN_GRACE_SEC": "1",
        "ENGINE_OUTPUT_AUDIO_LEAD_MS": str(args.audio_lead_ms),
        "ENGINE_MAX_SESSIONS": str(max(200, args.concurrency * 2)),
    }
    if args.target:

        async def nothing() -> None:
            return None

        return EngineHandle(args.target, lambda: None, nothing, f"external engine {args.target}")
    if args.spawn:
        from tests.helpers.engine_process import spawn_engine

        process = await spawn_engine(REPO_ROOT, **env)
        pid = process.proc.pid

        return EngineHandle(
            process.target,
            lambda: proc_cpu_sec(pid),
            process.stop,
            f"child engine process pid {pid}",
        )
    from engine.server import EngineServer, bootstrap
    from engine.settings import Settings

    server = EngineServer(await bootstrap(Settings.from_env(env)))
    port = await server.start()
    return EngineHandle(
        f"127.0.0.1:{port}",
        time.process_time,
        server.shutdown,
        "in-process engine (CPU includes the benchmark client)",
    )


async def run_sessions(args: argparse.Namespace, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    if args.mulaw:
        fmt = AudioFormat(AudioEncoding.MULAW, 8000)
        wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
    else:
        fmt = AudioFormat(AudioEncoding.LINEAR16, args.rate)
        wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=args.rate)
    prepared = await prepare_audio(fmt)
    engine = await start_engine(args)
    print(
        f"== sessions: {args.sessions} calls, concurrency {args.concurrency}, {fmt}, "
        f"{args.chunk_ms} ms chunks, output lead {args.audio_lead_ms} ms, {engine.label}"
    )
    for p in prepared:
        print(
            f"   question {p.phrase!r}: {fmt.duration_ms(len(p.audio)):.0f} ms buffer, "
            f"speech ends at {fmt.duration_ms(p.speech_end):.0f} ms"
        )
    results: list[SessionResult] = []
    counter = iter(range(args.sessions))
    channel = grpc.aio.insecure_channel(engine.target)
    cpu0, wall0 = engine.cpu_sec(), loop.time()

    async def worker(w: int) -> None:
        await asyncio.sleep(w * args.stagger_ms / 1000)
        for i in counter:
            remaining = deadline - loop.time()
            if remaining < 5:
                return
            results.append(
                await run_session(
                    i,
                    channel,
                    fmt,
                    wire,
                    prepared[i % len(prepared)],
                    args.chunk_ms,
                    min(SESSION_TIMEOUT_SEC, remaining),
                )
            )

    workers = [asyncio.create_task(worker(w)) for w in range(args.concurrency)]
    _, pending = await asyncio.wait(workers, timeout=max(1.0, deadline - loop.time()))
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    cpu1, wall1 = engine.cpu_sec(), loop.time()
    await channel.close()
    await engine.close()
    if pending:
        print(f"   !! --max-sec reached: {len(pending)} worker(s) stopped early")
    report_sessions(results, fmt, args, cpu0, cpu1, wall1 - wall0)


def report_sessions(
    results: list[SessionResult],
    fmt: AudioFormat,
    args: argparse.Namespace,
    cpu0: float | None,
    cpu1: float | None,
    wall: float,
) -> None:
    ok = [r for r in results if r.ok]
    print(f"   completed {len(ok)}/{len(results)} sessions in {wall:.1f} s wall")
    for r in results:
        if not r.ok:
            print(f"   session {r.index} ({r.phrase!r}) failed: {r.error}")
    print()
    print("| measure | n | p50 ms | p95 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    with_answer = [r for r in results if r.client_eos_to_first_audio_ms is not None]
    print(
        summary_row(
            "client: end of speech -> first answer audio",
            [r.client_eos_to_first_audio_ms for r in with_answer],  # type: ignore[misc]
        )
    )
    print(
        summary_row(
            "client: end of speech -> final transcript",
            [
                r.client_eos_to_transcript_ms
                for r in results
                if r.client_eos_to_transcript_ms is not None
            ],
        )
    )
    for name in (
        "end_of_speech_to_final_transcript_ms",
        "end_of_speech_to_first_audio_ms",
        "tts_first_audio_ms",
        "llm_first_token_ms",
    ):
        values = [float(r.metrics[name]) for r in results if name in r.metrics]
        print(summary_row(f"server: {name}", values))
    print(
        summary_row(
            "speech_stopped offset - true end of speech (stream ms)",
            [
                r.vad_stop_minus_speech_end_ms
                for r in results
                if r.vad_stop_minus_speech_end_ms is not None
            ],
        )
    )
    print(
        summary_row(
            "client: start -> greeting response_done",
            [r.greeting_wait_ms for r in results if r.greeting_wait_ms is not None],
        )
    )
    print()
    finals = [r for r in results if r.transcript or r.ok]
    exact = sum(r.transcript == r.phrase for r in finals)
    print(
        f"exact final transcripts: {exact}/{len(finals)} ({100 * exact / max(1, len(finals)):.0f}%)"
    )
    for r in finals:
        if r.transcript != r.phrase:
            print(f"   session {r.index}: {r.phrase!r} -> {r.transcript!r}")
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.answer_status or "none"] = statuses.get(r.answer_status or "none", 0) + 1
    print(f"answer status: {statuses}")
    interrupts = sum(r.interrupted for r in results)
    errors = [code for r in results for code in r.errors]
    print(f"interrupted events: {interrupts}; error events: {len(errors)} {sorted(set(errors))}")
    caller = sum(r.caller_audio_sec for r in results)
    assistant = sum(r.assistant_audio_sec for r in results)
    print(f"audio handled: caller {caller:.1f} s + assistant {assistant:.1f} s")
    if cpu0 is not None and cpu1 is not None and caller + assistant > 0:
        cpu = cpu1 - cpu0
        print(
            f"engine CPU per second of conversation: {cpu * 1000 / (caller + assistant):.1f} ms "
            f"({cpu:.2f} CPU s over {caller + assistant:.1f} s of caller+assistant audio; "
            f"{100 * cpu / max(wall, 1e-9):.0f}% of one core over {wall:.1f} s wall)"
        )
    else:
        print("engine CPU per second of conversation: n/a (external engine)")


# --------------------------------------------------------------------------- stage cost


@dataclass
class StageRow:
    name: str
    audio_sec: float
    cpu_sec: float
    note: str = ""


def repeat_to(pcm: bytes, bytes_needed: int) -> bytes:
    return (pcm * (bytes_needed // max(1, len(pcm)) + 1))[:bytes_needed]


async def _measure_asr(
    rows: list[StageRow],
    runtime: RecognizerRuntime,
    utterances: list[bytes],
    target_sec: float,
    deadline: float,
    out_of_time: Callable[[str], bool],
) -> None:
    """ASR: whole utterances, fed in 20 ms pieces as the pipeline does."""
    loop = asyncio.get_running_loop()
    pcm16 = AudioFormat(AudioEncoding.LINEAR16, 16000)
    for label, recognizer in (
        (
            "ASR pocketsphinx, default assistant phrases",
            PocketsphinxRecognizer(default_phrases(), runtime=runtime),
        ),
        ("ASR pocketsphinx, generic model", PocketsphinxRecognizer(runtime=runtime)),
    ):
        if out_of_time(label):
            return
        warm = recognizer.start_utterance()  # the pool and code paths warm
        await warm.feed(utterances[0])
        await warm.finish()
        audio_sec = cpu = 0.0
        exact = total = 0
        while audio_sec < target_sec and loop.time() < deadline - 3:
            for phrase, pcm in zip(QUESTIONS, utterances, strict=True):
                t0 = time.process_time()
                stream = recognizer.start_utterance()
                for i in range(0, len(pcm), 640):
                    await stream.feed(pcm[i : i + 640])
                text = (await stream.finish()).text
                cpu += time.process_time() - t0
                audio_sec += len(pcm) / pcm16.bytes_per_second
                exact += text == phrase
                total += 1
        rows.append(StageRow(label, audio_sec, cpu, f"exact {exact}/{total}"))


async def measure_stages(args: argparse.Namespace, deadline: float) -> list[StageRow]:
    loop = asyncio.get_running_loop()
    rows: list[StageRow] = []
    target_sec = args.stage_audio_sec
    pcm16 = AudioFormat(AudioEncoding.LINEAR16, 16000)

    def out_of_time(stage: str) -> bool:
        if loop.time() > deadline - 3:
            print(f"   !! --max-sec reached: skipping {stage} and later stages")
            return True
        return False

    # Prepared caller audio, per input format.
    formats = {
        "mulaw8k": AudioFormat(AudioEncoding.MULAW, 8000),
        "lin48k": AudioFormat(AudioEncoding.LINEAR16, 48000),
        "lin16k": pcm16,
    }
    caller: dict[str, bytes] = {}
    for key, fmt in formats.items():
        joined = b"".join([await spoken(q, fmt, lead_ms=300, tail_ms=300) for q in QUESTIONS])
        caller[key] = joined

    # Input conversion.
    for key, label in (
        ("mulaw8k", "input 8 kHz mu-law -> 16 kHz"),
        ("lin48k", "input 48 kHz -> 16 kHz"),
    ):
        if out_of_time(label):
            return rows
        fmt = formats[key]
        data = repeat_to(caller[key], int(fmt.bytes_per_second * target_sec))
        pieces = chunks(data, fmt, args.chunk_ms)
        converter = InputConverter(fmt)
        t0 = time.process_time()
        for piece in pieces:
            converter.process(piece)
        converter.flush()
        rows.append(
            StageRow(
                label,
                len(data) / fmt.bytes_per_second,
                time.process_time() - t0,
                f"{args.chunk_ms} ms chunks",
            )
        )

    # VAD.
    if out_of_time("VAD"):
        return rows
    vad = WebRtcVad()
    data = repeat_to(caller["lin16k"], int(pcm16.bytes_per_second * target_sec))
    frames = [
        data[i : i + vad.frame_bytes]
        for i in range(0, len(data) - vad.frame_bytes + 1, vad.frame_bytes)
    ]
    t0 = time.process_time()
    for frame in frames:
        vad.is_speech(frame)
    cpu = time.process_time() - t0
    rows.append(
        StageRow(
            "VAD (webrtcvad, 20 ms frames)",
            len(frames) * 0.02,
            cpu,
            f"{cpu / len(frames) * 1e6:.1f} us/frame",
        )
    )

    # ASR: whole utterances, fed in 20 ms pieces as the pipeline does.
    utterances = [await spoken(q, pcm16, lead_ms=300, tail_ms=600) for q in QUESTIONS]
    runtime = RecognizerRuntime()
    try:
        await _measure_asr(rows, runtime, utterances, target_sec, deadline, out_of_time)
    finally:
        await asyncio.to_thread(runtime.close)

    # TTS, and output conversion on its audio.
    if out_of_time("TTS"):
        return rows
    synthesizer = EspeakSynthesizer(voice="en-us", rate_wpm=175)  # as default.yaml
    tts_pieces: list[bytes] = []
    audio_sec = cpu = 0.0
    sentences = 0
    while audio_sec < target_sec and loop.time() < deadline - 3:
        for reply in REPLIES:
            t0 = time.process_time()
            produced = [piece async for piece in synthesizer.synthesize(reply)]
            cpu += time.process_time() - t0
            sentences += 1
            audio_sec += sum(map(len, produced)) / (2 * synthesizer.sample_rate_hz)
            if len(tts_pieces) < 10_000:
                tts_pieces.extend(produced)
    rows.append(StageRow("TTS espeak-ng (en-us, 175 wpm)", audio_sec, cpu, f"{sentences} replies"))
    rate = synthesizer.sample_rate_hz
    for label, fmt in (
        ("output 22,050 Hz -> 16 kHz", pcm16),
        ("output 22,050 Hz -> 8 kHz mu-law", AudioFormat(AudioEncoding.MULAW, 8000)),
    ):
        if out_of_time(label):
            return rows
        converter = OutputConverter(rate, fmt)
        t0 = time.process_time()
        for piece in tts_pieces:
            converter.process(piece)
        converter.flush()
        rows.append(
            StageRow(
                label,
                sum(map(len, tts_pieces)) / (2 * rate),
                time.process_time() - t0,
                f"{len(tts_pieces)} TTS chunks",
            )
        )
    return rows


def report_stages(rows: list[StageRow]) -> None:
    print()
    print("| stage | audio s | CPU ms | CPU ms per audio s | note |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        per = row.cpu_sec * 1000 / row.audio_sec if row.audio_sec else float("nan")
        print(
            f"| {row.name} | {row.audio_sec:.1f} | {row.cpu_sec * 1000:.0f} | {per:.2f} "
            f"| {row.note} |"
        )


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.max_sec
    if args.sessions > 0:
        await run_sessions(args, deadline)
    if args.stage_cost:
        print()
        print(f"== stage cost: ~{args.stage_audio_sec:.0f} s of audio per stage, this process")
        report_stages(await measure_stages(args, deadline))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, choices=range(0, 1001), metavar="N")
    parser.add_argument("--concurrency", type=int, default=4, choices=range(1, 201), metavar="C")
    parser.add_argument("--chunk-ms", type=int, default=40, choices=(10, 20, 40, 60, 80, 100, 200))
    parser.add_argument("--rate", type=int, default=16000, choices=(8000, 16000, 24000, 48000))
    parser.add_argument("--mulaw", action="store_true", help="8 kHz G.711 mu-law in and out")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", help="HOST:PORT of a running engine (no CPU figure)")
    where.add_argument("--spawn", action="store_true", help="engine as a child process")
    parser.add_argument(
        "--audio-lead-ms", type=int, default=500, help="ENGINE_OUTPUT_AUDIO_LEAD_MS"
    )
    parser.add_argument("--stagger-ms", type=int, default=300, help="delay between worker starts")
    parser.add_argument("--max-sec", type=float, default=120.0, help="wall-clock cap of the run")
    parser.add_argument("--stage-cost", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--stage-audio-sec", type=float, default=20.0, help="audio per stage")
    args = parser.parse_args()
    if not 5 <= args.max_sec <= 3600:
        parser.error("--max-sec must be 5..3600")
    if not 1 <= args.stage_audio_sec <= 600:
        parser.error("--stage-audio-sec must be 1..600")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
