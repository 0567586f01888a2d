"""Reading and writing PCM16 WAV files (test fixtures, the CLI's talk/bench commands)."""

from __future__ import annotations

import os
import wave

import numpy as np

from engine.audio.formats import AudioFormatError

__all__ = ["read_wav", "write_wav"]


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Return ``(pcm16 mono bytes, sample rate)``; stereo is downmixed to mono.

    Raise AudioFormatError for anything but uncompressed 16-bit PCM with one or two
    channels; FileNotFoundError and other OSErrors pass through.
    """
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"{path}: not a PCM WAV file: {exc}") from exc
    if width != 2:
        raise AudioFormatError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    if channels == 2:
        # Average rather than keep one side: a caller may be on either channel.
        stereo = np.frombuffer(frames, dtype="<i2").reshape(-1, 2).astype(np.int32)
        frames = (stereo.sum(axis=1) // 2).astype("<i2").tobytes()
    elif channels != 1:
        raise AudioFormatError(f"{path}: {channels} channels, expected mono or stereo")
    return frames, rate


def write_wav(path: str | os.PathLike[str], pcm16: bytes, sample_rate: int) -> None:
    """Write mono PCM16 ``pcm16`` as a WAV file at ``sample_rate`` Hz."""
    if len(pcm16) % 2:
        raise AudioFormatError(f"PCM16 data of {len(pcm16)} bytes is not whole 2-byte samples")
    if sample_rate <= 0:
        raise AudioFormatError(f"sample rate must be positive, got {sample_rate}")
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16)
