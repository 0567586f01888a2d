"""The sounds benchmarks/interruptions.py plays over a reply: noises, acknowledgements, words.

Noises are synthesized (seeded, so every run plays the same ones): white noise shaped in
frequency by an FFT mask and in time by an envelope. Speech comes from eSpeak NG in two
voices. Every sound is light background noise, the sound, then nothing: the benchmark
sends silence after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.codec import StreamResampler, mulaw_encode
from engine.audio.formats import AudioEncoding, AudioFormat
from tests.helpers.speech import spoken

RATE = 16_000
LEAD_MS = 200  # background before the sound
TAIL_MS = 200  # background after it
BACKGROUND = 40  # light noise level (PCM16)
ONSET_LEVEL = 500  # |sample| above the background: the sound has begun

FORMATS = {
    "l16k": pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16_000),
    "mulaw8k": pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=8_000),
}
_FORMATS = {
    "l16k": AudioFormat(AudioEncoding.LINEAR16, 16_000),
    "mulaw8k": AudioFormat(AudioEncoding.MULAW, 8_000),
}
VOICES = ("en-us+f3", "en-us+m3")
BACKCHANNELS = ("mm hmm", "okay", "right", "yeah", "uh huh")
REAL = ("wait", "stop", "no, no", "hold on, what about parking", "wait, stop, i have a question")


@dataclass(frozen=True, slots=True)
class Sound:
    """One sound in one wire format."""

    kind: str  # noise | backchannel | real
    name: str
    fmt: str  # a key of FORMATS
    audio: bytes  # in the wire format
    onset_ms: int  # where the first sample above the background lies

    @property
    def format(self) -> AudioFormat:
        return _FORMATS[self.fmt]


def _shaped(
    rng: np.random.Generator, ms: int, low_hz: float, high_hz: float
) -> npt.NDArray[np.float64]:
    """Noise with energy only between ``low_hz`` and ``high_hz``, unit peak."""
    n = RATE * ms // 1000
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    shaped = np.fft.irfft(spectrum, n)
    return shaped / max(1e-9, float(np.max(np.abs(shaped))))


def _decay(n: int, attack_ms: int, tau_ms: float) -> npt.NDArray[np.float64]:
    t = np.arange(n) / RATE * 1000
    return np.minimum(1.0, t / max(1, attack_ms)) * np.exp(-t / tau_ms)


def _cough(rng: np.random.Generator, bursts: int) -> npt.NDArray[np.float64]:
    parts: list[npt.NDArray[np.float64]] = []
    for index in range(bursts):
        burst = _shaped(rng, 220, 250, 2500)
        parts.append(burst * _decay(burst.size, 10, 70) * (0.6 - 0.15 * index))
        parts.append(np.zeros(RATE * 60 // 1000))
    return np.concatenate(parts)


def _thump(rng: np.random.Generator, ms: int) -> npt.NDArray[np.float64]:
    burst = _shaped(rng, ms, 30, 300)
    return burst * _decay(burst.size, 3, ms / 3) * 0.8


def _hiss(rng: np.random.Generator, ms: int) -> npt.NDArray[np.float64]:
    burst = _shaped(rng, ms, 1500, 7000)
    ramp = np.minimum(1.0, np.minimum(np.arange(burst.size), np.arange(burst.size)[::-1]) / 800)
    return burst * ramp * 0.3


def _clatter(rng: np.random.Generator, ms: int) -> npt.NDArray[np.float64]:
    out = np.zeros(RATE * ms // 1000)
    for at in np.linspace(0, out.size - RATE // 20, max(2, ms // 80)).astype(int):
        click = _shaped(rng, 40, 500, 7500) * _decay(RATE * 40 // 1000, 1, 6)
        out[at : at + click.size] += click * rng.uniform(0.4, 0.9)
    return out


def noises() -> dict[str, npt.NDArray[np.float64]]:
    """The noises at 16 kHz, unit-scaled floats: four kinds at two lengths each."""
    rng = np.random.default_rng(22)
    return {
        "cough x1": _cough(rng, 1),
        "cough x2": _cough(rng, 2),
        "thump 120 ms": _thump(rng, 120),
        "thump 300 ms": _thump(rng, 300),
        "hiss 300 ms": _hiss(rng, 300),
        "hiss 700 ms": _hiss(rng, 700),
        "clatter 250 ms": _clatter(rng, 250),
        "clatter 600 ms": _clatter(rng, 600),
    }


def _padded(signal: npt.NDArray[np.float64], seed: int) -> npt.NDArray[np.int16]:
    lead = np.zeros(RATE * LEAD_MS // 1000)
    tail = np.zeros(RATE * TAIL_MS // 1000)
    whole = np.concatenate([lead, signal * 32767, tail])
    whole += np.random.default_rng(seed).normal(0, BACKGROUND, whole.size)
    return np.clip(whole, -32768, 32767).astype(np.int16)


def _in_format(pcm16k: npt.NDArray[np.int16], fmt: str) -> bytes:
    data = pcm16k.astype("<i2").tobytes()
    if fmt == "l16k":
        return data
    resampler = StreamResampler(RATE, 8000)
    return mulaw_encode(resampler.process(data) + resampler.flush())


def onset_ms(pcm16k: npt.NDArray[np.int16]) -> int:
    """Where the first sample above the background lies, in ms."""
    loud = np.flatnonzero(np.abs(pcm16k.astype(np.int32)) > ONSET_LEVEL)
    return int(loud[0]) * 1000 // RATE if loud.size else 0


async def sounds(formats: list[str]) -> list[Sound]:
    """Every sound in every format of ``formats``."""
    signals: list[tuple[str, str, npt.NDArray[np.int16]]] = []
    for index, (name, noise) in enumerate(noises().items()):
        signals.append(("noise", name, _padded(noise, index)))
    speech_fmt = AudioFormat(AudioEncoding.LINEAR16, RATE)
    for kind, texts in (("backchannel", BACKCHANNELS), ("real", REAL)):
        for voice in VOICES:
            for text in texts:
                pcm = await spoken(text, speech_fmt, lead_ms=LEAD_MS, tail_ms=TAIL_MS, voice=voice)
                signals.append((kind, f"{text} ({voice})", np.frombuffer(pcm, dtype="<i2")))
    return [
        Sound(kind, name, fmt, _in_format(pcm, fmt), onset_ms(pcm))
        for fmt in formats
        for kind, name, pcm in signals
    ]
