"""Voice activity detection with the WebRTC VAD (``webrtcvad-wheels``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import webrtcvad

from adapters.vad.frames import FRAME_MS_CHOICES, check_frame, frame_bytes, int_option
from adapters.vad.pitch import has_pitch
from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ, reject_unknown_options

__all__ = ["WebRtcVad"]

_OPTION_KEYS = frozenset({"aggressiveness", "frame_ms"})


class WebRtcVad:
    """VoiceActivityDetector port on the WebRTC VAD, for 16 kHz PCM16 frames (and HearsPitch).

    ``aggressiveness`` 0 (lenient) .. 3 (strict about calling noise speech). The detector
    keeps a little state between frames, so each session should own its own instance.
    A classification costs a few microseconds; it runs inline on the event loop.
    """

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 20) -> None:
        self._aggressiveness = int_option("aggressiveness", aggressiveness, (0, 1, 2, 3))
        self._frame_ms = int_option("frame_ms", frame_ms, FRAME_MS_CHOICES)
        self._frame_bytes = frame_bytes(self._frame_ms)
        self._vad = webrtcvad.Vad(self._aggressiveness)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WebRtcVad:
        """Build from an assistant's ``vad:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("vad", "webrtc", options, _OPTION_KEYS)
        return cls(
            aggressiveness=options.get("aggressiveness", 2),
            frame_ms=options.get("frame_ms", 20),
        )

    @property
    def aggressiveness(self) -> int:
        return self._aggressiveness

    @property
    def frame_ms(self) -> int:
        return self._frame_ms

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    def is_speech(self, frame: bytes) -> bool:
        """True when ``frame`` (exactly ``frame_bytes`` of 16 kHz PCM16) holds speech."""
        check_frame(
            frame, self._frame_ms
        )  # the C code would say only "Error while processing frame"
        return bool(self._vad.is_speech(frame, INPUT_SAMPLE_RATE_HZ))

    def has_pitch(self, window: bytes) -> bool:
        """HearsPitch: True when ``window`` is periodic as a voice is (adapters/vad/pitch.py)."""
        return has_pitch(window)
