"""A response's outgoing audio: converted to the client's format, cut into even chunks.

Chunks are cut *after* conversion, so each one is exactly ``AUDIO_CHUNK_MS`` of the
client's samples (the last one shorter, padded with silence to a whole millisecond):
``offset_ms`` and ``duration_ms`` are then the exact position and length of the chunk's
samples, and chunks never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.runtime.ports.audio import InvalidAudio, OutputEncoder, WireFormat
from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ

# Output audio leaves in messages of about this length: message rate, not bytes,
# bounds a gRPC server (docs/BENCHMARKS.md, the gRPC message-rate limit).
AUDIO_CHUNK_MS = 100

# Silence in each encoding (mu-law's zero is 0xFF).
_SILENCE = {"MULAW": b"\xff"}


@dataclass(frozen=True, slots=True)
class Pcm16Format:
    """Signed 16-bit little-endian mono PCM at ``sample_rate_hz``."""

    sample_rate_hz: int
    encoding: str = "LINEAR16"
    bytes_per_sample: int = 2


class Pcm16Passthrough:
    """An OutputEncoder that changes nothing (client format == synthesizer's PCM16)."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.format: WireFormat = Pcm16Format(sample_rate_hz)

    def encode(self, pcm16: bytes) -> bytes:
        return pcm16

    def flush(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Client-format audio and its exact place in the response, in milliseconds."""

    data: bytes
    offset_ms: int
    duration_ms: int


class OutputChunker:
    """Encodes one response's audio and hands it out in evenly sized chunks."""

    def __init__(self, encoder: OutputEncoder) -> None:
        self._encoder = encoder
        fmt = encoder.format
        self._sample_bytes = fmt.bytes_per_sample
        self._samples_per_ms = fmt.sample_rate_hz // 1000
        self._chunk_bytes = AUDIO_CHUNK_MS * self._samples_per_ms * self._sample_bytes
        self._silence = _SILENCE.get(fmt.encoding, b"\x00") * self._sample_bytes
        self._pending = b""
        self._sent_ms = 0

    @property
    def sent_ms(self) -> int:
        """Milliseconds of audio handed out so far."""
        return self._sent_ms

    def push(self, pcm16: bytes) -> list[OutputChunk]:
        """Add synthesizer audio; return the whole chunks it completed."""
        self._pending += self._encoder.encode(pcm16)
        chunks: list[OutputChunk] = []
        while len(self._pending) >= self._chunk_bytes:
            chunks.append(self._cut(self._pending[: self._chunk_bytes]))
            self._pending = self._pending[self._chunk_bytes :]
        return chunks

    def finish(self) -> list[OutputChunk]:
        """End of the response: the rest, the last chunk padded to a whole millisecond."""
        self._pending += self._encoder.flush()
        chunks: list[OutputChunk] = []
        while self._pending:
            data = self._pending[: self._chunk_bytes]
            self._pending = self._pending[self._chunk_bytes :]
            ms_bytes = self._samples_per_ms * self._sample_bytes
            short = -len(data) % ms_bytes
            chunks.append(self._cut(data + self._silence * (short // self._sample_bytes)))
        return chunks

    def _cut(self, data: bytes) -> OutputChunk:
        duration = len(data) // (self._samples_per_ms * self._sample_bytes)
        chunk = OutputChunk(data, self._sent_ms, duration)
        self._sent_ms += duration
        return chunk


class _Pcm16Decoder:
    def __init__(self, fmt: WireFormat) -> None:
        self._sample_bytes = fmt.bytes_per_sample

    def decode(self, data: bytes) -> bytes:
        if len(data) % self._sample_bytes:
            raise InvalidAudio(f"audio chunk of {len(data)} bytes is not whole samples")
        return data


class PassthroughCodecs:
    """AudioCodecs for 16 kHz PCM16 in and PCM16 at the synthesizer's rate out (tests)."""

    def input_decoder(self, fmt: WireFormat) -> _Pcm16Decoder:
        if fmt.encoding != "LINEAR16" or fmt.sample_rate_hz != INPUT_SAMPLE_RATE_HZ:
            raise InvalidAudio(f"only LINEAR16 at {INPUT_SAMPLE_RATE_HZ} Hz passes through")
        return _Pcm16Decoder(fmt)

    def output_encoder(self, source_rate_hz: int, fmt: WireFormat) -> Pcm16Passthrough:
        return Pcm16Passthrough(source_rate_hz)


# The format VAD and ASR consume; the default of a session that negotiates nothing.
PCM16_INPUT_FORMAT = Pcm16Format(INPUT_SAMPLE_RATE_HZ)
