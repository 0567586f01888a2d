"""A TTS that produces a fixed duration of audio per sentence with no compute.

The audio is a constant, pre-built buffer of low-level noise-free PCM (a quiet square
wave, so a client can tell it from silence), handed out in ``chunk_ms`` slices.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from engine.runtime.ports.providers import ProviderConfigError, reject_unknown_options

__all__ = ["FixedDurationSynthesizer"]

_OPTION_KEYS = frozenset({"duration_ms", "sample_rate_hz", "chunk_ms"})
_RATES = (8000, 16000, 22050, 24000, 48000)
_LEVEL = 1000  # sample amplitude of the square wave


def _int_option(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProviderConfigError(f"tts.{name}: must be an integer from {lo} to {hi}")
    return value


class FixedDurationSynthesizer:
    """SpeechSynthesizer port: ``duration_ms`` of audio for any sentence, sliced ready-made."""

    def __init__(
        self, duration_ms: int = 1000, sample_rate_hz: int = 16000, chunk_ms: int = 100
    ) -> None:
        _int_option("duration_ms", duration_ms, 1, 600_000)
        _int_option("chunk_ms", chunk_ms, 10, 10_000)
        if sample_rate_hz not in _RATES:
            rates = ", ".join(map(str, _RATES))
            raise ProviderConfigError(f"tts.sample_rate_hz: must be one of {rates}")
        self._rate = sample_rate_hz
        self._duration_ms = duration_ms
        total = sample_rate_hz * duration_ms // 1000
        per_chunk = max(1, sample_rate_hz * chunk_ms // 1000)
        period = max(2, sample_rate_hz // 200)  # a 200 Hz square wave
        wave = b"".join(
            (_LEVEL if (i % period) < period // 2 else -_LEVEL).to_bytes(2, "little", signed=True)
            for i in range(period)
        )
        pcm = (wave * (total // period + 1))[: total * 2]
        self._chunks = tuple(pcm[i : i + per_chunk * 2] for i in range(0, len(pcm), per_chunk * 2))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FixedDurationSynthesizer:
        """Build from an assistant's ``tts:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("tts", "testkit", options, _OPTION_KEYS)
        return cls(
            duration_ms=options.get("duration_ms", 1000),
            sample_rate_hz=options.get("sample_rate_hz", 16000),
            chunk_ms=options.get("chunk_ms", 100),
        )

    @property
    def sample_rate_hz(self) -> int:
        return self._rate

    @property
    def duration_ms(self) -> int:
        return self._duration_ms

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        """Yield ``duration_ms`` of PCM16 whatever ``text`` says."""
        for chunk in self._chunks:
            yield chunk
