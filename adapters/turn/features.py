"""Smart Turn v3's input features (numpy only), computed on a detector's worker thread.

Smart Turn v3 reads the last 8 s of 16 kHz audio as Whisper log-mel features, prepared the
way Pipecat's own analyzer does (``LocalSmartTurnAnalyzerV3``, which calls
``transformers.WhisperFeatureExtractor(chunk_length=8)`` or its numpy copy of it):

1. PCM16 / 32768 as float32; keep the last 8 s, or zero-pad at the front up to 8 s;
2. zero-mean, unit-variance normalisation of that whole 8 s waveform (``do_normalize``,
   the padding included), in float32, with variance epsilon 1e-7;
3. a centred STFT (reflect-padded by n_fft/2, periodic Hann, n_fft 400, hop 160: 801
   frames), power spectrum, 80 Slaney mel filters (0-8 kHz, Slaney area norm);
4. log10 of max(mel, 1e-10); the last frame dropped (800 frames); clamped to the
   maximum - 8; then (x + 4) / 4.

The result is float32 [80, 800]; tests/integration/test_turn_model.py pins it to the
reference implementation.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

__all__ = ["FRAMES", "MEL_BINS", "WINDOW_SAMPLES", "smart_turn_features"]

SAMPLE_RATE_HZ = 16_000
WINDOW_SAMPLES = 8 * SAMPLE_RATE_HZ  # the model hears the last 8 s
MEL_BINS = 80
FRAMES = WINDOW_SAMPLES // 160  # 800: the STFT's 801 centred frames less the last
_N_FFT, _HOP = 400, 160
_VARIANCE_EPS = 1e-7


@functools.cache
def _mel_filters() -> npt.NDArray[np.float64]:
    """The [80, 201] Slaney mel filterbank of Whisper (librosa's ``filters.mel``)."""

    def hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * (27.0 / math.log(6.4))
        return np.where(hz >= 1000.0, log, 3.0 * hz / 200.0)

    def mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        log = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0))
        return np.where(mel >= 15.0, log, 200.0 * mel / 3.0)

    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ // 2, _N_FFT // 2 + 1)
    edges = hz_to_mel(np.array([0.0, SAMPLE_RATE_HZ / 2]))
    mel_hz = mel_to_hz(np.linspace(edges[0], edges[1], MEL_BINS + 2))
    ramps = mel_hz[:, None] - fft_hz[None, :]
    widths = np.diff(mel_hz)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights


@functools.cache
def _hann() -> npt.NDArray[np.float64]:
    """The periodic Hann window of n_fft samples (torch.hann_window's default)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)


def _last_window(pcm16k: bytes) -> npt.NDArray[np.float32]:
    """The last 8 s of PCM16 as float32 in [-1, 1), zero-padded at the front to 8 s."""
    # A stray odd byte is not a sample; a view, not a copy, of what may be a long utterance.
    samples = np.frombuffer(pcm16k, dtype="<i2", count=len(pcm16k) // 2)[-WINDOW_SAMPLES:]
    audio = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    audio[WINDOW_SAMPLES - len(samples) :] = samples.astype(np.float32) / 32768.0
    return audio


def smart_turn_features(pcm16k: bytes) -> npt.NDArray[np.float32]:
    """Smart Turn v3's log-mel input [80, 800] for the latest 8 s of 16 kHz PCM16."""
    audio = _last_window(pcm16k)
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + _VARIANCE_EPS)
    padded = np.pad(audio.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2
    mel = _mel_filters() @ power[:-1].T  # the last frame is dropped, as the reference does
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    features: npt.NDArray[np.float32] = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features
