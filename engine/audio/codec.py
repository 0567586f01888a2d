"""Sample codecs and streaming rate conversion between client formats and the pipeline.

Everything here works on mono PCM16 (signed 16-bit little-endian) ``bytes`` and is pure
computation on numpy and soxr: no I/O, no asyncio. Converters are stateful (a resampler
carries filter history across chunks), so each stream direction of a session owns its own.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from engine.audio.formats import AudioEncoding, AudioFormat, AudioFormatError
from engine.runtime.ports.providers import INPUT_SAMPLE_RATE_HZ

__all__ = [
    "PIPELINE_SAMPLE_RATE_HZ",
    "InputConverter",
    "OutputConverter",
    "StreamResampler",
    "mulaw_decode",
    "mulaw_encode",
]

# VAD and ASR take 16 kHz PCM16 (defined once, by the provider port).
PIPELINE_SAMPLE_RATE_HZ: Final = INPUT_SAMPLE_RATE_HZ

_PCM16: Final = np.dtype("<i2")

# G.711 mu-law (ITU-T G.711, the 16-bit "biased" formulation): magnitudes are clipped,
# offset by the bias so every segment starts on a power of two, then coded as
# sign | 3-bit segment | 4-bit step, all bits inverted on the wire.
_MULAW_BIAS: Final = 0x84
_MULAW_CLIP: Final = 32_635


def _build_mulaw_encode_table() -> npt.NDArray[np.uint8]:
    # Indexed by the int16 sample's bit pattern read as uint16: one lookup per sample.
    samples = np.arange(65_536, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign: npt.NDArray[np.int32] = np.where(samples < 0, 0x80, 0x00).astype(np.int32)
    magnitude = np.minimum(np.abs(samples), _MULAW_CLIP) + _MULAW_BIAS
    segment_starts = np.array([1 << bit for bit in range(8, 15)], dtype=np.int32)
    segment = np.searchsorted(segment_starts, magnitude, side="right").astype(np.int32)
    step = (magnitude >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | step) & 0xFF).astype(np.uint8)


def _build_mulaw_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    segment = (codes >> 4) & 0x07
    step = codes & 0x0F
    magnitude = (((step << 3) + _MULAW_BIAS) << segment) - _MULAW_BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(_PCM16)


_MULAW_ENCODE: Final = _build_mulaw_encode_table()
_MULAW_DECODE: Final = _build_mulaw_decode_table()


def _pcm16_samples(pcm16: bytes) -> npt.NDArray[np.int16]:
    if len(pcm16) % 2:
        raise AudioFormatError(f"PCM16 data of {len(pcm16)} bytes is not whole 2-byte samples")
    return np.frombuffer(pcm16, dtype=_PCM16)


def mulaw_encode(pcm16: bytes) -> bytes:
    """G.711 mu-law encode PCM16 (one byte out per sample in)."""
    samples = _pcm16_samples(pcm16)
    codes: npt.NDArray[np.uint8] = _MULAW_ENCODE[samples.view("<u2")]
    return codes.tobytes()


def mulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law decode to PCM16 (two bytes out per byte in)."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


class StreamResampler:
    """Streaming PCM16 sample-rate conversion (soxr); a pass-through when rates match.

    Feed chunks to ``process``; at the end of a stream ``flush`` returns the audio soxr
    still holds for its filter and makes the resampler ready for a new stream. ``reset``
    drops that held audio instead (for a stream cut short, e.g. a barge-in).
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, *, quality: str = "HQ") -> None:
        for name, rate in (("in_rate_hz", in_rate_hz), ("out_rate_hz", out_rate_hz)):
            if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
                raise AudioFormatError(f"{name} must be a positive integer, got {rate!r}")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream: soxr.ResampleStream | None = None
        if in_rate_hz != out_rate_hz:
            self._stream = soxr.ResampleStream(
                in_rate_hz, out_rate_hz, 1, dtype="int16", quality=quality
            )

    def process(self, pcm16: bytes) -> bytes:
        """Resample one chunk; output may lag input by the filter delay (a few ms)."""
        samples = _pcm16_samples(pcm16)
        if self._stream is None:
            return bytes(pcm16)
        if samples.size == 0:
            return b""
        # soxr checks for the native int16 dtype; a no-op copy on little-endian hosts.
        native = samples.astype(np.int16, copy=False)
        return self._out(self._stream.resample_chunk(native, last=False))

    def flush(self) -> bytes:
        """End the stream: return the held tail and get ready for the next stream."""
        if self._stream is None:
            return b""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream.clear()
        return self._out(tail)

    def reset(self) -> None:
        """Drop any held audio and start afresh."""
        if self._stream is not None:
            self._stream.clear()

    @staticmethod
    def _out(samples: npt.NDArray[np.int16]) -> bytes:
        return samples.astype(_PCM16, copy=False).tobytes()


class InputConverter:
    """Client audio in its negotiated format -> 16 kHz PCM16 for VAD and ASR, streaming."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = StreamResampler(fmt.sample_rate_hz, PIPELINE_SAMPLE_RATE_HZ)
        # 16 kHz LINEAR16 is already what the pipeline takes: hand the chunk on as it is
        # (no numpy view, no copy) once it is checked to be whole samples.
        self._passthrough = (
            fmt.encoding is AudioEncoding.LINEAR16 and fmt.sample_rate_hz == PIPELINE_SAMPLE_RATE_HZ
        )

    def process(self, data: bytes) -> bytes:
        """Convert one client chunk; AudioFormatError when it is not whole samples."""
        if self._passthrough and not len(data) & 1:
            return data
        self.format.check_chunk(data)
        pcm16 = mulaw_decode(data) if self.format.encoding is AudioEncoding.MULAW else data
        return self._resampler.process(pcm16)

    def flush(self) -> bytes:
        """End of input: the audio still held by the resampler."""
        return self._resampler.flush()


class OutputConverter:
    """Synthesizer PCM16 at ``source_rate_hz`` -> the client's format, streaming.

    Call ``flush`` at the end of each response so its last milliseconds go out, or
    ``reset`` when the response is interrupted. A chunk split mid-sample (possible with
    remote synthesizers) is tolerated: the odd byte waits for the next chunk.
    """

    def __init__(self, source_rate_hz: int, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = StreamResampler(source_rate_hz, fmt.sample_rate_hz)
        self._pending = b""

    def process(self, pcm16: bytes) -> bytes:
        """Convert one chunk of synthesizer audio."""
        data = self._pending + pcm16 if self._pending else pcm16
        whole = len(data) & ~1
        self._pending = data[whole:]
        return self._encode(self._resampler.process(data[:whole]))

    def flush(self) -> bytes:
        """End of a response: the audio still held, in the client's format."""
        self._pending = b""  # half a sample cannot be played
        return self._encode(self._resampler.flush())

    def reset(self) -> None:
        """Drop held audio (barge-in) so the next response starts clean."""
        self._pending = b""
        self._resampler.reset()

    def _encode(self, pcm16: bytes) -> bytes:
        if self.format.encoding is AudioEncoding.MULAW:
            return mulaw_encode(pcm16)
        return pcm16
