"""The speech input hands a recognizer the caller's previous utterance to continue from."""

from __future__ import annotations

from adapters.testkit.vad import SignalVad
from engine.runtime.assistant import VadSettings
from engine.runtime.events import Event
from engine.runtime.ports.providers import Recognition, RecognitionStream
from engine.runtime.speech_input import SpeechInput

SPEECH = b"\x01\x00" * 320  # 20 ms of non-zero samples: speech to the signal VAD
SILENCE = bytes(640)


class _Stream:
    """Says which utterance of its caller it is."""

    def __init__(self, nth: int) -> None:
        self.nth = nth

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    async def finish(self) -> Recognition:
        return Recognition(f"utterance {self.nth}", 0.9)

    def cancel(self) -> None:
        return None

    def next_utterance(self) -> RecognitionStream:
        return _Stream(self.nth + 1)


class _Recognizer:
    def __init__(self) -> None:
        self.started = 0

    def start_utterance(self) -> RecognitionStream:
        self.started += 1
        return _Stream(1)


async def _ignore(_: Event) -> None:
    return None


def _speech_input(recognizer: _Recognizer, line: str = "") -> SpeechInput:
    return SpeechInput(
        SignalVad(),
        recognizer,
        VadSettings(end_silence_ms=200),
        _ignore,
        interim_transcripts=lambda: False,
        line=line,
    )


async def _utterances(speech: SpeechInput, count: int) -> list[str]:
    """The caller says ``count`` utterances; what the speech input heard."""
    heard = []
    for _ in range(count):
        for frame in [SPEECH] * 20 + [SILENCE] * 15:
            if (done := await speech.feed(frame)) is not None:
                heard.append(done.recognition.text)
    return heard


async def test_each_utterance_of_a_caller_continues_from_the_last() -> None:
    recognizer = _Recognizer()
    speech = _speech_input(recognizer)
    assert await _utterances(speech, 3) == ["utterance 1", "utterance 2", "utterance 3"]
    assert recognizer.started == 1  # only the first was a new caller

    # Another session (another SpeechInput) on the same recognizer starts afresh.
    assert await _utterances(_speech_input(recognizer), 1) == ["utterance 1"]
    assert recognizer.started == 2


class _LineRecognizer(_Recognizer):
    """Also LearnsLines: says which line a new caller was started on."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def start_utterance_on(self, line: str) -> RecognitionStream:
        self.lines.append(line)
        return _Stream(1)


async def test_a_new_caller_is_started_on_the_line_the_session_was_opened_with() -> None:
    recognizer = _LineRecognizer()
    speech = _speech_input(recognizer, line="MULAW/8000")
    assert await _utterances(speech, 2) == ["utterance 1", "utterance 2"]
    assert recognizer.lines == ["MULAW/8000"]  # the second continued from the first
    assert recognizer.started == 0


NOISE = b"\xfb\xff" * 320  # 20 ms the signal VAD calls speech without a pitch


async def _pitch_heard(frames: list[bytes], *, hear_pitch: bool) -> int | None:
    speech = SpeechInput(
        SignalVad(),
        _Recognizer(),
        VadSettings(min_speech_ms=60, end_silence_ms=200),
        _ignore,
        interim_transcripts=lambda: False,
        hear_pitch=lambda: hear_pitch,
    )
    for frame in frames:
        await speech.feed(frame)
    assert speech.speaking
    return speech.pitched_ms


async def test_the_speech_of_an_utterance_with_a_pitch_is_counted_while_asked() -> None:
    assert await _pitch_heard([SPEECH] * 10, hear_pitch=True) == 200
    assert await _pitch_heard([NOISE] * 5 + [SPEECH] * 5, hear_pitch=True) == 100
    assert await _pitch_heard([NOISE] * 10, hear_pitch=True) == 0
    assert await _pitch_heard([SPEECH] * 10, hear_pitch=False) is None
