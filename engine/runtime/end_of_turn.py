"""When a pause ends the caller's turn: the silence so far, and a turn detector's verdict.

Runs on the event loop, in the speech input, frame by frame of a pause. With a detector,
early in the silence (``turn.check_after_ms``) it is asked once whether the turn sounds
complete: "complete" ends the turn at once; "incomplete" keeps listening up to
``turn.max_silence_ms``; a detector that is absent, busy, failing or too slow leaves the
fixed ``vad.end_silence_ms``. Everything counts audio (frames), not wall time, so the
decision is the same whatever the client's send rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum

from engine.runtime.assistant import TurnSettings
from engine.runtime.ports.turn import TurnDetector, TurnDetectorBusy, TurnDetectorError

log = logging.getLogger(__name__)

# A verdict later than this is no use to a caller waiting in the silence: the fixed
# end silence decides instead.
CHECK_TIMEOUT_SEC = 0.5


class TurnEnd(StrEnum):
    """Why a turn ended on a pause."""

    COMPLETE = "complete"  # the detector judged the turn complete
    SILENCE = "silence"  # the fixed end silence (no detector, or it could not answer)
    MAX_SILENCE = "max_silence"  # judged incomplete, but the caller stayed silent


class EndOfTurn:
    """One caller's pauses: decides after each silent frame whether the turn is over."""

    def __init__(
        self, settings: TurnSettings, end_silence_ms: int, detector: TurnDetector | None
    ) -> None:
        self._settings = settings
        self._end_silence_ms = end_silence_ms
        self._detector = detector
        self._asked = False
        self._limit_ms = end_silence_ms
        self._incomplete = False
        self.checks = 0  # verdicts asked for (for tests and benchmarks)

    @property
    def check_after_ms(self) -> int | None:
        """Silence after which the detector is asked (None without a detector)."""
        return self._settings.check_after_ms if self._detector is not None else None

    def speech(self) -> None:
        """The caller spoke: a later silence is a new pause."""
        self._asked = False
        self._incomplete = False
        self._limit_ms = self._end_silence_ms

    async def silence(self, silent_ms: int, audio: Callable[[], bytes]) -> TurnEnd | None:
        """``silent_ms`` of silence so far: why the turn ends now, or None to listen on.

        ``audio`` gives the utterance so far, for the detector (called at most once a pause).
        """
        check_after = self.check_after_ms
        if check_after is not None and not self._asked and silent_ms >= check_after:
            self._asked = True
            probability = await self._ask(audio())
            if probability is not None:
                if probability >= self._settings.complete_threshold:
                    return TurnEnd.COMPLETE
                self._incomplete = True
                self._limit_ms = max(self._settings.max_silence_ms, silent_ms)
        if silent_ms >= self._limit_ms:
            return TurnEnd.MAX_SILENCE if self._incomplete else TurnEnd.SILENCE
        return None

    async def _ask(self, pcm16k: bytes) -> float | None:
        assert self._detector is not None
        self.checks += 1
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SEC):
                verdict = await self._detector.predict(pcm16k)
        except (TurnDetectorBusy, TimeoutError):
            return None
        except TurnDetectorError as exc:
            log.warning("turn detector failed (%s); the fixed end silence decides", exc)
            return None
        return verdict.complete_probability
