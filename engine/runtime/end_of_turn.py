"""When a pause ends the caller's turn: the silence so far, a turn detector's verdict, the words.

Runs on the event loop, in the speech input, frame by frame of a pause. With a detector,
early in the silence (``turn.check_after_ms``) a check starts as a task, once a pause: the
speech input keeps feeding frames while it runs. Its verdict is applied at the first frame
after it arrives: "complete" ends the turn there; "incomplete" keeps listening up to
``turn.max_silence_ms``; a detector that is absent, busy, failing or too slow leaves the
fixed ``vad.end_silence_ms``. The caller speaking again before the verdict arrives makes it
moot (dropped). While a check runs the silence alone does not end the turn (the check is
bounded), so a verdict is never overtaken by audio sent faster than real time.

A listed phrase that the recognizer heard for sure (its grammar and its trigram agree word for
word) ends the turn at ``turn.check_after_ms`` without a verdict: every listed phrase is a whole
question, and the check it saves is the largest CPU cost of a turn on a loaded engine.

A "complete" verdict is overruled when the words heard so far end in a word that cannot end
an English sentence (``turn.unfinished_words``: "for", "the", "and", ...): the acoustic
model hears a falling pitch, the words say the sentence goes on. The words are the early
final's, waited for while its pass runs, up to ``turn.max_silence_ms`` of silence (the final
transcript waits for that same pass anyway; a recognizer short of CPU says it has none), else
the latest interim; with the early final, its other likely readings count too (audio
cut at a pause often gets a word added or changed: "a table for it", "do you have many").
Everything counts audio (frames), not wall time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum

from engine.runtime.assistant import TurnSettings
from engine.runtime.ports.turn import TurnDetector, TurnDetectorBusy, TurnDetectorError

log = logging.getLogger(__name__)

# The likely readings of what the caller said so far (the best first); None while the
# recognizer's early final is still coming.
Words = Callable[[], tuple[str, ...] | None]
# Whether the recognizer heard one of the assistant's listed phrases for sure (True), did
# not (False), or is still deciding (None).
Sure = Callable[[], bool | None]


def _not_sure() -> bool | None:
    return False


# A verdict later than this is no use to a caller waiting in the silence: the fixed
# end silence decides instead.
CHECK_TIMEOUT_SEC = 0.5
# Audio sent ahead of the caller waits this long at most for the early final's words
# (one Whisper pass of a long question on a loaded host), polled this often.
WORDS_WAIT_SEC = 1.5
WORDS_POLL_SEC = 0.02


class TurnEnd(StrEnum):
    """Why a turn ended on a pause."""

    COMPLETE = "complete"  # the detector judged the turn complete
    PHRASE = "phrase"  # a listed phrase, heard for sure: a whole question
    SILENCE = "silence"  # the fixed end silence (no detector, or it could not answer)
    MAX_SILENCE = "max_silence"  # judged incomplete, but the caller stayed silent


def ends_unfinished(text: str, unfinished: frozenset[str]) -> bool:
    """True when ``text``'s last word is one no English sentence ends with."""
    said = text.lower().replace(",", " ").replace(".", " ").replace("?", " ").split()
    return bool(said) and said[-1] in unfinished


def may_be_unfinished(readings: tuple[str, ...], unfinished: frozenset[str]) -> bool:
    """True when a likely reading of the words so far ends in a word no sentence ends with."""
    return any(ends_unfinished(reading, unfinished) for reading in readings)


