"""Pauses to judge: eSpeak questions, complete or cut mid-sentence, as the turn detector hears them.

A clip is what the speech input would hand the detector early in a pause: a little lead
silence, the speech (all of it, or its first part), then ``tail_ms`` of silence, with light
noise throughout, as 16 kHz PCM16. ``over_mulaw_line`` sends a clip through a telephone line
(8 kHz mu-law) and back to 16 kHz the way the engine decodes its input.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from adapters.tts.espeak import EspeakSynthesizer
from engine.audio.codec import InputConverter, StreamResampler, mulaw_encode
from engine.audio.formats import AudioEncoding, AudioFormat

RATE_HZ = 16_000
MULAW_8K = AudioFormat(AudioEncoding.MULAW, 8000)


async def speech(text: str, voice: str, rate_wpm: int = 160) -> npt.NDArray[np.int16]:
    """``text`` spoken by eSpeak at 16 kHz, without eSpeak's own closing pause."""
    synthesizer = EspeakSynthesizer(voice=voice, rate_wpm=rate_wpm)
    resampler = StreamResampler(synthesizer.sample_rate_hz, RATE_HZ)
    pieces = [resampler.process(chunk) async for chunk in synthesizer.synthesize(text)]
    samples = np.frombuffer(b"".join([*pieces, resampler.flush()]), dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[: loud[-1] + 1] if loud.size else samples


def pause_after(
    speech: npt.NDArray[np.int16],
    *,
    cut_at: float = 1.0,
    lead_ms: int = 300,
    tail_ms: int = 200,
    noise_level: int = 40,
    seed: int = 0,
) -> bytes:
    """The first ``cut_at`` of ``speech`` between lead and tail silence, as PCM16 bytes."""
    spoken = speech[: int(len(speech) * cut_at)]
    lead = np.zeros(RATE_HZ * lead_ms // 1000, dtype=np.int32)
    tail = np.zeros(RATE_HZ * tail_ms // 1000, dtype=np.int32)
    signal = np.concatenate([lead, spoken.astype(np.int32), tail])
    noise = np.random.default_rng(seed).normal(0, noise_level, signal.size)
    return np.clip(signal + noise, -32768, 32767).astype("<i2").tobytes()


def over_mulaw_line(pcm16k: bytes) -> bytes:
    """``pcm16k`` sent as 8 kHz mu-law and decoded back to 16 kHz as the engine does."""
    down = StreamResampler(RATE_HZ, MULAW_8K.sample_rate_hz)
    wire = mulaw_encode(down.process(pcm16k) + down.flush())
    decoder = InputConverter(MULAW_8K)
    return decoder.process(wire) + decoder.flush()
