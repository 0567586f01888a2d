"""Cost and accuracy of the embedded VAD and ASR on eSpeak NG speech.

Prints CPU milliseconds per second of audio for PocketSphinx (generic model vs a domain
model built from the phrases), exact-sentence accuracy and word error rate of each, the
worst event-loop stall while several streams decode at once, and VAD microseconds per
frame. Everything is bounded by the arguments; a default run takes well under a minute.

    .venv/bin/python benchmarks/asr_cost.py [--repeats 2] [--streams 4] [--lead-in-ms 300]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from adapters.tts.espeak import EspeakSynthesizer
from adapters.vad.webrtc import WebRtcVad
from engine.audio.codec import StreamResampler
from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ

PHRASES = [
    "I would like to book a table for two",
    "what time do you open tomorrow",
    "can I see the menu please",
    "do you have vegetarian options",
    "I want to cancel my reservation",
    "is there parking nearby",
    "yes please",
    "no thanks",
    "book a table for four at seven",
    "where are you located",
    "thank you goodbye",
    "I would like to speak to the manager",
]
BYTES_PER_SEC = INPUT_SAMPLE_RATE_HZ * 2
CHUNK = BYTES_PER_SEC // 50  # 20 ms, as the pipeline feeds it


async def synthesize_16k(synthesizer: EspeakSynthesizer, text: str, lead_in_ms: int) -> bytes:
    resampler = StreamResampler(synthesizer.sample_rate_hz, INPUT_SAMPLE_RATE_HZ)
    pieces = [resampler.process(chunk) async for chunk in synthesizer.synthesize(text)]
    silence = bytes(BYTES_PER_SEC * lead_in_ms // 1000)
    return silence + b"".join([*pieces, resampler.flush()]) + silence


async def recognize(recognizer: PocketsphinxRecognizer, pcm: bytes) -> str:
    stream = recognizer.start_utterance()
    for start in range(0, len(pcm), CHUNK):
        await stream.feed(pcm[start : start + CHUNK])
    return (await stream.finish()).text


def word_errors(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over words."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, 1):
            previous, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word)),
            )
    return row[-1]


async def measure_model(
    name: str, recognizer: PocketsphinxRecognizer, audio: dict[str, bytes], repeats: int
) -> None:
    exact = errors = words = 0
    seconds = sum(len(pcm) for pcm in audio.values()) / BYTES_PER_SEC * repeats
    cpu_start = time.process_time()
    for _ in range(repeats):
        for text, pcm in audio.items():
            hypothesis = await recognize(recognizer, pcm)
            reference = text.lower()
            exact += hypothesis == reference
            if hypothesis != reference:
                print(f"  {name}: {reference!r} -> {hypothesis!r}")
            errors += word_errors(reference, hypothesis)
            words += len(reference.split())
    cpu_ms = (time.process_time() - cpu_start) * 1000
    print(
        f"{name:8s} CPU {cpu_ms / seconds:6.1f} ms per audio second | "
        f"exact {exact}/{len(audio) * repeats} | WER {100 * errors / words:5.1f}%"
    )


async def measure_loop_stall(
    recognizer: PocketsphinxRecognizer, pcm: bytes, streams: int
) -> tuple[float, float]:
    """Worst delay of a 1 ms ticker while ``streams`` utterances decode concurrently."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(recognize(recognizer, pcm) for _ in range(streams)))
    wall = time.perf_counter() - started
    done.set()
    await ticking
    return worst * 1000, wall


def measure_vad(audio: bytes, frames: int) -> None:
    vad = WebRtcVad()
    size = vad.frame_bytes
    chunks = [audio[i : i + size] for i in range(0, len(audio) - size + 1, size)]
    chunks = (chunks * (frames // max(1, len(chunks)) + 1))[:frames]
    started = time.perf_counter()
    speech = sum(vad.is_speech(chunk) for chunk in chunks)
    elapsed = time.perf_counter() - started
    print(
        f"VAD      {elapsed / len(chunks) * 1e6:6.2f} us per {vad.frame_bytes // 32} ms frame "
        f"({speech}/{len(chunks)} speech)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, choices=range(1, 11))
    parser.add_argument("--streams", type=int, default=4, choices=range(1, 33))
    parser.add_argument("--lead-in-ms", type=int, default=300, choices=range(0, 2001))
    parser.add_argument("--vad-frames", type=int, default=20_000, choices=range(1, 200_001))
    args = parser.parse_args()

    synthesizer = EspeakSynthesizer()
    audio = {text: await synthesize_16k(synthesizer, text, args.lead_in_ms) for text in PHRASES}
    seconds = sum(len(pcm) for pcm in audio.values()) / BYTES_PER_SEC
    print(f"{len(audio)} sentences, {seconds:.1f} s of audio, lead-in {args.lead_in_ms} ms")

    runtime = RecognizerRuntime()
    try:
        await measure_models(runtime, audio, args.repeats, args.streams)
    finally:
        await asyncio.to_thread(runtime.close)
    measure_vad(b"".join(audio.values()), args.vad_frames)


async def measure_models(
    runtime: RecognizerRuntime, audio: dict[str, bytes], repeats: int, streams: int
) -> None:
    for name, recognizer in (
        ("generic", PocketsphinxRecognizer(runtime=runtime)),
        ("domain", PocketsphinxRecognizer(PHRASES, runtime=runtime)),
    ):
        await recognize(recognizer, audio[PHRASES[0]])  # warm the pool and the code paths
        await measure_model(name, recognizer, audio, repeats)
        for pool in ("cold pool", "warm pool"):  # cold: the pool creates decoders
            stall_ms, wall = await measure_loop_stall(recognizer, audio[PHRASES[0]], streams)
            print(
                f"{name:8s} {streams} concurrent streams, {pool}: worst loop stall "
                f"{stall_ms:.1f} ms, wall {wall:.2f} s for "
                f"{streams * len(audio[PHRASES[0]]) / BYTES_PER_SEC:.1f} s of audio"
            )


if __name__ == "__main__":
    asyncio.run(main())
