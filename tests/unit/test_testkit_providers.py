"""The test-kit providers: speech from the signal, carried transcripts, fixed replies and audio."""

from __future__ import annotations

import pytest

from adapters.providers import EmbeddedProviderFactory
from adapters.testkit.asr import CarriedTranscriptRecognizer, carried_sample_value
from adapters.testkit.llm import FixedReplyLanguageModel
from adapters.testkit.tts import FixedDurationSynthesizer
from adapters.testkit.vad import SignalVad
from engine.runtime.assistant import AssistantConfigError, parse_assistant
from engine.runtime.ports.providers import ChatMessage, ProviderConfigError, ProviderSpec
from engine.settings import DEFAULT_AGENTS_DIR


def _pcm(value: int, samples: int) -> bytes:
    return value.to_bytes(2, "little", signed=True) * samples


def test_the_signal_vad_calls_any_non_zero_sample_speech() -> None:
    vad = SignalVad(frame_ms=20)
    assert vad.frame_bytes == 640
    assert not vad.is_speech(bytes(640))
    assert vad.is_speech(bytes(638) + _pcm(-1, 1))
    assert vad.is_speech(_pcm(3, 320))


def test_the_signal_vad_rejects_a_frame_of_the_wrong_size_and_bad_frame_lengths() -> None:
    with pytest.raises(ValueError, match="640 bytes"):
        SignalVad(frame_ms=20).is_speech(bytes(320))
    with pytest.raises(ProviderConfigError, match=r"vad\.frame_ms"):
        SignalVad.from_options({"frame_ms": 25})
    assert SignalVad.from_options({"frame_ms": 10, "aggressiveness": 3}).frame_bytes == 320


async def test_the_recognizer_hears_the_transcript_the_audio_carries() -> None:
    recognizer = CarriedTranscriptRecognizer(["first question", "second question"])
    for index, expected in ((0, "first question"), (1, "second question"), (3, "second question")):
        stream = recognizer.start_utterance()
        await stream.feed(bytes(320))  # pre-speech padding of silence
        await stream.feed(_pcm(-carried_sample_value(index), 320))
        assert stream.partial() == expected
        result = await stream.finish()
        assert (result.text, result.confidence) == (expected, 1.0)


async def test_the_recognizer_hears_nothing_in_silence_and_a_fixed_transcript_otherwise() -> None:
    silent = CarriedTranscriptRecognizer.from_options({}).start_utterance()
    await silent.feed(bytes(640))
    assert (await silent.finish()).text == ""
    fixed = CarriedTranscriptRecognizer.from_options({"transcript": "  book a table "})
    stream = fixed.start_utterance()
    await stream.feed(_pcm(77, 10))
    assert (await stream.finish()).text == "book a table"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"transcripts": []}, "asr.transcripts"),
        ({"transcripts": ["ok", ""]}, "asr.transcripts[1]"),
        ({"transcript": "a", "transcripts": ["b"]}, "not both"),
        ({"language": "fr"}, "asr.language"),
    ],
)
def test_bad_recognizer_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ProviderConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        CarriedTranscriptRecognizer.from_options(options)


async def test_the_language_model_streams_its_fixed_reply_word_by_word() -> None:
    options = {"reply": "We are open at noon.", "token_delay_ms": 1}
    llm = FixedReplyLanguageModel.from_options(options)
    tokens = [t async for t in llm.stream_reply([ChatMessage("user", "anything at all")])]
    assert tokens == ["We ", "are ", "open ", "at ", "noon."]
    with pytest.raises(ProviderConfigError, match=r"llm\.token_delay_ms"):
        FixedReplyLanguageModel.from_options({"token_delay_ms": -1})


async def test_the_synthesizer_yields_the_configured_duration_of_audible_audio() -> None:
    tts = FixedDurationSynthesizer.from_options({"duration_ms": 250, "sample_rate_hz": 8000})
    chunks = [c async for c in tts.synthesize("whatever the sentence says")]
    assert sum(len(c) for c in chunks) == 8000 * 250 // 1000 * 2
    assert all(len(c) <= 8000 * 100 // 1000 * 2 for c in chunks)
    assert any(b != 0 for b in chunks[0])
    with pytest.raises(ProviderConfigError, match=r"tts\.sample_rate_hz"):
        FixedDurationSynthesizer.from_options({"sample_rate_hz": 11025})


def test_the_factory_builds_testkit_providers_by_name() -> None:
    factory = EmbeddedProviderFactory()
    spec = ProviderSpec("testkit", {})
    assert isinstance(factory.vad(spec), SignalVad)
    assert isinstance(factory.recognizer(spec), CarriedTranscriptRecognizer)
    assert isinstance(factory.language_model(spec), FixedReplyLanguageModel)
    assert isinstance(factory.synthesizer(spec), FixedDurationSynthesizer)


def test_the_assistant_schema_takes_a_vad_provider_and_frame_length() -> None:
    config = parse_assistant({"id": "a", "vad": {"provider": "testkit", "frame_ms": 30}})
    assert config.vad.provider_spec() == ProviderSpec(
        "testkit", {"aggressiveness": 2, "frame_ms": 30}
    )
    default = parse_assistant({"id": "a"})
    assert (default.vad.provider, default.vad.frame_ms) == ("webrtc", 20)
    with pytest.raises(AssistantConfigError, match=r"vad\.frame_ms"):
        parse_assistant({"id": "a", "vad": {"frame_ms": 15}})
    with pytest.raises(AssistantConfigError, match=r"vad\.provider"):
        parse_assistant({"id": "a", "vad": {"provider": ""}})


def test_the_webrtc_vad_honours_the_frame_length_of_the_assistant() -> None:
    config = parse_assistant({"id": "a", "vad": {"frame_ms": 10}})
    assert EmbeddedProviderFactory().vad(config.vad.provider_spec()).frame_bytes == 320


def test_the_bundled_testkit_assistant_uses_only_testkit_providers() -> None:
    import yaml

    path = DEFAULT_AGENTS_DIR / "testkit.yaml"
    config = parse_assistant(yaml.safe_load(path.read_text()), expected_id="testkit")
    providers = {config.llm.provider, config.tts.provider, config.asr.provider, config.vad.provider}
    assert providers == {"testkit"}
