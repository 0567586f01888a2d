"""The domain model of an assistant's expected phrases, for PocketSphinx (pure functions:
built in the engine process at start-up and again in the decoder process).

From the phrases: a small dictionary (their words' cmudict entries), a JSGF grammar that
accepts exactly one phrase, and a backoff trigram (ARPA) over them. Each side's decoder
pools build it once per phrase set; the texts are immutable.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pocketsphinx

_log = logging.getLogger(__name__)

_DISCOUNT = 0.1  # absolute discount: little mass for word orders never listed
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class DomainModel:
    """Immutable texts for a decoder that knows only the assistant's phrases."""

    dictionary: str
    trigram_arpa: str
    grammar_jsgf: str
    sentences: frozenset[str] = frozenset()  # what the grammar accepts, word for word

    def grammar_accepts(self, text: str) -> bool:
        """True when ``text`` is a whole sentence of the grammar.

        pocketsphinx's grammar search returns its best partial path when it ends off the
        grammar's final state (a mean that does not fit the audio): not a phrase heard.
        """
        return text in self.sentences


def words(text: str) -> list[str]:
    return [w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'")]


def _pronunciations(words: set[str]) -> dict[str, list[str]]:
    """cmudict lines for ``words`` (alternates included), keyed by word."""
    found: dict[str, list[str]] = defaultdict(list)
    path = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
    with open(path, encoding="utf-8") as dictionary:
        for line in dictionary:
            entry = line.split(" ", 1)[0]
            if entry.split("(", 1)[0] in words:
                found[entry.split("(", 1)[0]].append(line.strip())
    return found


def _arpa(sentences: Sequence[Sequence[str]]) -> str:
    """A backoff trigram in ARPA format: absolute discounting over add-one unigrams."""
    counts: list[Counter[tuple[str, ...]]] = [Counter(), Counter(), Counter()]
    for sentence in sentences:
        tokens = ["<s>", *sentence, "</s>"]
        for order in (1, 2, 3):
            for i in range(len(tokens) - order + 1):
                if order > 1 or i > 0:  # <s> is context only, never predicted
                    counts[order - 1][tuple(tokens[i : i + order])] += 1
    total = sum(counts[0].values())
    probs: list[dict[tuple[str, ...], float]] = [
        {gram: (n + 1) / (total + len(counts[0])) for gram, n in counts[0].items()}
    ]
    probs[0][("<s>",)] = 0.0
    backoffs: dict[tuple[str, ...], float] = {}
    for order in (2, 3):
        followers: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for gram, n in counts[order - 1].items():
            followers[gram[:-1]].append((gram[-1], n))
        level: dict[tuple[str, ...], float] = {}
        for history, seen in followers.items():
            history_total = sum(n for _, n in seen)
            for word, n in seen:
                level[(*history, word)] = (n - _DISCOUNT) / history_total
            # The discounted mass goes to the lower order, renormalized over unseen words.
            lower_seen = sum(probs[-1].get((*history[1:], word), 0.0) for word, _ in seen)
            left = _DISCOUNT * len(seen) / history_total
            backoffs[history] = left / max(1e-9, 1.0 - lower_seen)
        probs.append(level)

    def log10(p: float) -> str:
        return f"{math.log10(p):.4f}" if p > 0 else "-99.0000"

    lines = ["\\data\\", *(f"ngram {n}={len(level)}" for n, level in enumerate(probs, 1))]
    for order, level in enumerate(probs, 1):
        lines += ["", f"\\{order}-grams:"]
        for gram, p in sorted(level.items()):
            backoff = f" {log10(backoffs[gram])}" if gram in backoffs else ""
            lines.append(f"{log10(p)} {' '.join(gram)}{backoff if order < 3 else ''}")
    return "\n".join([*lines, "", "\\end\\", ""])


def domain_model(phrases: tuple[str, ...]) -> DomainModel | None:
    """Build the domain model texts (immutable; the decoder pools keep one per phrase set)."""
    sentences = [words(phrase) for phrase in phrases]
    prons = _pronunciations({w for sentence in sentences for w in sentence})
    unknown = sorted({w for sentence in sentences for w in sentence if w not in prons})
    if unknown:
        _log.warning("asr.phrases: words not in the dictionary are ignored: %s", unknown)
    sentences = [[w for w in sentence if w in prons] for sentence in sentences]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        return None
    alternatives = " | ".join(f"( {' '.join(sentence)} )" for sentence in sentences)
    grammar = "#JSGF V1.0;\ngrammar domain;\npublic <utterance> = <phrase>;\n"
    grammar += f"<phrase> = {alternatives};\n"
    dictionary = "".join(f"{line}\n" for lines in prons.values() for line in lines)
    accepted = frozenset(" ".join(sentence) for sentence in sentences)
    return DomainModel(dictionary, _arpa(sentences), grammar, accepted)
