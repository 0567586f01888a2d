"""The other words Whisper weighed for an utterance's last word (Whisper worker threads).

A caller who pauses mid-sentence ("a table for ...") leaves audio that stops short, and
Whisper tiny then often adds or changes the last word ("a table for it", "do you have
many" for "any") while giving the true ending a fair chance too. The end of turn asks
whether a likely reading of the words leaves the sentence unfinished; this finds the
readings: the tokens Whisper weighed where its last word begins, each as the word it would
put there ("" for none: the text ends before it), with its probability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adapters.asr.domain_model import words

__all__ = ["RIVALS_CONSIDERED", "last_word_rivals", "other_readings"]

# The most likely tokens looked at in the last word's place, and the least a word must get
# to be named.
RIVALS_CONSIDERED = 5
_NAMED_FROM = 0.01


def _starts_word(piece: str) -> bool:
    return piece.startswith(" ") and any(c.isalnum() for c in piece)


def _word_of(token: int, piece: str, special_from: int) -> str | None:
    """The word ``token`` would put in the last word's place; "" for none; None: not a
    word of its own (a special token, or the rest of a longer word)."""
    if token >= special_from:
        return ""  # the end of the text (timestamps are off: nothing else is emitted)
    if not any(c.isalnum() for c in piece):
        return ""  # punctuation: the text ends before the last word
    if not _starts_word(piece):
        return None
    found = words(piece)
    return found[0] if found else None


def last_word_rivals(
    ids: Sequence[int],
    step_logits: Sequence[Any],
    decode: Callable[[int], str],
    special_from: int,
) -> tuple[tuple[str, float], ...]:
    """The words Whisper weighed instead of the last word of ``ids`` (most likely first).

    ``ids``: the tokens generated (text tokens below ``special_from``); ``step_logits``:
    the log-probabilities (or logits) over the vocabulary at each generation step, in
    step with ``ids``; ``decode``: one token's text. Probabilities of tokens that are the
    same word ("Any", " any") are added up. () when there is no last word.
    """
    pieces = [decode(t) if t < special_from else "" for t in ids]
    starts = [i for i, piece in enumerate(pieces) if _starts_word(piece)]
    if not starts or starts[-1] >= len(step_logits):
        return ()
    at = starts[-1]
    scores = np.asarray(step_logits[at], dtype=np.float64).reshape(-1)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    top = np.argpartition(-probabilities, RIVALS_CONSIDERED)[:RIVALS_CONSIDERED]
    chosen = _word_of(ids[at], pieces[at], special_from)
    rivals: dict[str, float] = {}
    for token in (int(t) for t in top):
        word = _word_of(token, decode(token) if token < special_from else "", special_from)
        if word is not None and word != chosen:  # " It" for " it" is the same reading
            rivals[word] = rivals.get(word, 0.0) + float(probabilities[token])
    ranked = sorted(((w, p) for w, p in rivals.items() if p >= _NAMED_FROM), key=lambda i: -i[1])
    return tuple((word, round(p, 3)) for word, p in ranked)


def other_readings(text: str, rivals: Sequence[tuple[str, float]], least: float) -> tuple[str, ...]:
    """``text`` (normalized words) with its last word replaced by each rival at least
    ``least`` likely, or dropped for a rival "" (most likely first; none equal to ``text``)."""
    said = words(text)
    readings: list[str] = []
    for word, probability in rivals:
        if probability < least or not said:
            continue
        reading = " ".join([*said[:-1], word] if word else said[:-1])
        if reading and reading != " ".join(said) and reading not in readings:
            readings.append(reading)
    return tuple(readings)
