"""The turn detector's check runs beside the audio: input never waits for the model."""

from __future__ import annotations

import asyncio

from engine.runtime.audio_clock import AudioClock
from engine.runtime.speech_input import SpeechInput
from tests.helpers.fakes import ScriptedTurnDetector
from tests.helpers.turns import (
    SILENCE,
    SPEECH,
    RealTime,
    WordsRecognizer,
    say,
    silence_until_done,
    speech_input,
)


def _in_real_time(
    detector: ScriptedTurnDetector, recognizer: WordsRecognizer
) -> tuple[SpeechInput, RealTime]:
    time = RealTime()
    return speech_input(detector, recognizer, clock=AudioClock(now=time)), time


async def _frames(speech: SpeechInput, time: RealTime, frame: bytes, ms: int) -> None:
    for _ in range(ms // 20):
        time.tick()
        assert await speech.feed(frame) is None


async def _until_asked(detector: ScriptedTurnDetector, checks: int = 1) -> None:
    """Let the loop run until the detector holds ``checks`` checks (a bounded poll)."""
    for _ in range(100):
        if len(detector.heard) >= checks:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the detector was not asked {checks} times")


async def test_audio_keeps_flowing_while_a_check_is_held() -> None:
    detector = ScriptedTurnDetector(0.95, gate=asyncio.Event())
    recognizer = WordsRecognizer()
    speech, time = _in_real_time(detector, recognizer)
    await _frames(speech, time, SPEECH, 800)
    await _frames(speech, time, SILENCE, 200)  # the check starts, and is held
    await _until_asked(detector)
    assert speech.end_of_turn.deciding
    fed = recognizer.streams[0].fed
    await _frames(speech, time, SILENCE, 300)  # the verdict still decides
    await _frames(speech, time, SPEECH, 200)  # the caller goes on
    assert recognizer.streams[0].fed == fed + 500 * 32  # every frame reached the recognizer
    assert speech.speaking and speech.speech_ms == 1500


async def test_a_check_slower_than_the_fixed_silence_decides_nothing() -> None:
    detector = ScriptedTurnDetector(0.95, gate=asyncio.Event())  # saturated: never answers
    speech, time = _in_real_time(detector, WordsRecognizer())
    await _frames(speech, time, SPEECH, 800)
    await _frames(speech, time, SILENCE, 200)
    await _until_asked(detector)
    finished, silent_ms = None, 200
    while finished is None and silent_ms < 1500:
        time.tick()
        finished = await speech.feed(SILENCE)
        silent_ms += 20
    assert finished is not None and finished.ended_by == "silence"
    assert silent_ms == 600  # vad.end_silence_ms, as with no detector
    assert not speech.end_of_turn.deciding


async def test_a_verdict_arriving_after_the_caller_resumed_is_dropped() -> None:
    detector = ScriptedTurnDetector(0.95, 0.95, gate=asyncio.Event())
    speech, time = _in_real_time(detector, WordsRecognizer())
    await _frames(speech, time, SPEECH, 800)
    await _frames(speech, time, SILENCE, 200)
    await _until_asked(detector)  # the check is in the detector, held
    await _frames(speech, time, SILENCE, 100)
    await _frames(speech, time, SPEECH, 100)  # the caller resumes before it answers
    assert detector.gate is not None
    detector.gate.set()
    await speech.end_of_turn.verdict()
    await _frames(speech, time, SPEECH, 400)  # "complete" came too late: the turn goes on
    assert speech.end_of_turn.dropped == 1
    await _frames(speech, time, SILENCE, 200)
    await _until_asked(detector, 2)  # the next pause's own check
    await speech.end_of_turn.verdict()
    time.tick()
    done = await speech.feed(SILENCE)
    assert done is not None and done.ended_by == "complete"


async def test_audio_sent_ahead_of_the_caller_waits_for_the_verdict() -> None:
    """Sent fast, a 1 s pause arrives whole before the check answers: it still decides."""
    detector = ScriptedTurnDetector(0.1, 0.9, gate=asyncio.Event())
    speech = speech_input(detector)  # no real-time clock: every frame arrives ahead
    await say(speech, 800)
    for _ in range(200 // 20):
        assert await speech.feed(SILENCE) is None
    await _until_asked(detector)
    for _ in range(800 // 20):
        assert await speech.feed(SILENCE) is None  # not the fixed silence's 600 ms
    for _ in range(600 // 20):
        assert await speech.feed(SPEECH) is None
    assert detector.gate is not None
    detector.gate.set()
    await speech.end_of_turn.verdict()
    assert await speech.feed(b"") is None  # the held audio: "incomplete", then speech
    assert speech.speech_ms == 2400
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220 and done.ended_by == "complete"
