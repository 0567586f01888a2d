"""eSpeak NG synthesizer adapter, with real synthesis through libespeak-ng."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from adapters.tts import espeak
from adapters.tts.espeak import EspeakEngine, EspeakSynthesizer
from engine.runtime.ports.providers import ProviderConfigError, ProviderError, SpeechSynthesizer

RATE = 22_050
SHORT = "Hello world, this is a test."
LONG = (
    "Thank you for calling the city library, where you can renew your books, "
    "reserve a meeting room, or ask a librarian about anything you would like to know."
)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / RATE


async def collect(synth: EspeakSynthesizer, text: str) -> list[bytes]:
    async with contextlib.aclosing(synth.synthesize(text)) as stream:
        return [chunk async for chunk in stream]


def same_speech(a: bytes, b: bytes) -> bool:
    # eSpeak draws random noise for fricatives, so two renderings of one text differ in
    # samples and by a few samples in length; duration identifies the utterance.
    return abs(len(a) - len(b)) <= 0.01 * len(b)


async def engine_idle(engine: EspeakEngine) -> bool:
    """Wait (bounded) for the engine's worker to finish any job; True when it did."""
    for _ in range(200):  # ~0.2 s; a full LONG * 200 takes over a second of CPU
        if engine.idle:
            return True
        await asyncio.sleep(0.001)
    return False


@pytest.fixture
def engine() -> Iterator[EspeakEngine]:
    """These tests are about synthesis itself: no sentence cache, every one synthesized."""
    engine = EspeakEngine(cache_bytes=0, cache_entry_bytes=0)
    yield engine
    engine.close()


@pytest.fixture
def synth(engine: EspeakEngine) -> EspeakSynthesizer:
    return EspeakSynthesizer(engine=engine)


def test_implements_the_synthesizer_port(synth: EspeakSynthesizer) -> None:
    port: SpeechSynthesizer = synth
    assert port.sample_rate_hz == RATE


async def test_synthesizes_audible_pcm16_of_plausible_duration(synth: EspeakSynthesizer) -> None:
    chunks = await collect(synth, SHORT)
    audio = b"".join(chunks)
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    # Six words at 175 words a minute: about two seconds, plus the sentence-final pause.
    assert 1.0 < seconds(audio) < 4.0
    samples = np.frombuffer(audio, dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 500  # speech, not silence


async def test_long_sentence_streams_in_many_chunks(synth: EspeakSynthesizer) -> None:
    chunks = await collect(synth, LONG)
    assert len(chunks) > 10
    # Chunks are eSpeak's callback buffers (~60 ms), so audio leaves as it is made.
    assert max(seconds(chunk) for chunk in chunks) <= 0.1


async def test_faster_rate_gives_shorter_audio(engine: EspeakEngine) -> None:
    slow = b"".join(await collect(EspeakSynthesizer(engine=engine, rate_wpm=120), LONG))
    fast = b"".join(await collect(EspeakSynthesizer(engine=engine, rate_wpm=350), LONG))
    assert seconds(fast) < 0.6 * seconds(slow)


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "\n\t"])
async def test_text_without_speakable_content_yields_nothing(
    synth: EspeakSynthesizer, text: str
) -> None:
    assert await collect(synth, text) == []


async def test_closing_the_iterator_aborts_and_the_next_synthesis_works(
    engine: EspeakEngine, synth: EspeakSynthesizer
) -> None:
    reference = b"".join(await collect(synth, SHORT))
    stream = synth.synthesize(LONG * 20)  # a minute or more of speech
    first = await anext(stream)
    assert first
    await stream.aclose()
    assert engine.idle  # aclose returns only once the worker has stopped
    assert same_speech(b"".join(await collect(synth, SHORT)), reference)


async def test_cancelling_the_consumer_task_aborts_synthesis(
    engine: EspeakEngine, synth: EspeakSynthesizer
) -> None:
    reference = b"".join(await collect(synth, SHORT))
    first_chunk = asyncio.Event()
    received: list[bytes] = []

    async def consume() -> None:
        # aclosing: cancellation closes the stream at once instead of at garbage collection.
        async with contextlib.aclosing(synth.synthesize(LONG * 20)) as stream:
            async for chunk in stream:
                received.append(chunk)
                first_chunk.set()
                await asyncio.Event().wait()  # a slow consumer, e.g. paced playback

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(received) == 1
    assert engine.idle
    assert same_speech(b"".join(await collect(synth, SHORT)), reference)


async def test_an_abandoned_stream_is_aborted_when_collected(
    engine: EspeakEngine, synth: EspeakSynthesizer
) -> None:
    async def take_one() -> bytes:
        async for chunk in synth.synthesize(LONG * 200):  # minutes of speech, never closed
            return chunk
        return b""

    assert await take_one()
    # The loop's async-generator finalizer closes the stream on the next iterations.
    assert await engine_idle(engine)


