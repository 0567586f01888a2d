"""WebRTC VAD and PocketSphinx ASR adapters, on speech synthesized with eSpeak NG."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from adapters.asr.pocketsphinx import PocketsphinxRecognizer, PocketsphinxStream
from adapters.asr.runtime import RecognizerRuntime
from adapters.vad.webrtc import WebRtcVad
from engine.runtime.ports.providers import (
    INPUT_SAMPLE_RATE_HZ,
    ProviderConfigError,
    RecognitionStream,
)
from tests.helpers.speech import LEAD_IN, synthesize_16k, telephone_line

PHRASES = [
    "I would like to book a table for two",
    "what time do you open tomorrow",
    "can I see the menu please",
    "do you have vegetarian options",
    "I want to cancel my reservation",
    "is there parking nearby",
    "yes please",
    "no thanks",
]
CHUNK_100_MS = INPUT_SAMPLE_RATE_HZ * 2 // 10


@pytest.fixture(scope="module")
def speech() -> dict[str, bytes]:
    texts = [*PHRASES, "book a table for four", "what time do you open"]
    return {text: synthesize_16k(text) for text in texts}


@pytest.fixture(scope="module")
def runtime() -> Iterator[RecognizerRuntime]:
    """This module's recognizer runtime (its own decoder process and counters)."""
    runtime = RecognizerRuntime()
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def domain_recognizer(runtime: RecognizerRuntime) -> PocketsphinxRecognizer:
    return PocketsphinxRecognizer(PHRASES, runtime=runtime)


@pytest.fixture(scope="module")
def generic_recognizer(runtime: RecognizerRuntime) -> PocketsphinxRecognizer:
    return PocketsphinxRecognizer(runtime=runtime)


async def feed_all(stream: RecognitionStream, pcm: bytes, chunk: int = CHUNK_100_MS) -> None:
    for start in range(0, len(pcm), chunk):
        await stream.feed(pcm[start : start + chunk])


async def recognize(recognizer: PocketsphinxRecognizer, pcm: bytes) -> str:
    stream = recognizer.start_utterance()
    await feed_all(stream, pcm)
    return (await stream.finish()).text


async def eventually(condition: Callable[[], bool], within_sec: float = 5.0) -> None:
    """Poll ``condition`` (for work finishing on executor threads) with a bounded deadline."""
    deadline = time.monotonic() + within_sec
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def decoders_in_use(recognizer: PocketsphinxRecognizer) -> int:
    """Decoders lent out here and in the decoder process, once both are idle (bounded)."""
    deadline = time.monotonic() + 5.0
    while True:
        remote = await recognizer.decoder_process_pool_stats()
        in_use = recognizer.pool_stats().in_use + remote.in_use
        if in_use == 0 or time.monotonic() > deadline:
            return in_use
        await asyncio.sleep(0.02)


def frames(pcm: bytes, vad: WebRtcVad) -> list[bytes]:
    size = vad.frame_bytes
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


# -- VAD ----------------------------------------------------------------------------------


def test_vad_frame_size_follows_frame_ms() -> None:
    assert WebRtcVad(frame_ms=10).frame_bytes == 320
    assert WebRtcVad(frame_ms=30).frame_bytes == 960


def test_vad_hears_no_speech_in_digital_silence() -> None:
    vad = WebRtcVad()
    assert not any(vad.is_speech(bytes(vad.frame_bytes)) for _ in range(50))


def test_vad_hears_no_speech_in_low_noise_once_adapted() -> None:
    vad = WebRtcVad()
    noise = np.random.default_rng(7).normal(0, 30, 32_000).astype(np.int16).tobytes()
    verdicts = [vad.is_speech(frame) for frame in frames(noise, vad)]
    # The detector learns the noise floor over its first ~100 ms and may flag those frames.
    assert not any(verdicts[10:])


def test_vad_hears_speech_in_synthesized_speech(speech: dict[str, bytes]) -> None:
    vad = WebRtcVad()
    spoken = speech[PHRASES[0]][len(LEAD_IN) : -len(LEAD_IN)]
    verdicts = [vad.is_speech(frame) for frame in frames(spoken, vad)]
    assert sum(verdicts) / len(verdicts) > 0.6