class EndOfTurn:
    """One caller's pauses: decides after each silent frame whether the turn is over."""

    def __init__(
        self, settings: TurnSettings, end_silence_ms: int, detector: TurnDetector | None
    ) -> None:
        self._settings = settings
        self._end_silence_ms = end_silence_ms
        self._detector = detector
        self._unfinished = frozenset(settings.unfinished_words)
        self._asked = False
        self._check: asyncio.Task[float | None] | None = None
        self._complete = False  # judged complete; the words are still to be read
        self._limit_ms = end_silence_ms
        self._incomplete = False
        self.checks = 0  # verdicts asked for (for tests and benchmarks)
        self.dropped = 0  # checks made moot by the caller speaking again
        self.overruled = 0  # "complete" verdicts overruled by an unfinished last word

    @property
    def check_after_ms(self) -> int | None:
        """Silence after which the detector is asked (None without a detector)."""
        return self._settings.check_after_ms if self._detector is not None else None

    @property
    def deciding(self) -> bool:
        """A check runs, or a "complete" waits for the words: the silence alone waits."""
        running = self._check is not None and not self._check.done()
        return running or self._complete

    def speech(self) -> None:
        """The caller spoke: a later silence is a new pause; a check running is moot."""
        if self._check is not None or self._complete:
            self.dropped += 1
        self.close()
        self._asked = False
        self._incomplete = False
        self._limit_ms = self._end_silence_ms

    def close(self) -> None:
        """Drop a check still running (the turn ended another way, or the session)."""
        check, self._check = self._check, None
        self._complete = False
        if check is not None and not check.done():
            check.cancel()

    def silence(
        self, silent_ms: int, audio: Callable[[], bytes], words: Words, sure: Sure = _not_sure
    ) -> TurnEnd | None:
        """``silent_ms`` of silence so far: why the turn ends now, or None to listen on.

        ``audio`` gives the utterance so far, for the detector (called at most once a
        pause); ``words`` the likely readings of what the recognizer has heard so far,
        None while its early final is still coming (asked after a "complete"); ``sure``
        whether they are one of the assistant's listed phrases, heard for sure.
        """
        check_after = self.check_after_ms
        if check_after is not None and silent_ms >= check_after and sure():
            # Every listed phrase is a whole question, and this one was heard word for
            # word: no verdict is needed (one still waiting for the detector is withdrawn).
            self.close()
            log.debug("turn ended on a listed phrase at %d ms of silence", silent_ms)
            return TurnEnd.PHRASE
        if check_after is not None and not self._asked and silent_ms >= check_after:
            self._asked = True
            self.checks += 1
            self._check = asyncio.create_task(self._ask(audio()), name="turn-check")
        if self._check is not None:
            if not self._check.done():
                if silent_ms < self._end_silence_ms:
                    return None  # the verdict decides; the check is bounded in time
                # A detector slower than the fixed silence is saturated: it decides nothing.
                self.close()
                return TurnEnd.SILENCE
            probability, self._check = self._check.result(), None
            log.debug("turn check at %d ms of silence: P(complete) %s", silent_ms, probability)
            if probability is not None and probability >= self._settings.complete_threshold:
                self._complete = True
            elif probability is not None:
                self._listen_on(silent_ms)
        if self._complete:
            heard = words()
            if heard is None and silent_ms < self._settings.max_silence_ms:
                # The words are on their way (the recognizer's pass runs): the final
                # transcript waits for that same pass, so waiting here costs no answer time.
                return None
            self._complete = False
            log.debug("turn judged complete at %d ms; words %r", silent_ms, heard)
            if heard is None or not may_be_unfinished(heard, self._unfinished):
                return TurnEnd.COMPLETE
            self.overruled += 1
            self._listen_on(silent_ms)
        if silent_ms >= self._limit_ms:
            return TurnEnd.MAX_SILENCE if self._incomplete else TurnEnd.SILENCE
        return None

    def expects_more(self, readings: tuple[str, ...]) -> bool:
        """Whether this pause is likely not the end: the detector judged it incomplete, or
        a likely reading of the words ends in a word no sentence ends with."""
        return self._incomplete or may_be_unfinished(readings, self._unfinished)

    def silence_needed_ms(self, words: Words, sure: Sure = _not_sure) -> int:
        """The silence that ends the turn as things stand, a verdict not yet applied (no
        frame came since it arrived) included: what the clock waits for without audio."""
        if self.check_after_ms is not None and sure():
            return self.check_after_ms  # a listed phrase, heard for sure
        check = self._check
        if check is not None and check.done():
            probability = check.result()
            if probability is None:
                return self._limit_ms
            complete = probability >= self._settings.complete_threshold
        elif self._complete:
            complete = True
        else:
            return self._limit_ms
        heard = words() if complete else None
        if complete and (heard is None or not may_be_unfinished(heard, self._unfinished)):
            return self._limit_ms
        return max(self._settings.max_silence_ms, self._limit_ms)

    def _listen_on(self, silent_ms: int) -> None:
        self._incomplete = True
        self._limit_ms = max(self._settings.max_silence_ms, silent_ms)

    async def _ask(self, pcm16k: bytes) -> float | None:
        assert self._detector is not None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SEC):
                verdict = await self._detector.predict(pcm16k)
        except (TurnDetectorBusy, TimeoutError):
            return None
        except TurnDetectorError as exc:
            log.warning("turn detector failed (%s); the fixed end silence decides", exc)
            return None
        return verdict.complete_probability

    async def verdict(self) -> None:
        """Wait until no check is running (bounded by the check's own timeout)."""
        check = self._check
        if check is not None:
            await asyncio.wait({check})

    async def settle(self, words: Words) -> None:
        """Wait for what the decision waits for: the verdict, then the words a "complete"
        needs (polled: bounded by ``WORDS_WAIT_SEC``). For audio sent ahead of the caller."""
        await self.verdict()
        # The recognizer's early final has no event to await: a bounded poll.
        for _ in range(round(WORDS_WAIT_SEC / WORDS_POLL_SEC)):
            if not self._complete or words() is not None:
                return
            await asyncio.sleep(WORDS_POLL_SEC)
