"""A VAD that reads speech from the signal itself: a frame is speech when any sample is non-zero.

A load client sends digital silence (all-zero samples) for pauses and any non-zero
samples for speech, so endpointing is exact and costs one scan of the frame. Speech of
positive samples has a pitch (a voice); of negative samples, none (a cough, a knock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.vad.frames import FRAME_MS_CHOICES, check_frame, frame_bytes, int_option
from engine.runtime.ports.providers import reject_unknown_options

__all__ = ["SignalVad"]

# `aggressiveness` is accepted (the assistant schema always passes it) and has no effect.
_OPTION_KEYS = frozenset({"frame_ms", "aggressiveness"})


class SignalVad:
    """VoiceActivityDetector port: non-zero samples are speech, all-zero frames silence."""

    def __init__(self, frame_ms: int = 20) -> None:
        self._frame_ms = int_option("frame_ms", frame_ms, FRAME_MS_CHOICES)
        self._frame_bytes = frame_bytes(self._frame_ms)
        self._zeros = bytes(self._frame_bytes)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SignalVad:
        """Build from an assistant's ``vad:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("vad", "testkit", options, _OPTION_KEYS)
        return cls(frame_ms=options.get("frame_ms", 20))

    @property
    def frame_ms(self) -> int:
        return self._frame_ms

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    def is_speech(self, frame: bytes) -> bool:
        """True when ``frame`` holds any non-zero sample."""
        check_frame(frame, self._frame_ms)
        return frame != self._zeros

    def has_pitch(self, window: bytes) -> bool:
        """HearsPitch: True unless the window's last sample is negative (a noise)."""
        return len(window) < 2 or int.from_bytes(window[-2:], "little", signed=True) >= 0
