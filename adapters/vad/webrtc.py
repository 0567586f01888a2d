"""Voice activity detection with the WebRTC VAD (``webrtcvad-wheels``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import webrtcvad

from engine.runtime.ports.providers import (
    INPUT_SAMPLE_RATE_HZ,
    ProviderConfigError,
    reject_unknown_options,
)

__all__ = ["WebRtcVad"]

_FRAME_MS_CHOICES = (10, 20, 30)  # the only frame lengths the WebRTC VAD accepts
_OPTION_KEYS = frozenset({"aggressiveness", "frame_ms"})


def _int_option(name: str, value: object, allowed: tuple[int, ...]) -> int:
    # bool is an int in Python, but "aggressiveness: true" in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        choices = ", ".join(str(choice) for choice in allowed)
        raise ProviderConfigError(f"vad.{name}: must be one of {choices}, got {value!r}")
    return value


class WebRtcVad:
    """VoiceActivityDetector port on the WebRTC VAD, for 16 kHz PCM16 frames.

    ``aggressiveness`` 0 (lenient) .. 3 (strict about calling noise speech). The detector
    keeps a little state between frames, so each session should own its own instance.
    A classification costs a few microseconds; it runs inline on the event loop.
    """

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 20) -> None:
        self._aggressiveness = _int_option("aggressiveness", aggressiveness, (0, 1, 2, 3))
        self._frame_ms = _int_option("frame_ms", frame_ms, _FRAME_MS_CHOICES)
        self._frame_bytes = INPUT_SAMPLE_RATE_HZ * self._frame_ms // 1000 * 2
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
        if len(frame) != self._frame_bytes:
            # The C code would reject it with a bare "Error while processing frame".
            raise ValueError(
                f"VAD frame must be {self._frame_bytes} bytes ({self._frame_ms} ms), "
                f"got {len(frame)}"
            )
        return bool(self._vad.is_speech(frame, INPUT_SAMPLE_RATE_HZ))
