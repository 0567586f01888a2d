"""The words Whisper weighed for an utterance's last word, and the readings they give."""

from __future__ import annotations

import numpy as np

from adapters.asr.last_word import last_word_rivals, other_readings

EOT = 100
PIECES = {1: " a", 2: " table", 3: " for", 4: " it", 5: ".", 6: " you", 7: "ble", 8: " It"}


def _decode(token: int) -> str:
    return PIECES.get(token, " zz")


def _step(chosen: int, **others: float) -> np.ndarray:
    """Log-probabilities over a 101-token vocabulary: ``chosen`` gets what ``others`` leave."""
    probabilities = np.full(EOT + 1, 1e-6)
    for token, p in others.items():
        probabilities[int(token.lstrip("t"))] = p
    probabilities[chosen] = 1.0 - probabilities.sum() + probabilities[chosen]
    return np.log(probabilities)


def test_the_rivals_are_the_other_words_weighed_where_the_last_word_begins() -> None:
    ids = [1, 2, 3, 4, 5]  # " a table for it."
    steps = [_step(1), _step(2), _step(3), _step(4, t100=0.1, t5=0.06, t6=0.2, t8=0.05), _step(5)]
    rivals = dict(last_word_rivals(ids, steps, _decode, EOT))
    assert rivals["you"] == 0.2
    assert rivals[""] == 0.16  # the end of text and a full stop: no word there, added up
    assert "it" not in rivals  # " It" is the chosen word written another way


def test_a_word_continued_by_another_token_is_judged_where_it_begins() -> None:
    ids = [1, 2, 7]  # " a table" + "ble": the last word begins at " table"
    steps = [_step(1), _step(2, t6=0.3), _step(7, t100=0.5)]
    assert dict(last_word_rivals(ids, steps, _decode, EOT)) == {"you": 0.3}


def test_no_words_no_rivals() -> None:
    assert last_word_rivals([5], [_step(5, t100=0.5)], _decode, EOT) == ()
    assert last_word_rivals([], [], _decode, EOT) == ()


def test_readings_replace_or_drop_the_last_word_when_likely_enough() -> None:
    rivals = (("", 0.3), ("you", 0.2), ("them", 0.05))
    readings = other_readings("I would like a table for it.", rivals, 0.1)
    assert readings == ("i would like a table for", "i would like a table for you")
    assert other_readings("Any.", (("", 0.9),), 0.1) == ()  # nothing left to read
