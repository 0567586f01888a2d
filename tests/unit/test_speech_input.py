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


async def test_each_utterance_of_a_caller_continues_from_the_last() -> None:
    async def emit(_: Event) -> None:
        return None

    recognizer = _Recognizer()
    speech = SpeechInput(
        SignalVad(),
        recognizer,
        VadSettings(end_silence_ms=200),
        emit,
        interim_transcripts=lambda: False,
    )
    heard = []
    for _ in range(3):
        for frame in [SPEECH] * 20 + [SILENCE] * 15:
            if (done := await speech.feed(frame)) is not None:
                heard.append(done.recognition.text)
    assert heard == ["utterance 1", "utterance 2", "utterance 3"]
    assert recognizer.started == 1  # only the first was a new caller

    # Another session (another SpeechInput) on the same recognizer starts afresh.
    other = SpeechInput(
        SignalVad(),
        recognizer,
        VadSettings(end_silence_ms=200),
        emit,
        interim_transcripts=lambda: False,
    )
    for frame in [SPEECH] * 20 + [SILENCE] * 15:
        if (done := await other.feed(frame)) is not None:
            assert done.recognition.text == "utterance 1"
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
    async def emit(_: Event) -> None:
        return None

    recognizer = _LineRecognizer()
    speech = SpeechInput(
        SignalVad(),
        recognizer,
        VadSettings(end_silence_ms=200),
        emit,
        interim_transcripts=lambda: False,
        line="MULAW/8000",
    )
    heard = []
    for _ in range(2):
        for frame in [SPEECH] * 20 + [SILENCE] * 15:
            if (done := await speech.feed(frame)) is not None:
                heard.append(done.recognition.text)
    assert heard == ["utterance 1", "utterance 2"]
    assert recognizer.lines == ["MULAW/8000"]  # the second continued from the first
    assert recognizer.started == 0
