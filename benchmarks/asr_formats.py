"""Exact-transcript rate of the default assistant's recognizer across wire formats.

Speaks the assistant's phrases with eSpeak NG (with light noise, tests/helpers/speech.py),
in a shuffled mix of LINEAR16 8/16/24/48 kHz and 8 kHz mu-law, converts each utterance to
16 kHz as the engine does, and feeds it in 20 ms pieces to one shared recognizer, as
successive callers would. Prints the exact-transcript count and every miss. Bounded by
--utterances; a default run takes about 20 s.

    .venv/bin/python benchmarks/asr_formats.py [--utterances 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from engine.audio.codec import InputConverter
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR
from tests.helpers.speech import spoken

QUESTIONS = [
    "what are your opening hours",
    "where are you located",
    "i would like to book a table",
    "can i see the menu",
    "when are you open",
    "i need to cancel my booking",
]
FORMATS = [AudioFormat(AudioEncoding.LINEAR16, rate) for rate in (8000, 16000, 24000, 48000)]
FORMATS.append(AudioFormat(AudioEncoding.MULAW, 8000))


async def main(args: argparse.Namespace) -> None:
    runtime = RecognizerRuntime()
    try:
        await recognize_formats(args, runtime)
    finally:
        await asyncio.to_thread(runtime.close)


async def recognize_formats(args: argparse.Namespace, runtime: RecognizerRuntime) -> None:
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    recognizer = PocketsphinxRecognizer(document["asr"]["phrases"], runtime=runtime)
    rng = random.Random(args.seed)
    cache: dict[tuple[str, AudioFormat, int], bytes] = {}
    exact, misses = 0, []
    started = time.monotonic()
    for _ in range(args.utterances):
        question, fmt, noise_seed = rng.choice(QUESTIONS), rng.choice(FORMATS), rng.randrange(5)
        key = (question, fmt, noise_seed)
        if key not in cache:
            cache[key] = await spoken(question, fmt, seed=noise_seed)
        converter = InputConverter(fmt)
        pcm = converter.process(cache[key]) + converter.flush()
        stream = recognizer.start_utterance()
        for start in range(0, len(pcm), 640):
            await stream.feed(pcm[start : start + 640])
        text = (await stream.finish()).text
        if text == question:
            exact += 1
        else:
            misses.append(f"  {fmt}: {question!r} -> {text!r}")
    print(f"exact {exact}/{args.utterances} (seed {args.seed}, {time.monotonic() - started:.1f} s)")
    print("\n".join(misses))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=60, choices=range(1, 1001))
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
