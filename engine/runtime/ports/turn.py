"""The turn-detector port: has the caller finished their turn, judged from the audio?

When the caller goes quiet, the speech input asks a turn-completion model (for example
Smart Turn, an ONNX model over the last seconds of audio) early in the silence: a turn that
sounds complete ends at once, one that sounds unfinished keeps listening up to a longer
maximum. A detector that is unavailable or saturated makes the speech input fall back to
the fixed end silence, so a check must never hold up a turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TurnDetectorBusy(Exception):
    """The detector is saturated (every worker busy, a queue full): fall back to silence."""


class TurnDetectorError(Exception):
    """The detector failed for this check (model missing, inference error)."""


@dataclass(frozen=True, slots=True)
class TurnVerdict:
    """A detector's judgement of one pause."""

    complete_probability: float  # 0.0 .. 1.0: the turn sounds finished
    inference_ms: float  # CPU time the check took, features included


class TurnDetector(Protocol):
    """A turn-completion model over the caller's recent audio (16 kHz PCM16 mono)."""

    async def predict(self, pcm16k: bytes) -> TurnVerdict:
        """Judge whether the caller's turn is complete, from the audio up to the pause.

        ``pcm16k`` is the utterance so far (the detector uses at most its own window of
        the latest audio). Runs off the event loop; raises TurnDetectorBusy when saturated
        and TurnDetectorError on failure.
        """
        ...
