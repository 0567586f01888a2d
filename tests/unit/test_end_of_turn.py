"""Semantic end of turn: the speech input asks a turn detector once a pause (scripted fake)."""

from __future__ import annotations

from adapters.testkit.vad import SignalVad
from engine.runtime.assistant import TurnSettings, VadSettings
from engine.runtime.events import Event
from engine.runtime.ports.providers import Recognition
from engine.runtime.ports.turn import TurnDetectorBusy
from engine.runtime.speech_input import FinishedUtterance, SpeechInput
from tests.helpers.fakes import ScriptedTurnDetector

SPEECH = b"\x01\x00" * 320  # 20 ms of non-zero samples: speech to the signal VAD
SILENCE = bytes(640)
TURN = TurnSettings(
    detector="scripted", check_after_ms=200, complete_threshold=0.5, max_silence_ms=1500
)


class _Stream:
    def __init__(self) -> None:
        self.prepared = 0  # silence_began calls

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    async def finish(self) -> Recognition:
        return Recognition("words", 0.9, "whisper")

    def cancel(self) -> None:
        return None

    def silence_began(self) -> None:  # PreparesFinal: the final pass may start
        self.prepared += 1

    def speech_resumed(self) -> None:
        return None


class _Recognizer:
    def __init__(self) -> None:
        self.streams: list[_Stream] = []

    def start_utterance(self) -> _Stream:
        self.streams.append(_Stream())
        return self.streams[-1]


async def _ignore(_: Event) -> None:
    return None


def _speech_input(
    detector: ScriptedTurnDetector | None, recognizer: _Recognizer | None = None
) -> SpeechInput:
    return SpeechInput(
        SignalVad(),
        recognizer or _Recognizer(),
        VadSettings(end_silence_ms=600),
        _ignore,
        interim_transcripts=lambda: False,
        detector=detector,
        turn=TURN,
    )


async def _silence_until_done(
    speech: SpeechInput, most_ms: int = 3000
) -> tuple[int, FinishedUtterance]:
    """Feed silence until the turn ends: how much it took, and the utterance."""
    for n in range(1, most_ms // 20 + 1):
        if (done := await speech.feed(SILENCE)) is not None:
            return n * 20, done
    raise AssertionError(f"no end of turn within {most_ms} ms of silence")


async def _say(speech: SpeechInput, ms: int) -> None:
    for _ in range(ms // 20):
        assert await speech.feed(SPEECH) is None


async def test_a_complete_verdict_ends_the_turn_at_the_check() -> None:
    detector = ScriptedTurnDetector(0.93)
    speech = _speech_input(detector)
    await _say(speech, 1000)
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 200
    assert done.ended_by == "complete"
    assert len(detector.heard) == 1
    assert len(detector.heard[0]) >= 1000 * 32  # the utterance so far, speech included


async def test_an_incomplete_verdict_keeps_listening_past_the_end_silence() -> None:
    detector = ScriptedTurnDetector(0.1, 0.9)
    speech = _speech_input(detector)
    await _say(speech, 800)
    for _ in range(1000 // 20):  # a 1 s pause mid-sentence: longer than vad.end_silence_ms
        assert await speech.feed(SILENCE) is None
    await _say(speech, 600)  # the caller goes on
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 200 and done.ended_by == "complete"
    assert len(detector.heard) == 2  # once a pause


async def test_a_turn_judged_incomplete_ends_after_the_longest_silence() -> None:
    detector = ScriptedTurnDetector(0.2)
    speech = _speech_input(detector)
    await _say(speech, 800)
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 1500 and done.ended_by == "max_silence"
    assert len(detector.heard) == 1


async def test_a_busy_detector_leaves_the_fixed_end_silence() -> None:
    speech = _speech_input(ScriptedTurnDetector(TurnDetectorBusy("full")))
    await _say(speech, 800)
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_a_failing_detector_leaves_the_fixed_end_silence() -> None:
    speech = _speech_input(ScriptedTurnDetector())  # nothing scripted: TurnDetectorError
    await _say(speech, 800)
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_without_a_detector_the_end_silence_decides() -> None:
    speech = _speech_input(None)
    await _say(speech, 800)
    silent_ms, done = await _silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_with_a_detector_the_final_pass_starts_well_before_the_check() -> None:
    recognizer = _Recognizer()
    speech = _speech_input(ScriptedTurnDetector(0.9), recognizer)
    await _say(speech, 800)
    for _ in range(3):  # 60 ms of silence
        assert await speech.feed(SILENCE) is None
    assert recognizer.streams[0].prepared == 1


async def test_without_a_detector_the_final_pass_waits_for_a_longer_silence() -> None:
    recognizer = _Recognizer()
    speech = _speech_input(None, recognizer)
    await _say(speech, 800)
    for _ in range(7):  # 140 ms
        assert await speech.feed(SILENCE) is None
    assert recognizer.streams[0].prepared == 0
    assert await speech.feed(SILENCE) is None  # 160 ms
    assert recognizer.streams[0].prepared == 1