def test_vad_rejects_a_frame_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="640 bytes"):
        WebRtcVad().is_speech(bytes(100))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"aggressiveness": 4}, "vad.aggressiveness"),
        ({"aggressiveness": True}, "vad.aggressiveness"),
        ({"frame_ms": 25}, "vad.frame_ms"),
        ({"mode": 1}, "vad.mode"),
    ],
)
def test_vad_options_are_validated(options: dict[str, object], field: str) -> None:
    with pytest.raises(ProviderConfigError, match=field):
        WebRtcVad.from_options(options)


def test_vad_options_build_the_detector() -> None:
    vad = WebRtcVad.from_options({"aggressiveness": 3, "frame_ms": 30})
    assert (vad.aggressiveness, vad.frame_bytes) == (3, 960)


# -- ASR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", PHRASES[:4])
async def test_domain_model_recognizes_a_listed_phrase_exactly(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes], text: str
) -> None:
    assert domain_recognizer.uses_domain_model
    assert await recognize(domain_recognizer, speech[text]) == text.lower()


async def test_domain_model_transcribes_an_unlisted_phrase_with_its_trigram(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    # The grammar has no path for a bare prefix; the second pass still finds words.
    assert await recognize(domain_recognizer, speech["what time do you open"]) != ""


async def test_generic_model_transcribes_without_phrases(
    generic_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    assert not generic_recognizer.uses_domain_model
    assert await recognize(generic_recognizer, speech[PHRASES[0]]) != ""


async def test_partials_grow_while_audio_is_fed(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    stream = domain_recognizer.start_utterance()
    pcm = speech[PHRASES[0]]
    seen: list[str] = []
    for start in range(0, len(pcm), 640):  # 20 ms frames, like the pipeline
        await stream.feed(pcm[start : start + 640])
        if start % 6_400 == 0:  # asked every 200 ms, like the speech input
            seen.append(stream.partial())
            await asyncio.sleep(0.005)
    await eventually(lambda: len(stream.partial()) > len(PHRASES[0]) // 2)
    assert any(seen) or stream.partial()
    result = await stream.finish()
    assert result.text == PHRASES[0].lower()
    assert 0.0 < result.confidence <= 1.0


async def live_pass_began(recognizer: PocketsphinxRecognizer) -> None:
    """Wait (bounded) until the decoder process has lent a decoder to a live pass."""
    deadline = time.monotonic() + 5.0
    while (await recognizer.decoder_process_pool_stats()).in_use == 0:
        assert time.monotonic() < deadline, "no live pass began"
        await asyncio.sleep(0.01)


async def known_caller(
    recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> PocketsphinxStream:
    """A caller's second utterance: their cepstral mean is known (from the first)."""
    first = recognizer.open_stream()
    await feed_all(first, speech[PHRASES[6]])
    assert (await first.finish()).text == PHRASES[6].lower()
    assert not first.ended_live_pass  # no mean known yet: decoded whole at the turn end
    return first.next_utterance()


async def test_a_known_callers_final_pass_is_decoded_while_they_speak(
    runtime: RecognizerRuntime,
    domain_recognizer: PocketsphinxRecognizer,
    speech: dict[str, bytes],
) -> None:
    """From a known mean the grammar pass starts with the first word: the turn end only
    decodes the tail. A new caller's first utterance (no mean yet) is decoded whole."""
    before = runtime.stats().grammar_passes_live
    stream = await known_caller(domain_recognizer, speech)
    await feed_all(stream, speech[PHRASES[2]])
    # Decoding began before the turn ended: the decoder process lent a decoder to it.
    await live_pass_began(domain_recognizer)
    stream.silence_began()
    assert (await stream.finish()).text == PHRASES[2].lower()
    assert stream.ended_live_pass
    assert runtime.stats().grammar_passes_live == before + 1  # counted (the metric)
    assert await decoders_in_use(domain_recognizer) == 0


async def test_interims_read_in_the_end_silence_do_not_decode_the_utterance_again(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    stream = await known_caller(domain_recognizer, speech)
    pcm = speech[PHRASES[3]]
    for start in range(0, len(pcm), CHUNK_100_MS):
        await stream.feed(pcm[start : start + CHUNK_100_MS])
        stream.partial()
    stream.silence_began()  # the final job takes the live pass over
    for _ in range(10):  # the speech input keeps asking every 200 ms in the silence
        stream.partial()
        await asyncio.sleep(0.02)
    assert await decoders_in_use(domain_recognizer) == 0  # no second live pass began
    assert (await stream.finish()).text == PHRASES[3].lower()


async def test_callers_who_start_together_use_the_mean_the_first_one_taught(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    """A burst of new calls on a line no caller has taught: the first is decoded whole at
    its turn end; one already speaking by then is decoded live from the mean it taught."""
    line = f"LINEAR16/16000 burst {uuid.uuid4().hex}"  # a line no caller has taught
    first, second = (domain_recognizer.open_stream(line) for _ in range(2))
    pcm = speech[PHRASES[4]]
    half = len(pcm) // 2 // 640 * 640
    await feed_all(first, speech[PHRASES[1]])
    await feed_all(second, pcm[:half])
    first.silence_began()
    assert (await first.finish()).text == PHRASES[1].lower()
    await feed_all(second, pcm[half:])
    # The decoder process takes the rest when it is free (in the suite, maybe only after
    # the final job below: that one then decodes from the line's mean all the same).
    await live_pass_began(domain_recognizer)
    second.silence_began()
    assert (await second.finish()).text == PHRASES[4].lower()
    assert (first.ended_live_pass, second.ended_live_pass) == (False, True)
    assert await decoders_in_use(domain_recognizer) == 0


@pytest.mark.parametrize("pause_sec", [0.0, 0.05])
async def test_a_pass_begun_in_a_pause_is_redone_when_the_caller_speaks_again(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes], pause_sec: float
) -> None:
    """silence_began starts the final pass early; speech_resumed makes it cover the rest.

    The early pass ends the live pass; withdrawn before it ran (no pause) or after, the
    live pass's decoder still goes back to the pool.
    """
    pcm = speech[PHRASES[0]]
    half = len(pcm) // 2 // 640 * 640
    stream = await known_caller(domain_recognizer, speech)
    await feed_all(stream, pcm[:half])
    stream.silence_began()  # a pause mid-sentence: the pass over the first half starts
    await asyncio.sleep(pause_sec)
    stream.speech_resumed()
    await feed_all(stream, pcm[half:])
    stream.silence_began()
    assert (await stream.finish()).text == PHRASES[0].lower()
    assert await decoders_in_use(domain_recognizer) == 0


async def test_finish_without_audio_is_an_empty_transcript(
    domain_recognizer: PocketsphinxRecognizer,
) -> None:
    result = await domain_recognizer.start_utterance().finish()
    assert (result.text, result.confidence) == ("", 0.0)


async def test_concurrent_streams_get_their_own_transcripts(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    first, second = PHRASES[4], PHRASES[5]
    texts = await asyncio.gather(
        recognize(domain_recognizer, speech[first]), recognize(domain_recognizer, speech[second])
    )
    assert texts == [first.lower(), second.lower()]


async def test_cancel_returns_decoders_to_the_pool(
    runtime: RecognizerRuntime, speech: dict[str, bytes]
) -> None:
    recognizer = PocketsphinxRecognizer(["yes please", "no thanks"], runtime=runtime)
    for _ in range(30):
        stream = recognizer.start_utterance()
        await stream.feed(speech["yes please"][: CHUNK_100_MS * 3])
        stream.partial()  # interims asked for: a live pass borrows a decoder
        stream.cancel()
        await stream.feed(b"\0" * CHUNK_100_MS)  # late audio after a barge-in is dropped
    assert await decoders_in_use(recognizer) == 0
    stats = await recognizer.decoder_process_pool_stats()  # where the passes run
    assert stats.created <= 4  # reused, not one decoder per utterance


async def test_cancel_while_decoding_releases_the_decoder(
    runtime: RecognizerRuntime, speech: dict[str, bytes]
) -> None:
    recognizer = PocketsphinxRecognizer(["is there parking nearby"], runtime=runtime)
    stream = recognizer.start_utterance()
    feeding: asyncio.Task[None] = asyncio.create_task(stream.feed(speech[PHRASES[5]]))
    await eventually(lambda: stream.partial() != "" or feeding.done())
    stream.cancel()
    await feeding
    assert await decoders_in_use(recognizer) == 0
    assert await recognize(recognizer, speech[PHRASES[5]]) == PHRASES[5]


def test_phrase_words_missing_from_the_dictionary_are_skipped(runtime: RecognizerRuntime) -> None:
    recognizer = PocketsphinxRecognizer(["book a table qxzvy", "yes"], runtime=runtime)
    assert recognizer.uses_domain_model


def test_phrases_with_no_known_word_fall_back_to_the_generic_model(
    runtime: RecognizerRuntime,
) -> None:
    assert not PocketsphinxRecognizer(["qxzvy blorptang"], runtime=runtime).uses_domain_model


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"language": "en"}, "asr.language"),
        ({"phrases": "yes please"}, "asr.phrases"),
        ({"phrases": ["yes", 2]}, "asr.phrases"),
    ],
)
def test_asr_options_are_validated(
    runtime: RecognizerRuntime, options: dict[str, object], field: str
) -> None:
    with pytest.raises(ProviderConfigError, match=field):
        PocketsphinxRecognizer.from_options(options, runtime=runtime)


def test_asr_options_build_a_domain_recognizer(runtime: RecognizerRuntime) -> None:
    options = {"phrases": ["yes please", "no thanks"]}
    recognizer = PocketsphinxRecognizer.from_options(options, runtime=runtime)
    assert recognizer.uses_domain_model


async def test_a_turn_survives_the_decoder_process_being_killed(
    runtime: RecognizerRuntime,
    domain_recognizer: PocketsphinxRecognizer,
    speech: dict[str, bytes],
) -> None:
    """The final pass runs in a process of its own; if it dies, a new one decodes the turn."""
    process = runtime.decode_process
    before = process.restarts
    for _ in range(2):  # killed while a pass is queued or running, then between turns
        pid = await asyncio.wrap_future(process.start())
        assert pid != os.getpid()
        stream = domain_recognizer.open_stream()
        await feed_all(stream, speech[PHRASES[4]])
        stream.silence_began()
        os.kill(pid, signal.SIGKILL)
        assert (await stream.finish()).text == PHRASES[4].lower()
    assert process.restarts >= before + 2
    assert await recognize(domain_recognizer, speech[PHRASES[5]]) == PHRASES[5].lower()


async def test_a_callers_next_utterance_starts_from_what_the_last_one_learnt(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    first = domain_recognizer.open_stream()
    await feed_all(first, telephone_line(speech[PHRASES[1]], 0.3))
    first.silence_began()
    assert (await first.finish()).text == PHRASES[1].lower()
    second = first.next_utterance()  # what the speech input does for the same caller
    await feed_all(second, telephone_line(speech[PHRASES[3]], 0.3))
    second.silence_began()
    assert (await second.finish()).text == PHRASES[3].lower()
    # A mean learnt on another line does not stick: the phrase is still heard.
    third = second.next_utterance()
    await feed_all(third, speech[PHRASES[5]])
    assert (await third.finish()).text == PHRASES[5].lower()


async def test_a_new_caller_starts_from_what_callers_on_the_same_line_taught(
    domain_recognizer: PocketsphinxRecognizer, speech: dict[str, bytes]
) -> None:
    """The line's mean is shared by its callers; a caller on another line is not misled."""
    line = "LINEAR16/8000"
    for caller, phrase in enumerate((PHRASES[1], PHRASES[3], PHRASES[4])):
        stream = domain_recognizer.open_stream(line)
        await feed_all(stream, telephone_line(speech[phrase], 0.3))
        stream.silence_began()
        assert (await stream.finish()).text == phrase.lower(), f"caller {caller}"
    wideband = domain_recognizer.start_utterance_on("LINEAR16/16000")
    await feed_all(wideband, speech[PHRASES[5]])
    assert (await wideband.finish()).text == PHRASES[5].lower()
    # Even a mean from another kind of line only costs a second try, not the phrase.
    misled = domain_recognizer.open_stream(line)
    await feed_all(misled, speech[PHRASES[2]])
    assert (await misled.finish()).text == PHRASES[2].lower()
