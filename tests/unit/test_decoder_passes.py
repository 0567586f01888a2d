"""A pass over an utterance depends on its audio and its starting mean, nothing else.

Decoders are pooled: the one lent to a caller last decoded someone else. What it decoded,
how loaded the process is and in which order the jobs ran must not change a transcript.
"""

from __future__ import annotations

import pytest

from adapters.asr.decoders import DecoderPool, DecoderPools, dithered, final_pass
from tests.helpers.speech import synthesize_16k, telephone_line
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
