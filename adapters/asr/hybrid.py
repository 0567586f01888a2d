"""The hybrid recognizer: pocketsphinx streams, Whisper tiny.en writes the final transcript.

pocketsphinx (with the assistant's phrase grammar) gives interim transcripts while the
caller speaks and its VAD-driven endpointing is unchanged. The final transcript comes
from Whisper, prompted with the assistant's phrases: it hears wordings no phrase has,
where the one-phrase grammar can only pick the closest listed phrase.

No added latency: Whisper starts when the end silence begins (``silence_began``, sent by
the speech input ~160 ms into the silence) and runs during the rest of the wait; if the
caller speaks again the pass is withdrawn (or its result dropped) and starts over at the
next silence. ``finish()`` then usually finds the result ready.

Fallbacks, each counted in :func:`final_stats`: the shared Whisper pool is saturated
(``refused``), Whisper failed (``failed``), or its result was not ready within
``final_wait_ms`` of the end of the turn (``late``). Then the turn gets pocketsphinx's
final instead: its second grammar pass after a failure, its streaming hypothesis when
CPU is short (saturated, late), so an overload does not pile up more work. Whisper's
"no speech" verdict (no text) is trusted: VAD-triggering noise then produces no turn
rather than a phrase it resembles.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from adapters.asr.domain_model import words
from adapters.asr.pocketsphinx import PocketsphinxRecognizer, PocketsphinxStream
from adapters.asr.whisper import WhisperPool, WhisperResult, WhisperStats, whisper_stats
from engine.runtime.ports.providers import Recognition, RecognitionStream

__all__ = ["FinalStats", "HybridRecognizer", "final_stats", "phrase_prompt"]

_log = logging.getLogger(__name__)

_MAX_KEPT_BYTES = 30 * 32_000  # Whisper hears at most 30 s
_CONFIDENCE_WHISPER = 0.9


@dataclass(frozen=True, slots=True)
class FinalStats:
    """Where the process's hybrid final transcripts came from, since start (counters)."""

    whisper: int  # finals from Whisper (text or "no speech")
    fallback_saturated: int  # the pool refused the request: pocketsphinx's final used
    fallback_failed: int  # Whisper raised
    fallback_late: int  # not ready within final_wait_ms of the end of the turn
    restarted: int  # early passes dropped because the caller spoke again
    pool: WhisperStats | None  # the shared Whisper pool (None before first use)


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(
            ("whisper", "fallback_saturated", "fallback_failed", "fallback_late", "restarted"),
            0,
        )

    def add(self, name: str) -> None:
        with self._lock:
            self.values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.values)


_COUNTERS = _Counters()


def final_stats() -> FinalStats:
    """The counters an operator watches: fallbacks mean Whisper is short of CPU."""
    return FinalStats(**_COUNTERS.snapshot(), pool=whisper_stats())


_QUESTION_WORDS = frozenset(
    {"what", "when", "where", "which", "who", "how", "do", "does", "can", "could", "are", "is"}
)


def phrase_prompt(phrases: tuple[str, ...] | list[str]) -> str:
    """Whisper's context text from the assistant's phrases: the sentences it may expect.

    Written as a transcript would be (capitalized, questions with "?"): on our
    synthesized out-of-phrase questions that gave 10.7% WER against 13.4% with plain
    full stops, 11.6% comma-joined and 16.1% without a prompt (docs/BENCHMARKS.md).
    """
    sentences = []
    for phrase in phrases:
        said = words(phrase)
        if said:
            end = "?" if said[0] in _QUESTION_WORDS else "."
            text = " ".join(said)
            sentences.append(f"{text[0].upper()}{text[1:]}{end}")
    return " ".join(sentences)


class _HybridStream:
    """One utterance: pocketsphinx live, plus an early Whisper pass over the kept audio."""

    def __init__(
        self,
        live: PocketsphinxStream,
        pool: Callable[[], WhisperPool],
        prompt: str,
        final_wait_s: float,
    ) -> None:
        self._live = live
        self._pool = pool
        self._prompt = prompt
        self._final_wait_s = final_wait_s
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

    def silence_began(self) -> None:
        if self._pass is None and not self._done:
            self._start_pass()

    def speech_resumed(self) -> None:
        if self._pass is not None:
            self._pass.cancel()  # withdrawn if still queued; a running pass is ignored
            self._pass = None
            _COUNTERS.add("restarted")
        self._refused = False

    async def finish(self) -> Recognition:
        self._done = True
        if self._pass is None and not self._refused:
            self._start_pass()
        heard, overloaded = await self._whisper_result()
        self._audio = bytearray()
        if heard is not None:
            await self._live.finish(second_pass=False)  # ends it and returns the decoder
            _COUNTERS.add("whisper")
            text = " ".join(words(heard.text))
            return Recognition(text, _CONFIDENCE_WHISPER if text else 0.0)
        # Short of CPU (saturated or late): the streaming hypothesis, at once; a second
        # grammar pass would add work exactly when there is none to spare.
        return await self._live.finish(second_pass=not overloaded)

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

    async def _whisper_result(self) -> tuple[WhisperResult | None, bool]:
        """Whisper's result, or None (counted) to fall back; and whether it was overload."""
        if self._pass is None:
            _COUNTERS.add("fallback_saturated")
            return None, True
        pending = asyncio.wrap_future(self._pass)
        try:
            # Cancelling the wrapper on timeout withdraws a request still queued.
            return await asyncio.wait_for(pending, self._final_wait_s), False
        except TimeoutError:
            _COUNTERS.add("fallback_late")
            return None, True
        except Exception as exc:
            _log.warning("whisper: final pass failed (%s); using pocketsphinx's", exc)
            _COUNTERS.add("fallback_failed")
        return None, False


class HybridRecognizer:
    """SpeechRecognizer port: pocketsphinx interims and endpointing, Whisper finals."""

    def __init__(
        self,
        live: PocketsphinxRecognizer,
        pool: Callable[[], WhisperPool],
        *,
        prompt: str,
        final_wait_ms: int,
    ) -> None:
        self._live = live
        self._pool = pool
        self._prompt = prompt
        self._final_wait_s = final_wait_ms / 1000

    def start_utterance(self) -> RecognitionStream:
        return _HybridStream(self._live.open_stream(), self._pool, self._prompt, self._final_wait_s)