async def test_concurrent_calls_both_get_their_own_audio(
    engine: EspeakEngine, synth: EspeakSynthesizer
) -> None:
    other = EspeakSynthesizer(engine=engine, rate_wpm=300, pitch=80)
    alone_a = b"".join(await collect(synth, LONG))
    alone_b = b"".join(await collect(other, SHORT))
    together_a, together_b = await asyncio.gather(collect(synth, LONG), collect(other, SHORT))
    assert same_speech(b"".join(together_a), alone_a)
    assert same_speech(b"".join(together_b), alone_b)
    assert abs(seconds(alone_a) - seconds(alone_b)) > 2  # the two are told apart


async def test_library_failure_surfaces_as_provider_error(
    engine: EspeakEngine, synth: EspeakSynthesizer
) -> None:
    synth._voice = "xx-nonexistent"  # validation bypassed: the library itself refuses it
    with pytest.raises(ProviderError, match="espeak-ng: unknown voice"):
        await collect(synth, SHORT)
    assert await collect(EspeakSynthesizer(engine=engine), SHORT)  # the engine still works


def test_from_options_defaults() -> None:
    synth = EspeakSynthesizer.from_options({})
    assert (synth.voice, synth.rate_wpm, synth.pitch) == ("en-us", 175, 50)


def test_from_options_reads_every_option() -> None:
    synth = EspeakSynthesizer.from_options({"voice": "en", "rate_wpm": 200, "pitch": 30})
    assert (synth.voice, synth.rate_wpm, synth.pitch) == ("en", 200, 30)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_wpm": 79}, r"tts\.rate_wpm: must be an integer from 80 to 450"),
        ({"rate_wpm": 451}, r"tts\.rate_wpm: must be an integer from 80 to 450"),
        ({"rate_wpm": "fast"}, r"tts\.rate_wpm: must be an integer from 80 to 450"),
        ({"rate_wpm": 175.0}, r"tts\.rate_wpm: must be an integer from 80 to 450"),
        ({"rate_wpm": True}, r"tts\.rate_wpm: must be an integer from 80 to 450"),
        ({"pitch": -1}, r"tts\.pitch: must be an integer from 0 to 100"),
        ({"pitch": 101}, r"tts\.pitch: must be an integer from 0 to 100"),
        ({"voice": "xx-nonexistent"}, r"tts\.voice: unknown eSpeak voice 'xx-nonexistent'"),
        ({"voice": ""}, r"tts\.voice: must be an eSpeak voice name"),
        ({"voice": 7}, r"tts\.voice: must be an eSpeak voice name"),
        ({"speed": 1.2}, r"tts\.speed: unknown option for espeak"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        EspeakSynthesizer.from_options(options)


async def test_a_sentence_said_again_comes_from_the_cache() -> None:
    engine = EspeakEngine(cache_bytes=10_000_000, cache_entry_bytes=1_000_000)
    synth, cache = EspeakSynthesizer(engine=engine), engine.cache
    first = await collect(synth, SHORT)
    again = await collect(synth, SHORT)
    assert again == first  # the very same audio, not a new rendering
    assert (cache.hits, cache.misses) == (1, 1)
    # Other voice settings are other audio; a cut-short sentence is not kept.
    assert not same_speech(
        b"".join(await collect(EspeakSynthesizer(engine=engine, rate_wpm=300), SHORT)),
        b"".join(first),
    )
    stream = synth.synthesize(LONG)
    assert await anext(stream)
    await stream.aclose()
    assert same_speech(b"".join(await collect(synth, LONG)), b"".join(await collect(synth, LONG)))
    # Missed: SHORT, SHORT at 300 wpm, the cut LONG, the first whole LONG; the second hit.
    assert (cache.hits, cache.misses) == (2, 4)
    engine.close()


async def test_two_engines_in_one_process_take_turns_with_the_library() -> None:
    """libespeak-ng is one per process: two factories' engines must not steal its callback."""
    first, second = EspeakEngine(cache_bytes=0), EspeakEngine(cache_bytes=0)
    try:
        a, b = EspeakSynthesizer(engine=first), EspeakSynthesizer(engine=second)
        alone = b"".join(await collect(a, LONG))
        together = await asyncio.gather(collect(a, LONG), collect(b, LONG), collect(a, SHORT))
        assert all(same_speech(b"".join(audio), alone) for audio in together[:2])
        assert together[2]
    finally:
        first.close()
        second.close()


def test_the_sentence_cache_keeps_the_most_recent_within_its_bytes() -> None:
    cache = espeak._SentenceCache(max_bytes=250, max_entry_bytes=120)
    key = lambda n: (str(n).encode(), "en-us", 175, 50)  # noqa: E731
    cache.put(key(1), (b"a" * 100,))
    cache.put(key(2), (b"b" * 100,))
    assert cache.get(key(1)) is not None  # 1 is now the most recent
    cache.put(key(3), (b"c" * 100,))  # over 250 bytes: the least recent (2) goes
    cache.put(key(4), (b"d" * 121,))  # too big to keep at all
    assert cache.get(key(2)) is None and cache.get(key(4)) is None
    assert cache.get(key(1)) == (b"a" * 100,) and cache.get(key(3)) == (b"c" * 100,)
