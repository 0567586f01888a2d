"""Test speech: sentences spoken by the engine's own TTS, padded and in any wire format."""

from __future__ import annotations

import asyncio

import numpy as np

from adapters.tts.espeak import EspeakSynthesizer
from engine.audio.codec import StreamResampler, mulaw_encode
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ

# Like the pipeline's pre-roll before the VAD fires; without a lead-in the trigram models
# (generic and the domain second pass) tend to lose the first word.
LEAD_IN = bytes(INPUT_SAMPLE_RATE_HZ * 2 * 300 // 1000)


async def spoken(
    text: str,
    fmt: AudioFormat,
    *,
    lead_ms: int = 400,
    tail_ms: int = 1200,
    noise_level: int = 40,
    seed: int = 7,
    voice: str = "en-us+f3",
) -> bytes:
    """``text`` as a caller would send it: silence with light noise around the speech."""
    synthesizer = EspeakSynthesizer(voice=voice, rate_wpm=160)
    resampler = StreamResampler(synthesizer.sample_rate_hz, fmt.sample_rate_hz)
    pieces = [resampler.process(chunk) async for chunk in synthesizer.synthesize(text)]
    speech = np.frombuffer(b"".join([*pieces, resampler.flush()]), dtype=np.int16)
    rate = fmt.sample_rate_hz
    lead = np.zeros(rate * lead_ms // 1000, dtype=np.int16)
    tail = np.zeros(rate * tail_ms // 1000, dtype=np.int16)
    signal = np.concatenate([lead, speech, tail]).astype(np.int32)
    noise = np.random.default_rng(seed).normal(0, noise_level, signal.size).astype(np.int32)
    pcm = np.clip(signal + noise, -32768, 32767).astype("<i2").tobytes()
    return mulaw_encode(pcm) if fmt.encoding is AudioEncoding.MULAW else pcm


def silence(fmt: AudioFormat, ms: int, *, noise_level: int = 40, seed: int = 3) -> bytes:
    """``ms`` of light noise in ``fmt``."""
    n = fmt.sample_rate_hz * ms // 1000
    noise = np.random.default_rng(seed).normal(0, noise_level, n).astype("<i2").tobytes()
    return mulaw_encode(noise) if fmt.encoding is AudioEncoding.MULAW else noise


def chunks(data: bytes, fmt: AudioFormat, ms: int = 20) -> list[bytes]:
    """``data`` cut into ``ms`` chunks."""
    size = fmt.bytes_for_ms(ms)
    return [data[i : i + size] for i in range(0, len(data), size)]


def synthesize_16k(text: str) -> bytes:
    """``text`` spoken by eSpeak NG's default voice, as 16 kHz PCM16 between two 300 ms
    silences (the recognizer's input; call it outside an event loop)."""

    async def run() -> bytes:
        synthesizer = EspeakSynthesizer()
        resampler = StreamResampler(synthesizer.sample_rate_hz, INPUT_SAMPLE_RATE_HZ)
        pieces = [resampler.process(chunk) async for chunk in synthesizer.synthesize(text)]
        return b"".join([*pieces, resampler.flush()])

    return LEAD_IN + asyncio.run(run()) + LEAD_IN


def telephone_line(pcm16k: bytes, gain: float) -> bytes:
    """``pcm16k`` through an 8 kHz line at another level: another channel's mean."""
    down, up = StreamResampler(INPUT_SAMPLE_RATE_HZ, 8000), StreamResampler(8000, 16000)
    narrow = down.process(pcm16k) + down.flush()
    wide = np.frombuffer(up.process(narrow) + up.flush(), dtype=np.int16) * gain
    return np.clip(wide, -32768, 32767).astype(np.int16).tobytes()
