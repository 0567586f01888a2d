"""The hybrid recognizer (engine event loop): pocketsphinx streams, Whisper tiny.en writes
the final transcript.

pocketsphinx (with the assistant's phrase grammar) gives interim transcripts while the
caller speaks and its VAD-driven endpointing is unchanged. The final transcript comes
from Whisper, prompted with the assistant's phrases: it hears wordings no phrase has,
where the one-phrase grammar can only pick the closest listed phrase.

Whisper tiny mishears close words now and then ("when are you located"). When all of
its words are phrase words and a listed phrase is a word or two away, pocketsphinx decodes
the utterance once more with a grammar of just those two sentences and the audio chooses.

No added latency: Whisper starts when the end silence begins (``silence_began``, sent by
the speech input ~160 ms into the silence) and runs during the rest of the wait; if the
caller speaks again the pass is withdrawn (or its result dropped) and starts over at the
next silence. ``finish()`` then usually finds the result ready. pocketsphinx's own final
pass starts at the same moment; it costs about a seventh of Whisper's, and when it and the
phrase trigram agree on a listed phrase, that is the final and Whisper is not needed.

Whisper is spent where it matters. Unless the pool has been quiet for a while (one call or
a few), the pass is asked for only once the grammar pass has not confirmed a listed phrase
(a pass begun for a phrase the grammar then confirms takes a worker for nothing), and a pass
whose caller has reached the end of the turn goes before passes begun in a silence. It is
waited for up to ``final_wait_ms`` after the caller reaches the end of the turn (audio sent
ahead of real time adds its lead: its caller is not waiting yet).

Fallbacks, each counted in the runtime's counters (``recognizer_stats()``): the shared
Whisper pool is saturated (``refused``, or the passes before this one would take longer
than the wait at the pool's recent pace), Whisper failed (``failed``), or its result was
not ready in time (``late``). Then the turn gets pocketsphinx's grammar final, usually
ready by then, reported as a guess (the assistant asks again) unless confirmed. Whisper's
"no speech" verdict (no text) is trusted: VAD-triggering noise then produces no turn
rather than a phrase it resembles.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from adapters.asr.decoders import CONFIDENCE_CONFIRMED, Outcome
from adapters.asr.domain_model import words
from adapters.asr.last_word import other_readings
from adapters.asr.pocketsphinx import PocketsphinxRecognizer, PocketsphinxStream
from adapters.asr.runtime import Counters
from adapters.asr.whisper import WhisperPool, WhisperResult
from engine.runtime.ports.providers import Recognition, RecognitionStream

__all__ = ["INTERRUPTIONS", "HybridRecognizer", "phrase_prompt"]

_log = logging.getLogger(__name__)
_R = TypeVar("_R")
_MAX_KEPT_BYTES = 30 * 32_000  # Whisper hears at most 30 s
# pocketsphinx has no posterior (priors only), so its final standing in for Whisper's is
# reported as a guess: its prior scaled below any assistant's unsure threshold.
_FALLBACK_DISCOUNT = 0.4
# A Whisper pool that has had no pass for this long serves one call or a few: a pass starts
# with the silence, beside the grammar pass, for the lowest latency. A pool busier than
# that waits for the grammar pass to say whether Whisper is needed at all.
_QUIET_POOL_SEC = 2.0
# Another last word (or none) that Whisper found at least this likely is a reading the end
# of turn weighs too: the rivals of complete questions' last words stayed under 0.08, the
# endings Whisper put on sentences cut at a pause ("a table for it") left the true one
# 0.12-0.46 (docs/benchmarks/turn-taking.md).
_RIVAL_MIN = 0.1


_QUESTION_WORDS = frozenset(
    {"what", "when", "where", "which", "who", "how", "do", "does", "can", "could", "are", "is"}
)
# What any caller may say to stop the assistant, put before the phrases in every prompt:
# short words Whisper tiny otherwise mishears on telephone audio (8 kHz "stop" as "oh",
# which barge-in takes for a noise: docs/benchmarks/interruptions.md). The phrases stay
# last, nearest the transcript, where the prompt weighs most.
INTERRUPTIONS = "Stop. Wait. No, no. Hold on."


def phrase_prompt(phrases: tuple[str, ...] | list[str]) -> str:
    """Whisper's context text: the interruptions, then the assistant's phrases ("" if none).

    Written as a transcript would be (capitalized, questions with "?"): the form that
    gave the fewest errors on out-of-phrase questions (docs/benchmarks/recognition.md).
    """
    sentences = []
    for phrase in phrases:
        said = words(phrase)
        if said:
            end = "?" if said[0] in _QUESTION_WORDS else "."
            text = " ".join(said)
            sentences.append(f"{text[0].upper()}{text[1:]}{end}")
    # Without phrases, no prompt: the interruptions alone made Whisper hear a cough as "Stop."
    return " ".join([INTERRUPTIONS, *sentences]) if sentences else ""


def word_edits(ref: list[str], hyp: list[str]) -> int:
    """Word edit distance (Levenshtein over words): also the benchmarks' WER numerator."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def _inflection_of(text: str, rivals: list[str]) -> str | None:
    """The one listed phrase ``text`` differs from only by one word's ending, else None.

    Whisper tiny clips word endings on telephone and synthetic speech ("what are you
    opening hours" for "your", "open" for "opening"); when a listed phrase is the same
    sentence but for one word that is a prefix of the other, the phrase is what was said.
    """
    said = text.split()
    found: list[str] = []
    for phrase in rivals:
        expected = phrase.split()
        if len(expected) != len(said):
            continue
        diffs = [(a, b) for a, b in zip(said, expected, strict=True) if a != b]
        if len(diffs) == 1 and (
            diffs[0][1].startswith(diffs[0][0]) or diffs[0][0].startswith(diffs[0][1])
        ):
            found.append(phrase)
    return found[0] if len(found) == 1 else None


