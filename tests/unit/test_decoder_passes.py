"""A pass over an utterance depends on its audio and its starting mean, nothing else.

Decoders are pooled: the one lent to a caller last decoded someone else. What it decoded,
how loaded the process is and in which order the jobs ran must not change a transcript.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml

from adapters.asr.decoders import (
    DecoderPool,
    DecoderPools,
    Outcome,
    confirm_pass,
    dithered,
    final_pass,
)
from engine.audio.codec import InputConverter
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR
from tests.helpers.speech import spoken, synthesize_16k, telephone_line
from tests.integration.test_vad_asr import PHRASES


def never() -> bool:
    return False


@pytest.fixture(scope="module")
def quiet_line() -> dict[str, bytes]:
    """The phrases through a quiet 8 kHz line (a third of the level)."""
    return {text: telephone_line(synthesize_16k(text), 0.3) for text in PHRASES[:5]}


def fresh_pool() -> DecoderPool:
    return DecoderPools(max_idle=4).pool_for(tuple(PHRASES))


def test_what_a_pooled_decoder_decoded_before_changes_nothing(
    quiet_line: dict[str, bytes],
) -> None:
    audio = quiet_line[PHRASES[4]]
    first = final_pass(fresh_pool(), audio, True, None, never)
    pool = fresh_pool()  # one decoder, kept busy with other callers first
    for other in (PHRASES[1], PHRASES[3], PHRASES[4]):
        final_pass(pool, quiet_line[other], True, None, never)
    assert pool.stats().created == 1
    again = final_pass(pool, audio, True, None, never)
    assert again == first  # same text, same confidence, same mean learnt


def test_a_first_caller_on_a_quiet_line_is_heard_from_their_own_mean(
    quiet_line: dict[str, bytes],
) -> None:
    # Nothing known about the line: the mean is estimated from this utterance alone.
    # Starting from the estimate a single pass leaves (two thirds the default mean's),
    # this phrase was heard as "i want to do you".
    outcome = final_pass(fresh_pool(), quiet_line[PHRASES[4]], True, None, never)
    assert outcome.recognition.text == PHRASES[4].lower()


def test_the_dither_is_the_same_for_the_same_place_in_the_utterance() -> None:
    pcm = bytes(6400)
    whole = dithered(pcm, 0)
    assert dithered(pcm[:3200], 0) + dithered(pcm[3200:], 3200) == whole
    assert whole != pcm  # it does add something
    loud = (32767).to_bytes(2, "little", signed=True) * 100
    assert dithered(loud, 0) == loud  # and never wraps around


@pytest.fixture(scope="module")
def demo_pool() -> DecoderPool:
    """The bundled assistant's phrases (where "mm hmm" once passed for a phrase)."""
    phrases = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())["asr"]["phrases"]
    return DecoderPools(max_idle=2).pool_for(tuple(phrases))


def on_a_phone_line(text: str) -> bytes:
    """``text`` spoken over 8 kHz mu-law, as the engine gets it (16 kHz PCM16)."""
    fmt = AudioFormat(AudioEncoding.MULAW, 8000)
    wire = asyncio.run(spoken(text, fmt, lead_ms=300, tail_ms=300, voice="en-us+f3"))
    return InputConverter(fmt).process(wire)


def confirmed(pool: DecoderPool, audio: bytes) -> Outcome:
    return confirm_pass(pool, final_pass(pool, audio, True, None, never), audio, never)


def test_a_listed_phrase_that_both_searches_hear_is_confirmed(demo_pool: DecoderPool) -> None:
    outcome = confirmed(demo_pool, on_a_phone_line("when are you open"))
    assert outcome.confirmed and outcome.recognition.text == "when are you open"
    assert outcome.recognition.confidence >= 0.95


def test_an_acknowledgement_squeezed_into_a_phrase_is_not_confirmed(
    demo_pool: DecoderPool,
) -> None:
    # Both searches make "when are you open" of it, with a 40 ms "are".
    outcome = confirmed(demo_pool, on_a_phone_line("mm hmm"))
    assert not outcome.confirmed
    assert outcome.recognition.confidence < 0.95
