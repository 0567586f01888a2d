"""Semantic end of turn: the speech input asks a turn detector once a pause (scripted fake)."""

from __future__ import annotations

import asyncio

from engine.runtime.audio_clock import AudioClock
from engine.runtime.ports.turn import TurnDetectorBusy
from tests.helpers.fakes import ScriptedTurnDetector
from tests.helpers.turns import (
    SILENCE,
    RealTime,
    WordsRecognizer,
    feed,
    say,
    silence_until_done,
    speech_input,
)


async def test_a_complete_verdict_ends_the_turn_at_the_next_frame() -> None:
    detector = ScriptedTurnDetector(0.93)
    speech = speech_input(detector)
    await say(speech, 1000)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220  # asked at 200 ms; the verdict applies at the frame after
    assert done.ended_by == "complete"
    assert len(detector.heard) == 1
    assert len(detector.heard[0]) >= 1000 * 32  # the utterance so far, speech included


async def test_an_incomplete_verdict_keeps_listening_past_the_end_silence() -> None:
    detector = ScriptedTurnDetector(0.1, 0.9)
    speech = speech_input(detector)
    await say(speech, 800)
    for _ in range(1000 // 20):  # a 1 s pause mid-sentence: longer than vad.end_silence_ms
        assert await feed(speech, SILENCE) is None
    await say(speech, 600)  # the caller goes on
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220 and done.ended_by == "complete"
    assert len(detector.heard) == 2  # once a pause


async def test_a_turn_judged_incomplete_ends_after_the_longest_silence() -> None:
    detector = ScriptedTurnDetector(0.2)
    speech = speech_input(detector)
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 1500 and done.ended_by == "max_silence"
    assert len(detector.heard) == 1


async def test_a_busy_detector_leaves_the_fixed_end_silence() -> None:
    speech = speech_input(ScriptedTurnDetector(TurnDetectorBusy("full")))
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_a_failing_detector_leaves_the_fixed_end_silence() -> None:
    speech = speech_input(ScriptedTurnDetector())  # nothing scripted: TurnDetectorError
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_without_a_detector_the_end_silence_decides() -> None:
    speech = speech_input(None)
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"


async def test_with_a_detector_the_final_pass_starts_well_before_the_check() -> None:
    recognizer = WordsRecognizer()
    speech = speech_input(ScriptedTurnDetector(0.9), recognizer)
    await say(speech, 800)
    for _ in range(3):  # 60 ms of silence
        assert await feed(speech, SILENCE) is None
    assert recognizer.streams[0].prepared == 1


async def test_without_a_detector_the_final_pass_waits_for_a_longer_silence() -> None:
    recognizer = WordsRecognizer()
    speech = speech_input(None, recognizer)
    await say(speech, 800)
    for _ in range(7):  # 140 ms
        assert await feed(speech, SILENCE) is None
    assert recognizer.streams[0].prepared == 0
    assert await feed(speech, SILENCE) is None  # 160 ms
    assert recognizer.streams[0].prepared == 1


async def test_a_listed_phrase_heard_for_sure_ends_the_turn_without_a_verdict() -> None:
    detector = ScriptedTurnDetector(0.1)  # would have judged it incomplete
    speech = speech_input(detector, WordsRecognizer("can i see the menu", confirmed=True))
    await say(speech, 1000)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 200 and done.ended_by == "phrase"
    assert detector.heard == []  # never asked


async def test_a_phrase_heard_for_sure_while_the_check_waits_withdraws_the_check() -> None:
    detector = ScriptedTurnDetector(0.1, gate=asyncio.Event())  # a saturated detector
    recognizer = WordsRecognizer("can i see the menu", confirmed=None)  # still deciding
    time = RealTime()
    speech = speech_input(detector, recognizer, clock=AudioClock(time))
    await say(speech, 1000, time)
    for _ in range(240 // 20):
        time.tick()
        assert await speech.feed(SILENCE) is None
    assert speech.end_of_turn.checks == 1 and speech.end_of_turn.deciding  # asked at 200 ms
    recognizer.streams[0].confirmed = True
    time.tick()
    done = await speech.feed(SILENCE)
    assert done is not None and done.ended_by == "phrase"
    assert not speech.end_of_turn.deciding  # the check was withdrawn


async def test_a_phrase_not_heard_for_sure_is_left_to_the_detector() -> None:
    detector = ScriptedTurnDetector(0.2)
    speech = speech_input(detector, WordsRecognizer("can i see the menu", confirmed=False))
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 1500 and done.ended_by == "max_silence"


async def test_without_a_detector_a_phrase_heard_for_sure_waits_for_the_end_silence() -> None:
    speech = speech_input(None, WordsRecognizer("can i see the menu", confirmed=True))
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 600 and done.ended_by == "silence"
