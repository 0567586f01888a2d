"""A voice has a pitch; coughs, knocks, hiss and clicks do not (adapters/vad/pitch.py)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from adapters.testkit.vad import SignalVad
from adapters.vad.pitch import PITCH_WINDOW_BYTES, has_pitch
from adapters.vad.webrtc import WebRtcVad
from engine.runtime.ports.providers import HearsPitch

RATE = 16_000
SAMPLES = PITCH_WINDOW_BYTES // 2


def _pcm(signal: npt.NDArray[np.float64], peak: float = 8000) -> bytes:
    scaled = signal / max(1e-9, float(np.max(np.abs(signal)))) * peak
    return scaled.astype("<i2").tobytes()


def _vowel(pitch_hz: float, harmonics: range) -> npt.NDArray[np.float64]:
    t = np.arange(SAMPLES) / RATE
    return sum((np.sin(2 * np.pi * pitch_hz * k * t) / k for k in harmonics), np.zeros(SAMPLES))


def _band_noise(low_hz: float, high_hz: float, seed: int) -> npt.NDArray[np.float64]:
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0, 1, SAMPLES))
    freqs = np.fft.rfftfreq(SAMPLES, 1 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, SAMPLES)


@pytest.mark.parametrize("pitch_hz", [90, 140, 220, 350])
def test_a_vowel_has_a_pitch(pitch_hz: float) -> None:
    assert has_pitch(_pcm(_vowel(pitch_hz, range(1, 12))))


def test_a_telephone_voice_without_its_fundamental_still_has_a_pitch() -> None:
    harmonics = range(3, 30)  # 100 Hz voice: 300 Hz and up, as a phone line passes it
    assert has_pitch(_pcm(_vowel(100, harmonics)))


@pytest.mark.parametrize(
    ("low_hz", "high_hz"),
    [(250, 2500), (30, 300), (1500, 7000), (500, 7500)],
    ids=["cough", "thump", "hiss", "click"],
)
def test_noise_has_no_pitch(low_hz: float, high_hz: float) -> None:
    assert not any(has_pitch(_pcm(_band_noise(low_hz, high_hz, seed))) for seed in range(20))


def test_silence_and_a_window_too_short_have_no_pitch() -> None:
    assert not has_pitch(bytes(PITCH_WINDOW_BYTES))
    assert not has_pitch(_pcm(_vowel(140, range(1, 12)))[:400])


def test_both_vads_hear_pitch() -> None:
    webrtc, signal = WebRtcVad(), SignalVad()
    assert isinstance(webrtc, HearsPitch) and isinstance(signal, HearsPitch)
    assert webrtc.has_pitch(_pcm(_vowel(140, range(1, 12))))
    assert signal.has_pitch(b"\x05\x00" * 640) and not signal.has_pitch(b"\xfb\xff" * 640)
