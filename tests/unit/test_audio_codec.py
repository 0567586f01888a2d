"""Audio formats, G.711 mu-law, streaming resampling and WAV files."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.audio.codec import (
    PIPELINE_SAMPLE_RATE_HZ,
    InputConverter,
    OutputConverter,
    StreamResampler,
    mulaw_decode,
    mulaw_encode,
)
from engine.audio.formats import (
    SUPPORTED_SAMPLE_RATES_HZ,
    AudioEncoding,
    AudioFormat,
    AudioFormatError,
)
from engine.audio.wav import read_wav, write_wav

LINEAR16_RATES = SUPPORTED_SAMPLE_RATES_HZ[AudioEncoding.LINEAR16]
SYNTH_RATE = 22_050  # eSpeak's rate: the output converters' usual source


def pcm(samples: npt.ArrayLike) -> bytes:
    return np.asarray(samples).astype("<i2").tobytes()


def samples_of(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2")


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 8_000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return pcm(np.round(amplitude * np.sin(2 * np.pi * hz * t)))


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


ALL_INT16 = pcm(np.arange(-32_768, 32_768))


# -- formats --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", LINEAR16_RATES)
def test_linear16_accepts_every_supported_rate(rate: int) -> None:
    assert AudioFormat(AudioEncoding.LINEAR16, rate).sample_rate_hz == rate


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("LINEAR16", 44_100), ("LINEAR16", 0), ("MULAW", 16_000), ("MULAW", 48_000)],
)
def test_unsupported_rate_is_rejected_with_the_allowed_rates(encoding: str, rate: int) -> None:
    with pytest.raises(AudioFormatError, match=rf"sample rate {rate} Hz for {encoding}"):
        AudioFormat(AudioEncoding(encoding), rate)


def test_unknown_encoding_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="unsupported audio encoding 'OPUS'"):
        AudioFormat("OPUS", 8_000)  # type: ignore[arg-type]


def test_encoding_given_as_a_string_is_normalized() -> None:
    fmt = AudioFormat("MULAW", 8_000)  # type: ignore[arg-type]
    assert fmt.encoding is AudioEncoding.MULAW


def test_format_error_is_a_value_error() -> None:
    assert issubclass(AudioFormatError, ValueError)


def test_sizes_and_durations() -> None:
    linear = AudioFormat(AudioEncoding.LINEAR16, 16_000)
    mulaw = AudioFormat(AudioEncoding.MULAW, 8_000)
    assert (linear.bytes_per_sample, mulaw.bytes_per_sample) == (2, 1)
    assert linear.bytes_for_ms(20) == 640
    assert mulaw.bytes_for_ms(20) == 160
    assert AudioFormat(AudioEncoding.LINEAR16, 48_000).bytes_for_ms(0.5) == 48
    assert linear.duration_ms(640) == pytest.approx(20.0)
    assert mulaw.duration_ms(8_000) == pytest.approx(1_000.0)


def test_chunk_of_whole_samples_passes() -> None:
    checked = [
        AudioFormat(AudioEncoding.LINEAR16, 16_000).check_chunk(b"\0" * 640),
        AudioFormat(AudioEncoding.MULAW, 8_000).check_chunk(b"\xff" * 161),
    ]
    assert checked == [None, None]  # no AudioFormatError


def test_odd_length_linear16_chunk_is_rejected() -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16_000)
    with pytest.raises(AudioFormatError, match="641 bytes is not a whole number"):
        fmt.check_chunk(b"\0" * 641)


def test_input_converter_rejects_odd_length_chunk() -> None:
    converter = InputConverter(AudioFormat(AudioEncoding.LINEAR16, 8_000))
    with pytest.raises(AudioFormatError):
        converter.process(b"\0" * 3)


# -- mu-law ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (1, 0xFF), (-1, 0x7F), (100, 0xF2), (-100, 0x72), (32_767, 0x80), (-32_768, 0x00)],
)
def test_mulaw_encodes_known_code_points(sample: int, code: int) -> None:
    assert mulaw_encode(pcm([sample])) == bytes([code])


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32_124), (0x00, -32_124), (0xFE, 8), (0x7E, -8), (0xF2, 104)],
)
def test_mulaw_decodes_known_code_points(code: int, sample: int) -> None:
    assert samples_of(mulaw_decode(bytes([code])))[0] == sample


def test_mulaw_is_sign_symmetric() -> None:
    positive = np.frombuffer(mulaw_encode(pcm(np.arange(1, 32_768))), dtype=np.uint8)
    negative = np.frombuffer(mulaw_encode(pcm(-np.arange(1, 32_768))), dtype=np.uint8)
    assert np.array_equal(negative, positive & 0x7F)


def test_mulaw_every_code_round_trips_through_its_decoded_value() -> None:
    codes = bytes(c for c in range(256) if c != 0x7F)  # 0x7F is "negative zero": decodes to 0
    assert mulaw_encode(mulaw_decode(codes)) == codes


def test_mulaw_round_trip_error_is_within_half_a_segment_step() -> None:
    original = samples_of(ALL_INT16).astype(np.int32)
    decoded = samples_of(mulaw_decode(mulaw_encode(ALL_INT16))).astype(np.int32)
    magnitude = np.minimum(np.abs(original), 32_635)
    # Step size doubles per segment: 8 in the first, 1024 in the last. Clipped peaks aside,
    # the reconstruction sits at the middle of the step, so the error is at most half a step.
    step = 8 << np.searchsorted([1 << b for b in range(8, 15)], magnitude + 0x84, side="right")
    error = np.abs(decoded - np.clip(original, -32_635, 32_635))
    assert np.all(error <= step // 2)
    assert np.all(np.abs(decoded - original) <= 644)  # also at full scale


def test_mulaw_matches_the_stdlib_reference_where_it_is_sign_magnitude() -> None:
    audioop = pytest.importorskip("audioop")  # stdlib up to 3.12
    codes = bytes(range(256))
    assert audioop.ulaw2lin(codes, 2) == mulaw_decode(codes)
    # audioop floors negative samples before coding; positive ones must agree exactly.
    positive = pcm(np.arange(0, 32_768))
    assert audioop.lin2ulaw(positive, 2) == mulaw_encode(positive)


def test_mulaw_sizes() -> None:
    assert len(mulaw_encode(ALL_INT16)) == len(ALL_INT16) // 2
    assert len(mulaw_decode(b"\xff" * 160)) == 320


# -- resampling -----------------------------------------------------------------------


RATE_PAIRS = [
    (src, dst)
    for src, dst in itertools.permutations((*LINEAR16_RATES, SYNTH_RATE), 2)
    if SYNTH_RATE not in (src, dst) or src == SYNTH_RATE  # the synthesizer only produces
]


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_resampled_length_follows_the_rate_ratio(in_rate: int, out_rate: int) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    source = tone(in_rate, 1.0)
    out = b"".join(resampler.process(c) for c in in_chunks(source, in_rate // 50 * 2))
    out += resampler.flush()
    assert abs(len(out) // 2 - out_rate) <= 2


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8_000, 16_000), (48_000, 16_000)])
def test_streaming_equals_one_shot(in_rate: int, out_rate: int) -> None:
    source = tone(in_rate, 0.5, hz=300)
    one_shot = StreamResampler(in_rate, out_rate)
    whole = samples_of(one_shot.process(source) + one_shot.flush()).astype(np.int32)
    # Irregular chunk sizes, like network reads.
    sizes = itertools.cycle([2, 160, 322, 40, 1_000])
    streamed_resampler = StreamResampler(in_rate, out_rate)
    pieces, offset = [], 0
    while offset < len(source):
        size = next(sizes)
        pieces.append(streamed_resampler.process(source[offset : offset + size]))
        offset += size
    pieces.append(streamed_resampler.flush())
    streamed = samples_of(b"".join(pieces)).astype(np.int32)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) <= 2


def test_resampling_keeps_a_tone_at_its_frequency() -> None:
    resampler = StreamResampler(SYNTH_RATE, 8_000)
    out = samples_of(resampler.process(tone(SYNTH_RATE, 1.0, hz=440)) + resampler.flush())
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * 8_000 / len(out)
    assert peak_hz == pytest.approx(440, abs=2)


def test_equal_rates_pass_through_untouched() -> None:
    resampler = StreamResampler(16_000, 16_000)
    chunk = tone(16_000, 0.02)
    assert resampler.process(chunk) == chunk
    assert resampler.flush() == b""


def test_flush_readies_the_resampler_for_a_new_stream() -> None:
    resampler = StreamResampler(8_000, 16_000)
    first = resampler.process(tone(8_000, 0.2)) + resampler.flush()
    second = resampler.process(tone(8_000, 0.2)) + resampler.flush()
    assert len(first) == len(second)
    # soxr dithers its int16 output, so runs differ by a couple of LSB: inaudible.
    diff = samples_of(first).astype(np.int32) - samples_of(second).astype(np.int32)
    assert np.max(np.abs(diff)) <= 2


def test_resampler_rejects_bad_rates() -> None:
    with pytest.raises(AudioFormatError, match="in_rate_hz must be a positive integer"):
        StreamResampler(0, 16_000)


# -- converters -----------------------------------------------------------------------


def test_mulaw_8k_input_becomes_16k_pcm() -> None:
    converter = InputConverter(AudioFormat(AudioEncoding.MULAW, 8_000))
    mulaw = mulaw_encode(tone(8_000, 1.0))
    out = b"".join(converter.process(c) for c in in_chunks(mulaw, 400)) + converter.flush()
    assert abs(len(out) // 2 - PIPELINE_SAMPLE_RATE_HZ) <= 2
    # The tone survives: loudness close to the source's RMS (8000 / sqrt 2).
    rms = np.sqrt(np.mean(samples_of(out).astype(np.float64) ** 2))
    assert rms == pytest.approx(8_000 / np.sqrt(2), rel=0.05)


def test_16k_linear_input_passes_through() -> None:
    converter = InputConverter(AudioFormat(AudioEncoding.LINEAR16, 16_000))
    chunk = tone(16_000, 0.02)
    assert converter.process(chunk) == chunk


def test_output_converter_produces_mulaw_8k() -> None:
    converter = OutputConverter(SYNTH_RATE, AudioFormat(AudioEncoding.MULAW, 8_000))
    source = tone(SYNTH_RATE, 1.0)
    out = b"".join(converter.process(c) for c in in_chunks(source, 2_646)) + converter.flush()
    assert abs(len(out) - 8_000) <= 2  # one byte a sample
    decoded = samples_of(mulaw_decode(out)).astype(np.float64)
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(8_000 / np.sqrt(2), rel=0.05)


def test_output_converter_tolerates_chunks_split_mid_sample() -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 24_000)
    source = tone(SYNTH_RATE, 0.5)
    whole = OutputConverter(SYNTH_RATE, fmt)
    expected = whole.process(source) + whole.flush()
    split = OutputConverter(SYNTH_RATE, fmt)
    got = b"".join(split.process(c) for c in in_chunks(source, 101)) + split.flush()
    assert len(got) == len(expected)
    diff = samples_of(got).astype(np.int32) - samples_of(expected).astype(np.int32)
    assert np.max(np.abs(diff)) <= 2


def test_output_converter_reset_drops_held_audio() -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16_000)
    converter = OutputConverter(SYNTH_RATE, fmt)
    converter.process(tone(SYNTH_RATE, 0.1) + b"\x01")
    converter.reset()
    assert converter.flush() == b""


# -- WAV ------------------------------------------------------------------------------


def test_wav_round_trip(tmp_path: Path) -> None:
    audio = tone(16_000, 0.25)
    write_wav(tmp_path / "a.wav", audio, 16_000)
    assert read_wav(tmp_path / "a.wav") == (audio, 16_000)


def test_stereo_wav_is_downmixed(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8_000)
        wav.writeframes(pcm([100, 300, -50, -150]))
    assert read_wav(path) == (pcm([200, -100]), 8_000)


def test_8bit_wav_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8_000)
        wav.writeframes(b"\x80" * 80)
    with pytest.raises(AudioFormatError, match="8-bit samples, expected 16-bit PCM"):
        read_wav(path)


def test_non_wav_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "not.wav"
    path.write_bytes(b"definitely not RIFF data")
    with pytest.raises(AudioFormatError, match="not a PCM WAV file"):
        read_wav(path)
