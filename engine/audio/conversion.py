"""AudioCodecs over soxr and numpy: the adapter behind ``engine.runtime.ports.audio``."""

from __future__ import annotations

from engine.audio.codec import InputConverter, OutputConverter
from engine.audio.formats import AudioEncoding, AudioFormat, AudioFormatError
from engine.runtime.ports.audio import InvalidAudio, WireFormat


def _format(fmt: WireFormat) -> AudioFormat:
    if isinstance(fmt, AudioFormat):
        return fmt
    return AudioFormat(AudioEncoding(fmt.encoding), fmt.sample_rate_hz)


class _Decoder:
    def __init__(self, fmt: AudioFormat) -> None:
        self._converter = InputConverter(fmt)

    def decode(self, data: bytes) -> bytes:
        try:
            return self._converter.process(data)
        except AudioFormatError as exc:
            raise InvalidAudio(str(exc)) from None


class _Encoder:
    def __init__(self, source_rate_hz: int, fmt: AudioFormat) -> None:
        self.format = fmt
        self._converter = OutputConverter(source_rate_hz, fmt)

    def encode(self, pcm16: bytes) -> bytes:
        return self._converter.process(pcm16)

    def flush(self) -> bytes:
        return self._converter.flush()


class SoxrAudioCodecs:
    """Streaming resampling (soxr) and G.711 mu-law; one converter per stream."""

    def input_decoder(self, fmt: WireFormat) -> _Decoder:
        return _Decoder(_format(fmt))

    def output_encoder(self, source_rate_hz: int, fmt: WireFormat) -> _Encoder:
        return _Encoder(source_rate_hz, _format(fmt))
