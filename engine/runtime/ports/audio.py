"""The audio-conversion port: client wire formats <-> the pipeline's PCM16.

Chosen once at bootstrap (the soxr/numpy adapter in ``engine.audio.conversion``); the
runtime only sees these Protocols, so it stays free of numeric libraries.
"""

from __future__ import annotations

from typing import Protocol


class InvalidAudio(ValueError):
    """Client audio that is not whole samples of its negotiated format."""


class WireFormat(Protocol):
    """A negotiated mono audio format, as the runtime needs to know it."""

    @property
    def encoding(self) -> str:
        """The sample encoding's name (e.g. "LINEAR16", "MULAW")."""
        ...

    @property
    def sample_rate_hz(self) -> int: ...

    @property
    def bytes_per_sample(self) -> int: ...


class InputDecoder(Protocol):
    """One session's caller audio: its format in, 16 kHz PCM16 out (streaming)."""

    def decode(self, data: bytes) -> bytes:
        """Convert one chunk; raise InvalidAudio when it is not whole samples."""
        ...


class OutputEncoder(Protocol):
    """One response's audio: synthesizer PCM16 in, the client's format out (streaming)."""

    @property
    def format(self) -> WireFormat:
        """The format ``encode`` and ``flush`` produce."""
        ...

    def encode(self, pcm16: bytes) -> bytes:
        """Convert one chunk of synthesizer audio (output may lag by the filter delay)."""
        ...

    def flush(self) -> bytes:
        """End of the response: the audio still held, in the client's format."""
        ...


class AudioCodecs(Protocol):
    """Builds the converters of a session (input) and of each response (output)."""

    def input_decoder(self, fmt: WireFormat) -> InputDecoder: ...

    def output_encoder(self, source_rate_hz: int, fmt: WireFormat) -> OutputEncoder: ...
