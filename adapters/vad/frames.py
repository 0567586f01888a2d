"""What every VAD adapter shares: the frame lengths it accepts and the frame-size check."""

from __future__ import annotations

from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ, ProviderConfigError

FRAME_MS_CHOICES = (10, 20, 30)  # the only frame lengths the WebRTC VAD accepts


def int_option(name: str, value: object, allowed: tuple[int, ...]) -> int:
    """``vad.<name>`` validated against ``allowed``; ProviderConfigError otherwise."""
    # bool is an int in Python, but "aggressiveness: true" in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        choices = ", ".join(str(choice) for choice in allowed)
        raise ProviderConfigError(f"vad.{name}: must be one of {choices}, got {value!r}")
    return value


def frame_bytes(frame_ms: int) -> int:
    """Bytes in one frame of 16 kHz PCM16."""
    return INPUT_SAMPLE_RATE_HZ * frame_ms // 1000 * 2


def check_frame(frame: bytes, frame_ms: int) -> None:
    """Raise ValueError unless ``frame`` is exactly one ``frame_ms`` frame."""
    expected = frame_bytes(frame_ms)
    if len(frame) != expected:
        raise ValueError(f"VAD frame must be {expected} bytes ({frame_ms} ms), got {len(frame)}")
