"""A "complete" verdict on words that cannot end a sentence is overruled (scripted fakes)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.runtime.assistant import AssistantConfigError, parse_assistant
from engine.runtime.audio_clock import AudioClock
from engine.runtime.end_of_turn import ends_unfinished
from tests.helpers.fakes import ScriptedTurnDetector
from tests.helpers.turns import (
    SILENCE,
    SPEECH,
    TURN,
    RealTime,
    WordsRecognizer,
    feed,
    say,
    silence_until_done,
    speech_input,
)


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("i would like to book a table for", True),
        ("do you have any", True),
        ("Could I?", True),
        ("how late is the kitchen open", False),
        ("i need to cancel my booking for friday", False),
        ("", False),
    ],
)
def test_a_sentence_cannot_end_in_a_preposition_article_or_auxiliary(
    text: str, unfinished: bool
) -> None:
    assert ends_unfinished(text, frozenset(TURN.unfinished_words)) is unfinished


async def test_a_complete_verdict_on_a_dangling_word_listens_up_to_the_longest_silence() -> None:
    detector = ScriptedTurnDetector(0.97)
    speech = speech_input(detector, WordsRecognizer("i would like to book a table for"))
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 1500 and done.ended_by == "max_silence"
    assert speech.end_of_turn.overruled == 1


async def test_the_caller_going_on_after_a_dangling_word_is_one_turn() -> None:
    detector = ScriptedTurnDetector(0.97, 0.97)
    recognizer = WordsRecognizer("do you have any")
    speech = speech_input(detector, recognizer)
    await say(speech, 800)
    for _ in range(1000 // 20):  # the pause: judged complete, overruled by "any"
        assert await feed(speech, SILENCE) is None
    recognizer.streams[0].early = "do you have any vegetarian dishes"
    await say(speech, 600)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220 and done.ended_by == "complete"


async def test_a_likely_other_reading_of_the_last_word_that_dangles_listens_on() -> None:
    """Whisper added a word at the pause ("for it"), but found the sentence ending in
    "for" likely too: that reading cannot end a sentence, so the turn is not over."""
    recognizer = WordsRecognizer(
        "i would like to book a table for it", ("i would like to book a table for",)
    )
    speech = speech_input(ScriptedTurnDetector(0.97), recognizer)
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 1500 and done.ended_by == "max_silence"
    assert speech.end_of_turn.overruled == 1


async def test_other_readings_that_can_end_a_sentence_leave_the_verdict_standing() -> None:
    recognizer = WordsRecognizer("how late is the kitchen open", ("how late is the kitchen",))
    speech = speech_input(ScriptedTurnDetector(0.97), recognizer)
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220 and done.ended_by == "complete"


async def test_a_complete_verdict_waits_for_the_early_final_it_reads() -> None:
    recognizer = WordsRecognizer(None)  # the early final is still running
    time = RealTime()
    speech = speech_input(ScriptedTurnDetector(0.97), recognizer, clock=AudioClock(now=time))
    await say(speech, 800, time)
    for _ in range(300 // 20):
        assert await feed(speech, SILENCE, time) is None
    recognizer.streams[0].early = "how late is the kitchen open"
    done = await feed(speech, SILENCE, time)
    assert done is not None and done.ended_by == "complete"


async def test_an_early_final_still_running_past_the_fixed_silence_is_waited_for() -> None:
    """The final transcript waits for that same pass: reading its words costs no time."""
    recognizer = WordsRecognizer(None)
    time = RealTime()
    speech = speech_input(ScriptedTurnDetector(0.97), recognizer, clock=AudioClock(now=time))
    await say(speech, 800, time)
    for _ in range(900 // 20):  # past vad.end_silence_ms (600)
        assert await feed(speech, SILENCE, time) is None
    recognizer.streams[0].early = "do you have any"
    for _ in range(300 // 20):  # "complete", overruled: listening on
        assert await feed(speech, SILENCE, time) is None
    assert speech.end_of_turn.overruled == 1


async def test_an_early_final_never_ready_is_waited_for_up_to_the_longest_silence() -> None:
    time = RealTime()
    speech = speech_input(
        ScriptedTurnDetector(0.97), WordsRecognizer(None), clock=AudioClock(now=time)
    )
    await say(speech, 800, time)
    silent_ms, done = await silence_until_done(speech, time=time)
    assert silent_ms == 1500 and done.ended_by == "complete"  # turn.max_silence_ms


async def test_an_assistant_without_unfinished_words_trusts_the_detector() -> None:
    turn = replace(TURN, unfinished_words=())
    recognizer = WordsRecognizer("i would like to book a table for")
    speech = speech_input(ScriptedTurnDetector(0.97), recognizer, turn=turn)
    await say(speech, 800)
    silent_ms, done = await silence_until_done(speech)
    assert silent_ms == 220 and done.ended_by == "complete"


def test_an_assistant_names_its_own_unfinished_words() -> None:
    turn = parse_assistant({"id": "a", "turn": {"unfinished_words": ["For", "und"]}}).turn
    assert turn.unfinished_words == ("for", "und")
    assert "for" in parse_assistant({"id": "a"}).turn.unfinished_words  # the default list
    with pytest.raises(AssistantConfigError, match=r"turn\.unfinished_words"):
        parse_assistant({"id": "a", "turn": {"unfinished_words": "for"}})


async def test_audio_sent_ahead_ending_in_a_dangling_word_is_judged_as_in_real_time() -> None:
    """Sent fast then half-closed: the end of input waits for the verdict and the words."""
    recognizer = WordsRecognizer(None)
    speech = speech_input(ScriptedTurnDetector(0.97, 0.97), recognizer)
    await say(speech, 800)
    for _ in range(1000 // 20):  # no real-time clock: held while the decision is pending
        assert await feed(speech, SILENCE) is None
    for _ in range(600 // 20):
        assert await feed(speech, SPEECH) is None
    recognizer.streams[0].early = "i would like to book a table for"
    assert await speech.end_turn() is not None  # one turn: the pause did not end it
    assert speech.end_of_turn.overruled == 1