def _confidence(heard: WhisperResult) -> float:
    """Whisper's confidence in its text: the mean token probability of its decode."""
    return round(min(1.0, math.exp(heard.avg_logprob)), 3)


def _settled(future: asyncio.Future[_R] | Future[_R] | None) -> _R | None:
    """A pass's result once it is done; None while it runs, or if withdrawn or failed."""
    if future is None or not future.done() or future.cancelled():
        return None
    return None if future.exception() is not None else future.result()


def _is_confirmed(early: asyncio.Future[Outcome]) -> bool:
    """The grammar pass is done and the phrase trigram heard its phrase too."""
    outcome = _settled(early)
    return outcome is not None and outcome.confirmed


def _withdraw_if_confirmed(early: asyncio.Future[Outcome], whisper: Future[WhisperResult]) -> None:
    """A confirmed phrase needs no Whisper pass: withdraw it while it waits for a worker
    (a pass already running finishes unused)."""
    if _is_confirmed(early) and not whisper.running():
        whisper.cancel()


class _HybridStream:
    """One utterance: pocketsphinx live, plus an early Whisper pass over the kept audio."""

    def __init__(
        self,
        live: PocketsphinxStream,
        pool: Callable[[], WhisperPool],
        prompt: str,
        final_wait_s: float,
        live_phrases: tuple[str, ...],
        vocabulary: frozenset[str],
        counters: Counters,
    ) -> None:
        self._live = live
        self._counters = counters
        self._pool = pool
        self._prompt = prompt
        self._final_wait_s = final_wait_s
        self._live_phrases = live_phrases
        self._phrases = frozenset(live_phrases)
        self._vocabulary = vocabulary
        self._audio = bytearray()
        self._pass: Future[WhisperResult] | None = None
        self._refused = False
        self._done = False

    async def feed(self, pcm16k: bytes) -> None:
        if not self._done and len(self._audio) < _MAX_KEPT_BYTES:
            self._audio += pcm16k[: _MAX_KEPT_BYTES - len(self._audio)]
        await self._live.feed(pcm16k)

    def partial(self) -> str:
        return self._live.partial()

    def partial_lag_ms(self) -> int:
        return self._live.partial_lag_ms()

    def silence_began(self) -> None:
        self._live.silence_began()  # the grammar pass, begun early too
        early = self._live.early_final()
        if self._pass is None and not self._done:
            if early is not None and not self._whisper_now():
                self._ask_whisper_unless_confirmed(early)
                return
            self._start_pass()
        whisper = self._pass
        if early is not None and whisper is not None:
            early.add_done_callback(lambda done: _withdraw_if_confirmed(done, whisper))

    def _ask_whisper_unless_confirmed(self, early: asyncio.Future[Outcome]) -> None:
        """On a busy pool, start the pass only once the grammar pass has not confirmed a
        listed phrase: most callers say one, and a pass begun for nothing (it cannot be
        stopped once it runs) would take a worker from a caller who needs it."""

        def after_grammar(done: asyncio.Future[Outcome]) -> None:
            if self._done or self._pass is not None or self._live.early_final() is not done:
                return  # the turn ended (finish asks), or the caller spoke again
            if not _is_confirmed(done):
                self._start_pass()

        early.add_done_callback(after_grammar)

    def speech_resumed(self) -> None:
        self._live.speech_resumed()
        if self._pass is not None:
            self._pass.cancel()  # withdrawn if still queued; a running pass is ignored
            self._pass = None
            self._counters.add("restarted")
        self._refused = False

    def early_text(self) -> str | None:
        """ReadsEarlyFinal: the early Whisper pass's words (a confirmed grammar phrase's,
        if that came first); None while they are coming, "" if there are none.

        They are coming while the pass runs or waits for a worker (if the pool's pace says
        it will be done within ``final_wait_ms``), and while the grammar pass decides
        whether Whisper is needed at all: the final transcript waits for the same pass, so
        the end of the turn waiting for its words costs the caller nothing. A pass the
        pool refused, or one too far behind, gives none.
        """
        grammar = self._live.early_final()
        if grammar is not None and _is_confirmed(grammar):
            return grammar.result().recognition.text
        early = self._pass
        if early is None:
            # asked for once the grammar pass has not confirmed (unless the pool refused)
            return None if grammar is not None and not self._refused else ""
        if not early.done():
            return None if self._pool().eta(early) <= self._final_wait_s else ""
        heard = _settled(early)
        return "" if heard is None else " ".join(words(heard.text))

    def phrase_confirmed(self) -> bool | None:
        """ConfirmsPhrase: the grammar pass begun in the silence and the phrase trigram
        heard the same listed phrase (None while it runs)."""
        grammar = self._live.early_final()
        if grammar is None:
            return False
        return _is_confirmed(grammar) if grammar.done() else None

    def early_alternatives(self) -> tuple[str, ...]:
        """ReadsEarlyFinal: the early pass's text with a last word Whisper also found
        likely (or without it); () while it runs, when there is none, or when a confirmed
        grammar phrase is the early final."""
        grammar = self._live.early_final()
        if grammar is not None and _is_confirmed(grammar):
            return ()
        heard = _settled(self._pass)
        if heard is None:
            return ()
        return other_readings(heard.text, heard.last_word_rivals, _RIVAL_MIN)

    async def finish(self) -> Recognition:
        return await self.finish_at(time.monotonic())

    async def finish_at(self, caller_at_end: float) -> Recognition:
        """FinishesInCallerTime: ``final_wait_ms`` counts from when the caller is at the
        end of the turn; audio sent ahead of real time gives Whisper that lead too."""
        self._done = True
        lead = max(0.0, caller_at_end - time.monotonic())
        if self._pass is None and not self._refused and self._whisper_now():
            self._start_pass()
        try:
            waited = time.monotonic()
            if await self._confirmed_first(self._final_wait_s + lead):
                self._counters.add("grammar_confirmed")
                return await self._live.finish()  # the confirmed phrase (its pass is done)
            lead -= time.monotonic() - waited  # the wait for Whisper's result began then
            if self._pass is None and not self._refused:
                self._start_pass()  # the grammar did not confirm: Whisper's turn
            heard = await self._whisper_result(lead)
        finally:
            if self._pass is not None and not self._pass.done():
                self._pass.cancel()  # withdraws a request still queued
            self._audio = bytearray()
        if heard is None:
            # Short of CPU, or Whisper failed: pocketsphinx's grammar pass, begun in the
            # end silence like Whisper's and far cheaper, is usually done by now.
            guess = await self._live.finish()
            if guess.confidence >= CONFIDENCE_CONFIRMED:
                return guess  # confirmed after Whisper gave up: not a guess
            confidence = round(guess.confidence * _FALLBACK_DISCOUNT, 3)
            return Recognition(guess.text, confidence, "grammar_fallback")
        self._counters.add("whisper")
        sure = _confidence(heard)
        text = " ".join(words(heard.text))
        rivals = self._rival_phrases(text)
        variant = _inflection_of(text, rivals) or self._grammar_swap(text, rivals)
        if not rivals or variant is not None:
            self._live.cancel()  # its grammar pass is not needed: dropped, decoder returned
            if variant is not None:
                self._counters.add("phrase_chosen")
                return Recognition(variant, sure, "whisper")
            return Recognition(text, sure if text else 0.0, "whisper")
        try:
            chosen = (await self._live.finish(choose_between=[text, *rivals])).text
        except Exception as exc:  # the choice is a refinement; Whisper's text stands
            _log.warning("pocketsphinx: choosing between %s failed: %s", rivals, exc)
            chosen = text
        if chosen != text:
            self._counters.add("phrase_chosen")
        return Recognition(chosen or text, sure, "whisper")

    def _grammar_swap(self, text: str, rivals: list[str]) -> str | None:
        """The grammar's phrase when Whisper heard it but for one word in its place.

        The grammar pass weighed every listed phrase against this audio; a sentence of
        phrase words that only swaps one of its words ("when are you located" for "where
        are you located") is a mishearing of it. A sentence that adds or drops a word is
        left to the audio to choose (it may say more than the phrase).
        """
        outcome = _settled(self._live.early_final())
        if outcome is None:
            return None
        heard = outcome.recognition.text
        if heard not in rivals or len(heard.split()) != len(text.split()):
            return None
        return heard

    def _rival_phrases(self, text: str) -> list[str]:
        """Listed phrases that Whisper's text may be a mishearing of, to let the audio choose.

        Whisper tiny confuses close words on synthetic and telephone speech ("when are
        you located"); pocketsphinx, given only the two sentences, picks the one the audio
        fits. Only when every word Whisper heard is a phrase word (a word no phrase has is
        evidence the caller said something else) and a phrase is within a third of its
        words.
        """
        said = text.split()
        if not said or text in self._phrases or not set(said) <= self._vocabulary:
            return []
        distances = [(word_edits(said, p.split()), p) for p in self._phrases]
        best = min((d for d, _ in distances), default=len(said))
        if best == 0 or best > max(1, len(said) // 3):
            return []
        return [p for d, p in distances if d == best][:2]

    def next_utterance(self) -> _HybridStream:
        """ContinuesCaller: pocketsphinx keeps what it learnt of this caller's line."""
        return _HybridStream(
            self._live.next_utterance(),
            self._pool,
            self._prompt,
            self._final_wait_s,
            self._live_phrases,
            self._vocabulary,
            self._counters,
        )

    def cancel(self) -> None:
        self._done = True
        if self._pass is not None:
            self._pass.cancel()
            self._pass = None
        self._audio = bytearray()
        self._live.cancel()

    def _start_pass(self) -> None:
        self._pass = self._pool().submit(bytes(self._audio), self._prompt)
        self._refused = self._pass is None

    async def _confirmed_first(self, within_s: float) -> bool:
        """True when the grammar pass begun in the silence confirms its phrase: the caller
        said a listed phrase and Whisper's result is not needed, whichever came first (so
        what is heard does not depend on which pass was quicker)."""
        early = self._live.early_final()
        if early is None:
            return False
        await asyncio.wait({early}, timeout=max(0.0, within_s))
        return _is_confirmed(early)

    def _whisper_now(self) -> bool:
        """Whether to ask Whisper before the grammar pass has said whether it confirms: when
        there is no grammar pass, or a worker is free (the two passes then run together)."""
        return self._live.early_final() is None or self._pool().idle(for_sec=_QUIET_POOL_SEC)

    async def _whisper_result(self, lead: float) -> WhisperResult | None:
        """Whisper's result, or None (counted) to fall back to pocketsphinx's final.

        The caller is waiting now, so a pass still queued goes before every pass begun in
        a silence. It is waited for up to ``final_wait_ms`` (plus the audio's lead) unless
        the pool's recent pace says it cannot be done by then: the grammar's final is then
        given at once rather than after a wait that would not help.
        """
        if self._pass is None:
            self._counters.add("fallback_saturated")
            return None
        pool = self._pool()
        wait = self._final_wait_s + lead
        pool.expedite(self._pass)
        eta = pool.eta(self._pass)
        if eta > wait:
            _log.debug("hybrid: Whisper's result due in %.2f s: the grammar's now", eta)
            if self._pass.cancel():
                self._pass = None
                self._counters.add("fallback_saturated")
            else:
                self._counters.add("fallback_late")
            return None
        whisper = asyncio.wrap_future(self._pass)
        began = time.monotonic()
        try:
            done, _ = await asyncio.wait({whisper}, timeout=max(0.0, wait))
            _log.debug(
                "hybrid: waited %.0f ms for Whisper (%s; due in %.2f s, a pass %.2f s)",
                (time.monotonic() - began) * 1000,
                "done" if done else "late",
                eta,
                pool.pass_sec(),
            )
            if not done:
                self._counters.add("fallback_late")
                return None
            if whisper.cancelled():
                return None  # withdrawn: the grammar confirmed its phrase after all
            return whisper.result()
        except Exception as exc:
            _log.warning("whisper: final pass failed (%s); using pocketsphinx's", exc)
            self._counters.add("fallback_failed")
        return None


class HybridRecognizer:
    """SpeechRecognizer port: pocketsphinx interims and endpointing, Whisper finals."""

    def __init__(
        self,
        live: PocketsphinxRecognizer,
        pool: Callable[[], WhisperPool],
        *,
        prompt: str,
        final_wait_ms: int,
        counters: Counters,
    ) -> None:
        self._live = live
        self._pool = pool
        self._counters = counters
        self._prompt = prompt
        self._final_wait_s = final_wait_ms / 1000

    def start_utterance(self) -> RecognitionStream:
        return self.start_utterance_on("")

    def start_utterance_on(self, line: str) -> RecognitionStream:
        """LearnsLines: pocketsphinx starts a new caller from what the line taught it."""
        return _HybridStream(
            self._live.open_stream(line),
            self._pool,
            self._prompt,
            self._final_wait_s,
            self._live.phrases,
            self._live.vocabulary,
            self._counters,
        )
