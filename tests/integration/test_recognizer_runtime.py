"""The recognizer runtime: one per engine process, owned by the provider factory; two in
one process share nothing (decoder process, line means, counters)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator

import pytest

from adapters.asr.pocketsphinx import PocketsphinxRecognizer, PocketsphinxStream
from adapters.asr.runtime import RecognizerRuntime
from adapters.providers import EmbeddedProviderFactory
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.ports.provider_stats import RecognizerStats
from engine.runtime.ports.providers import ProviderSpec
from engine.runtime.ports.turn import TurnDetectorError
from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.fakes import FakeProviders
from tests.helpers.speech import spoken

PHRASES = ["what are your opening hours", "where are you located", "can i see the menu"]
LINE = "LINEAR16/16000"
PCM16K = AudioFormat(AudioEncoding.LINEAR16, 16000)


@pytest.fixture
async def runtimes() -> AsyncIterator[tuple[RecognizerRuntime, RecognizerRuntime]]:
    first, second = RecognizerRuntime(), RecognizerRuntime()
    yield first, second
    await asyncio.gather(asyncio.to_thread(first.close), asyncio.to_thread(second.close))


async def say(recognizer: PocketsphinxRecognizer, text: str, *, live: bool) -> PocketsphinxStream:
    """One new caller on LINE says ``text``; ``live``: wait until a live pass decodes it."""
    stream = recognizer.open_stream(LINE)
    pcm = await spoken(text, PCM16K, lead_ms=300, tail_ms=300)
    for start in range(0, len(pcm), 640):
        await stream.feed(pcm[start : start + 640])
    deadline = time.monotonic() + 10.0
    while live and (await recognizer.decoder_process_pool_stats()).in_use == 0:
        assert time.monotonic() < deadline, "no live pass began"
        await asyncio.sleep(0.01)
    stream.silence_began()
    assert (await stream.finish()).text == text
    return stream


async def test_two_runtimes_in_one_process_keep_their_own_lines_and_counters(
    runtimes: tuple[RecognizerRuntime, RecognizerRuntime],
) -> None:
    first, second = runtimes
    taught = PocketsphinxRecognizer(PHRASES, runtime=first)
    # The first caller on the line teaches it its mean; the next one starts from it.
    assert not (await say(taught, PHRASES[0], live=False)).ended_live_pass
    assert (await say(taught, PHRASES[1], live=True)).ended_live_pass
    # The other runtime's decoder process has learnt nothing of that line.
    fresh = PocketsphinxRecognizer(PHRASES, runtime=second)
    assert not (await say(fresh, PHRASES[2], live=False)).ended_live_pass

    a, b = first.stats(), second.stats()
    assert (a.grammar_passes, a.grammar_passes_live) == (2, 1)
    assert (b.grammar_passes, b.grammar_passes_live) == (1, 0)
    pids = [await asyncio.wrap_future(r.decode_process.start()) for r in (first, second)]
    assert len({*pids, os.getpid()}) == 3


async def test_closing_the_provider_factory_stops_its_decoder_process() -> None:
    runtime = RecognizerRuntime()
    factory = EmbeddedProviderFactory(recognizer_runtime=runtime)
    pid = await asyncio.wrap_future(runtime.decode_process.start())
    await factory.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped


async def test_metrics_read_the_figures_of_the_factory_bootstrap_was_given() -> None:
    providers = FakeProviders()
    providers.recognizer_figures = RecognizerStats(whisper=7, fallback_late=2)
    settings = Settings.from_env({"ENGINE_PORT": "0", "HISTORY_SPOOL_PATH": ""})
    engine = await bootstrap(settings, providers=providers)
    server = EngineServer(engine)
    try:
        scraped = {
            (family.name, sample.labels.get("event")): sample.value
            for family in server.metrics.registry.collect()
            for sample in family.samples
        }
        assert scraped["voiceengine_asr_hybrid", "whisper"] == 7
        assert scraped["voiceengine_asr_hybrid", "fallback_late"] == 2
        assert ("voiceengine_whisper_pool_workers", None) not in scraped  # no pool: not shown
    finally:
        await engine.close()


async def test_closing_the_provider_factory_stops_its_turn_detector() -> None:
    factory = EmbeddedProviderFactory(recognizer_runtime=RecognizerRuntime())
    detector = factory.turn_detector(ProviderSpec("smart_turn", {}))
    await detector.predict(b"\x00\x00" * 16_000)  # its worker thread is up
    await factory.close()
    with pytest.raises(TurnDetectorError):  # a closed detector takes no more checks
        await detector.predict(b"\x00\x00" * 16_000)
    deadline = time.monotonic() + 10
    while any(t.name.startswith("smart-turn") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the detector's worker threads did not stop"
        await asyncio.sleep(0.01)
