"""Audio formats a client may negotiate on the Converse stream (always mono)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ

__all__ = [
    "PCM16_16K",
    "SUPPORTED_SAMPLE_RATES_HZ",
    "AudioEncoding",
    "AudioFormat",
    "AudioFormatError",
]


class AudioFormatError(ValueError):
    """Audio does not match, or cannot be, a supported format."""


class AudioEncoding(StrEnum):
    """Sample encodings on the wire."""

    LINEAR16 = "LINEAR16"  # signed 16-bit little-endian PCM
    MULAW = "MULAW"  # G.711 mu-law, 8 bits a sample


SUPPORTED_SAMPLE_RATES_HZ: dict[AudioEncoding, tuple[int, ...]] = {
    AudioEncoding.LINEAR16: (8_000, 16_000, 24_000, 48_000),
    AudioEncoding.MULAW: (8_000,),  # mu-law is a telephony codec: narrowband only
}

_BYTES_PER_SAMPLE = {AudioEncoding.LINEAR16: 2, AudioEncoding.MULAW: 1}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A mono audio format; construction fails with AudioFormatError when unsupported.

    ``encoding`` may be given as its string name ("MULAW"); it is stored as AudioEncoding.
    """

    encoding: AudioEncoding
    sample_rate_hz: int

    def __post_init__(self) -> None:
        try:
            encoding = AudioEncoding(self.encoding)
        except ValueError:
            names = ", ".join(e.value for e in AudioEncoding)
            raise AudioFormatError(
                f"unsupported audio encoding {self.encoding!r} (supported: {names})"
            ) from None
        object.__setattr__(self, "encoding", encoding)  # frozen: normalize once, here
        self.validate()

    def validate(self) -> None:
        """Raise AudioFormatError unless the encoding supports this sample rate."""
        rates = SUPPORTED_SAMPLE_RATES_HZ[self.encoding]
        rate = self.sample_rate_hz
        if isinstance(rate, bool) or not isinstance(rate, int) or rate not in rates:
            allowed = ", ".join(str(r) for r in rates)
            raise AudioFormatError(
                f"unsupported sample rate {rate!r} Hz for {self.encoding.value} "
                f"(supported: {allowed} Hz)"
            )

    @property
    def bytes_per_sample(self) -> int:
        return _BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_second(self) -> int:
        return self.bytes_per_sample * self.sample_rate_hz

    def bytes_for_ms(self, ms: float) -> int:
        """Size of ``ms`` milliseconds of audio, rounded down to whole samples."""
        if ms < 0:
            raise ValueError(f"duration must not be negative, got {ms} ms")
        return int(ms * self.sample_rate_hz // 1000) * self.bytes_per_sample

    def duration_ms(self, n_bytes: int) -> float:
        """Playing time of ``n_bytes`` of audio in this format."""
        return n_bytes * 1000 / self.bytes_per_second

    def check_chunk(self, data: bytes) -> None:
        """Raise AudioFormatError when ``data`` is not a whole number of samples."""
        if len(data) % self.bytes_per_sample:
            raise AudioFormatError(
                f"{self.encoding.value} audio chunk of {len(data)} bytes is not a whole "
                f"number of {self.bytes_per_sample}-byte samples"
            )

    def __str__(self) -> str:
        return f"{self.encoding.value}/{self.sample_rate_hz}Hz/mono"


# What VAD and ASR consume (ports.INPUT_SAMPLE_RATE_HZ).
PCM16_16K = AudioFormat(AudioEncoding.LINEAR16, INPUT_SAMPLE_RATE_HZ)
