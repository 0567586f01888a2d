"""An ASR that returns a fixed transcript, or one the caller's audio carries.

``transcript: "..."``: every utterance is heard as that text.
``transcripts: [...]``: the audio carries which one: the first non-zero sample of the
utterance, as an absolute value ``v``, selects ``transcripts[(v - 1) % len(transcripts)]``.
A load client speaking "question k" sends samples of value ``k + 1``. No decoding, no
executor: ``feed`` only looks for that first non-zero sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.runtime.ports.providers import (
    ProviderConfigError,
    Recognition,
    RecognitionStream,
    reject_unknown_options,
)

__all__ = ["CarriedTranscriptRecognizer", "carried_sample_value"]

_OPTION_KEYS = frozenset({"transcript", "transcripts"})
DEFAULT_TRANSCRIPT = "hello"


def carried_sample_value(index: int) -> int:
    """The sample value a client sends to make the recognizer hear ``transcripts[index]``."""
    return index + 1


class _CarriedStream:
    def __init__(self, transcripts: Sequence[str]) -> None:
        self._transcripts = transcripts
        self._value = 0  # absolute value of the first non-zero sample; 0 = none yet

    async def feed(self, pcm16k: bytes) -> None:
        if self._value or not pcm16k.strip(b"\x00"):
            return
        # PCM16 is little-endian, as is every CPU the engine runs on (native "h").
        for sample in memoryview(pcm16k[: len(pcm16k) // 2 * 2]).cast("h"):
            if sample:
                self._value = abs(sample)
                break

    def partial(self) -> str:
        return self._text() if self._value else ""

    async def finish(self) -> Recognition:
        return Recognition(self._text() if self._value else "", 1.0 if self._value else 0.0)

    def cancel(self) -> None:
        self._value = 0

    def _text(self) -> str:
        return self._transcripts[(self._value - 1) % len(self._transcripts)]


class CarriedTranscriptRecognizer:
    """SpeechRecognizer port that 'hears' a fixed or signal-carried transcript."""

    def __init__(self, transcripts: Sequence[str]) -> None:
        if not transcripts:
            raise ProviderConfigError("asr.transcripts: must list at least one transcript")
        self._transcripts = tuple(transcripts)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CarriedTranscriptRecognizer:
        """Build from an assistant's ``asr:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("asr", "testkit", options, _OPTION_KEYS)
        if "transcript" in options and "transcripts" in options:
            raise ProviderConfigError("asr: give either transcript or transcripts, not both")
        if "transcripts" in options:
            raw = options["transcripts"]
            if not isinstance(raw, list) or not raw:
                raise ProviderConfigError("asr.transcripts: must be a non-empty list of strings")
            for i, item in enumerate(raw):
                if not isinstance(item, str) or not item.strip():
                    raise ProviderConfigError(f"asr.transcripts[{i}]: must be a non-empty string")
            return cls([item.strip() for item in raw])
        fixed = options.get("transcript", DEFAULT_TRANSCRIPT)
        if not isinstance(fixed, str) or not fixed.strip():
            raise ProviderConfigError("asr.transcript: must be a non-empty string")
        return cls([fixed.strip()])

    @property
    def transcripts(self) -> tuple[str, ...]:
        return self._transcripts

    def start_utterance(self) -> RecognitionStream:
        return _CarriedStream(self._transcripts)
