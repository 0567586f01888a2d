"""Text helpers: sentence splitting, heard-text estimation, a transcript's words."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends at . ! ? ; or : followed by whitespace (so "3.30" or "e.g." mid-word
# does not split). Newlines also end a sentence.
_BOUNDARY = re.compile(r"(?<=[.!?;:])\s+|\n+")
_WORD = re.compile(r"[a-z0-9']+")
# Very short fragments ("Hi.") are merged into the next sentence so the synthesizer
# is not started for a syllable; the first sentence is exempt to keep latency low.
_MIN_SENTENCE_CHARS = 12


class SentenceSplitter:
    """Accumulates streamed text deltas and hands out complete sentences."""

    def __init__(self) -> None:
        self._buffer = ""
        self._emitted_any = False

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._buffer += delta
        sentences: list[str] = []
        while True:
            match = _BOUNDARY.search(self._buffer)
            if match is None:
                break
            candidate = self._buffer[: match.start()].strip()
            if self._emitted_any and len(candidate) < _MIN_SENTENCE_CHARS:
                # Look for the next boundary after this one instead.
                nxt = _BOUNDARY.search(self._buffer, match.end())
                if nxt is None:
                    break
                candidate = self._buffer[: nxt.start()].strip()
                match = nxt
            self._buffer = self._buffer[match.end() :]
            if candidate:
                sentences.append(candidate)
                self._emitted_any = True
        return sentences

    def flush(self) -> str:
        """Return whatever is left (the last, unterminated sentence)."""
        rest, self._buffer = self._buffer.strip(), ""
        return rest


@dataclass(slots=True)
class SpokenSpan:
    """A sentence and where its audio lies within the response, in ms."""

    text: str
    start_ms: int
    end_ms: int


def heard_text(spans: list[SpokenSpan], heard_ms: int) -> str:
    """The prefix of the spoken text that fits in ``heard_ms`` of audio.

    Whole sentences heard are kept; of a sentence cut off, the words are kept in
    proportion to the part of its audio that was played.
    """
    words: list[str] = []
    for span in spans:
        if span.end_ms <= span.start_ms and heard_ms <= span.start_ms:
            break  # a sentence whose audio has not started was not heard
        if heard_ms >= span.end_ms:
            words.extend(span.text.split())
            continue
        if heard_ms > span.start_ms and span.end_ms > span.start_ms:
            sentence_words = span.text.split()
            fraction = (heard_ms - span.start_ms) / (span.end_ms - span.start_ms)
            words.extend(sentence_words[: int(len(sentence_words) * fraction)])
        break
    return " ".join(words)


def words_of(text: str) -> list[str]:
    """Lower-case words, without punctuation; hyphens split ("Mm-hmm." -> ["mm", "hmm"])."""
    return _WORD.findall(text.lower())
