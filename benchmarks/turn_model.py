"""Smart Turn v3.2 (the turn detector): latency per check on one core, and its scores.

Scores: questions spoken by eSpeak NG in two voices, each judged early in the pause after it
(tests/helpers/turn_clips.py: 300 ms lead, ``--tail-ms`` of silence, light noise) whole, and
cut off at ``--cut-at`` of its speech; at 16 kHz, and sent over an 8 kHz mu-law line then
decoded and upsampled as the engine does. Latency: ``--checks`` checks one after another
through ``predict`` (the detector's pool, features included); run it under ``taskset`` so the
whole process (numpy's BLAS threads too) has one core. CPU is the worker thread's (the
verdict's ``inference_ms``) and the whole process's. Bounded by the clip list, ``--checks``
and ``--max-seconds``; a default run takes ~15 s.

    taskset -c 0 .venv/bin/python benchmarks/turn_model.py [--checks 200] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.turn.features import smart_turn_features
from adapters.turn.smart_turn import SmartTurnDetector
from tests.helpers.turn_clips import over_mulaw_line, pause_after, speech

QUESTIONS = [
    "Is the restaurant open on Christmas Eve?",
    "Do you have a free table on Friday night?",
    "How late is the kitchen open?",
    "Can I bring my dog to dinner?",
    "Where can I park my car?",
    "What time do you open on Sundays?",
    "I would like to book a table for four people.",
    "Do you have any vegetarian dishes on the menu?",
]
VOICES = ["en-us+f3", "en-us+m3"]
LINES = ["16k", "mulaw8k"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def clips(args: argparse.Namespace) -> dict[tuple[str, str, str], tuple[bytes, bytes]]:
    """(voice, line, question) -> (complete clip, cut clip), 16 kHz PCM16."""
    out: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
    for voice in VOICES:
        for question in QUESTIONS:
            spoken = await speech(question, voice, args.rate_wpm)
            whole = pause_after(spoken, tail_ms=args.tail_ms)
            cut = pause_after(spoken, cut_at=args.cut_at, tail_ms=args.tail_ms)
            out[(voice, "16k", question)] = (whole, cut)
            out[(voice, "mulaw8k", question)] = (over_mulaw_line(whole), over_mulaw_line(cut))
    return out


async def scores(
    detector: SmartTurnDetector,
    clipset: dict[tuple[str, str, str], tuple[bytes, bytes]],
    args: argparse.Namespace,
) -> None:
    t = args.threshold
    print(f"{'voice':9s} {'line':8s} complete: mean >{t} | cut: mean <{t} | pairs right")
    for voice in VOICES:
        for line in LINES:
            whole, cut = [], []
            for question in QUESTIONS:
                a, b = clipset[(voice, line, question)]
                whole.append((await detector.predict(a)).complete_probability)
                cut.append((await detector.predict(b)).complete_probability)
                if args.verbose:
                    print(f"    {whole[-1]:.3f} {cut[-1]:.3f}  {question}")
            n = len(QUESTIONS)
            right = sum(a > b for a, b in zip(whole, cut, strict=True))
            print(
                f"{voice:9s} {line:8s} {statistics.mean(whole):.2f} "
                f"{sum(s > t for s in whole)}/{n} | {statistics.mean(cut):.2f} "
                f"{sum(s < t for s in cut)}/{n} | {right}/{n}"
            )


async def latency(
    detector: SmartTurnDetector, pcm: list[bytes], checks: int, deadline: float
) -> None:
    walls, cpus, process_cpus, features = [], [], [], []
    for i in range(checks):
        if time.monotonic() > deadline:
            break
        clip = pcm[i % len(pcm)]
        started, cpu_started = time.perf_counter(), time.process_time()
        verdict = await detector.predict(clip)
        walls.append((time.perf_counter() - started) * 1000)
        process_cpus.append((time.process_time() - cpu_started) * 1000)
        cpus.append(verdict.inference_ms)
        started = time.thread_time()
        smart_turn_features(clip)
        features.append((time.thread_time() - started) * 1000)
    print(
        f"{len(walls)} checks: wall p50 {percentile(walls, 0.5):.1f} ms p95 "
        f"{percentile(walls, 0.95):.1f} ms; CPU p50 {percentile(cpus, 0.5):.1f} ms p95 "
        f"{percentile(cpus, 0.95):.1f} ms, process CPU p50 {percentile(process_cpus, 0.5):.1f} ms "
        f"(features alone p50 {percentile(features, 0.5):.1f} ms)"
    )


async def main(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.max_seconds
    detector = SmartTurnDetector(workers=1, max_waiting=0)
    try:
        clipset = await clips(args)
        print(
            f"tail {args.tail_ms} ms, cut at {args.cut_at:.0%} of the speech, {args.rate_wpm} wpm"
        )
        await scores(detector, clipset, args)
        pcm = [clip for pair in clipset.values() for clip in pair]
        await latency(detector, pcm, args.checks, deadline)
    finally:
        detector.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--tail-ms", type=int, default=200, help="silence after the speech")
    parser.add_argument("--cut-at", type=float, default=0.6, help="share of the speech kept")
    parser.add_argument("--threshold", type=float, default=0.5, help="'complete' above this")
    parser.add_argument("--rate-wpm", type=int, default=160)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--verbose", action="store_true", help="every clip's scores")
    asyncio.run(main(parser.parse_args()))
