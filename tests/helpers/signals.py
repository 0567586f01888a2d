"""Deterministic voice-like test signals (closed form, numpy only: the same on every machine)."""

from __future__ import annotations

import numpy as np


def voice_like(seconds: float, seed: int = 0) -> bytes:
    """16 kHz PCM16: a gliding harmonic buzz in syllable-like bursts, over a little hiss."""
    n = int(seconds * 16_000)
    t = np.arange(n) / 16_000
    pitch_hz = 120.0 + 40.0 * np.sin(2 * np.pi * 0.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch_hz) / 16_000
    buzz = sum(np.sin(k * phase) / k for k in range(1, 11))
    syllables = (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + seed)) ** 2
    hiss = (np.sin(np.arange(n) * 12.9898 + seed) * 43758.5453) % 1.0 - 0.5
    signal = 6000.0 * syllables * buzz + 400.0 * hiss
    return np.clip(np.round(signal), -32768, 32767).astype("<i2").tobytes()
