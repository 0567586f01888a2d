"""Whether a short stretch of 16 kHz PCM16 has a pitch (engine event loop; numpy).

A voice is periodic: its waveform repeats every pitch period (2.5-12.5 ms for 80-400 Hz),
also on a telephone line that has lost the fundamental, since its harmonics keep the
period. Coughs, knocks, hiss and clatter trip the WebRTC VAD like speech but are noise:
their normalized autocorrelation stays low at every pitch lag. One call, on a 40 ms
window, costs some tens of microseconds; the speech input asks only while a reply plays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PITCH_WINDOW_BYTES", "has_pitch", "periodicity"]

_RATE_HZ = 16_000
_MIN_LAG = _RATE_HZ // 400  # 400 Hz: the highest pitch looked for
_MAX_LAG = _RATE_HZ // 80  # 80 Hz: the lowest
PITCH_WINDOW_BYTES = _RATE_HZ * 40 // 1000 * 2  # 40 ms: two periods of an 80 Hz voice and more
# A voiced frame of synthetic and telephone speech peaks at 0.6-1.0; the benchmark's
# synthetic coughs, thumps, hiss and clatter stayed below 0.6 in every frame
# (docs/benchmarks/interruptions.md).
_THRESHOLD = 0.6
_QUIET = 1e4  # sum of squares below which a window is silence, not a sound (rms < ~4)


def periodicity(pcm16k: bytes) -> float:
    """The highest normalized autocorrelation of the window at a pitch lag (0.0 .. 1.0)."""
    x = np.frombuffer(pcm16k[: len(pcm16k) // 2 * 2], dtype="<i2").astype(np.float64)
    n = x.size
    if n <= 2 * _MAX_LAG:
        return 0.0
    x -= x.mean()
    squares = np.cumsum(x * x)
    if squares[-1] < _QUIET:
        return 0.0
    spectrum = np.fft.rfft(x, 2 * n)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[_MIN_LAG : _MAX_LAG + 1]
    lags = np.arange(_MIN_LAG, _MAX_LAG + 1)
    head = squares[n - 1 - lags]  # energy of x[: n - lag]
    tail = squares[-1] - squares[lags - 1]  # energy of x[lag:]
    scale = np.sqrt(np.maximum(head * tail, 1e-9))
    return float(np.max(correlation / scale))


def has_pitch(pcm16k: bytes) -> bool:
    """True when the window (at least 25 ms; 40 ms reads 80 Hz voices best) is a voice."""
    return periodicity(pcm16k) >= _THRESHOLD
