"""Sentence splitting, heard-text estimation and the scripted LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.llm.scripted import ScriptedLanguageModel
from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderConfigError,
    ToolCallRequest,
    ToolSpec,
)
from engine.runtime.text import SentenceSplitter, SpokenSpan, heard_text


def _split(deltas: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for delta in deltas:
        out.extend(splitter.push(delta))
    rest = splitter.flush()
    return [*out, rest] if rest else out


def test_sentences_are_released_as_soon_as_they_end() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("We are open ") == []
    assert splitter.push("from noon. We ") == ["We are open from noon."]
    assert splitter.flush() == "We"


def test_decimal_points_and_abbreviations_inside_words_do_not_split() -> None:
    assert _split(["It costs 3.50 dollars. ", "See you at 7.30 tonight!"]) == [
        "It costs 3.50 dollars.",
        "See you at 7.30 tonight!",
    ]


def test_short_fragments_after_the_first_sentence_are_merged() -> None:
    assert _split(["Hello there. ", "Ok. ", "Then we will see you on Sunday. "]) == [
        "Hello there.",
        "Ok. Then we will see you on Sunday.",
    ]


def test_heard_text_keeps_whole_sentences_and_a_proportional_part_of_the_cut_one() -> None:
    spans = [
        SpokenSpan("One two three four.", 0, 1000),
        SpokenSpan("Five six seven eight.", 1000, 2000),
    ]
    assert heard_text(spans, 0) == ""
    assert heard_text(spans, 1000) == "One two three four."
    assert heard_text(spans, 1500) == "One two three four. Five six"
    assert heard_text(spans, 5000) == "One two three four. Five six seven eight."


async def test_the_scripted_model_answers_by_the_first_matching_rule() -> None:
    model = ScriptedLanguageModel.from_options(
        {
            "rules": [
                {"patterns": [r"\bhours?\b"], "reply": "Noon to ten."},
                {"patterns": "book", "reply": "For how many?"},
            ],
            "fallback": "Pardon?",
        }
    )
    history = [ChatMessage("user", "Book a table"), ChatMessage("assistant", "For how many?")]
    deltas = [d async for d in model.stream_reply([*history, ChatMessage("user", "Your HOURS?")])]
    assert "".join(deltas) == "Noon to ten."
    assert len(deltas) == 3  # streamed word by word
    assert model.reply_for("something else") == "Pardon?"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"rules": [{"patterns": ["("], "reply": "x"}]}, "llm.rules[0].patterns[0]"),
        ({"rules": [{"patterns": ["a"]}]}, "llm.rules[0].reply"),
        ({"rules": [{"patterns": [], "reply": "x"}]}, "llm.rules[0].patterns"),
        ({"rules": "nope"}, "llm.rules"),
        ({"temperature": 1}, "llm.temperature"),
        ({"fallback": ""}, "llm.fallback"),
    ],
)
def test_bad_scripted_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ProviderConfigError) as error:
        ScriptedLanguageModel.from_options(options)
    assert str(error.value).startswith(f"{field}: ")


async def test_an_end_call_rule_calls_the_end_call_tool_after_its_reply() -> None:
    model = ScriptedLanguageModel.from_options(
        {"rules": [{"patterns": ["bye"], "reply": "Goodbye.", "end_call": True}]}
    )
    bye = [d async for d in model.stream_reply([ChatMessage("user", "bye now")])]
    assert bye[:-1] == ["Goodbye."]
    assert isinstance(bye[-1], ToolCallRequest) and bye[-1].name == "end_call"
    other = [d async for d in model.stream_reply([ChatMessage("user", "hello")])]
    assert not any(isinstance(d, ToolCallRequest) for d in other)


def _default_model() -> tuple[ScriptedLanguageModel, list[ToolSpec]]:
    import yaml

    from engine.runtime.assistant import parse_assistant

    default = Path(__file__).resolve().parents[2] / "engine/config/agents/default.yaml"
    document = yaml.safe_load(default.read_text())
    config = parse_assistant(document, expected_id="default")
    return ScriptedLanguageModel.from_options(config.llm.options), [t.spec for t in config.tools]


async def test_the_demo_books_from_the_callers_words_and_speaks_the_result() -> None:
    model, tools = _default_model()
    user = ChatMessage("user", "A table for four tomorrow at seven, please.")
    [booking] = [d async for d in model.stream_reply([user], tools)]
    assert isinstance(booking, ToolCallRequest) and booking.name == "book_table"
    assert json.loads(booking.arguments_json) == {
        "party_size": 4,
        "date": "tomorrow",
        "time": "seven",
    }
    made = ChatMessage("assistant", "", tool_calls=(booking,))
    result = {"booking_id": "B0001", "party_size": 4, "date": "2026-12-04", "time": "19:00"}
    answer = ChatMessage("tool", json.dumps(result), tool_call_id=booking.id)
    reply = "".join([str(d) async for d in model.stream_reply([user, made, answer], tools)])
    assert "table for 4 is booked for tomorrow at seven" in reply and "B0001" in reply
    failed = ChatMessage("tool", '{"error": "x", "outcome": "rejected"}', tool_call_id=booking.id)
    apology = "".join([str(d) async for d in model.stream_reply([user, made, failed], tools)])
    assert apology.startswith("I'm sorry, I could not book that table")


async def test_missing_booking_details_are_asked_for_then_taken_from_earlier_turns() -> None:
    model, tools = _default_model()
    first = ChatMessage("user", "I would like a table for four")
    asked = "".join([str(d) async for d in model.stream_reply([first], tools)])
    assert "on which day and time" in asked
    second = ChatMessage("user", "tomorrow at 7 pm")
    history = [first, ChatMessage("assistant", asked), second]
    [booking] = [d async for d in model.stream_reply(history, tools)]
    assert isinstance(booking, ToolCallRequest)
    assert json.loads(booking.arguments_json) == {
        "party_size": 4,
        "date": "tomorrow",
        "time": "7 pm",
    }


async def test_a_plain_rule_speaks_of_the_latest_tool_result_only_when_there_is_one() -> None:
    model, tools = _default_model()
    question = ChatMessage("user", "what is my booking number")
    without = "".join([str(d) async for d in model.stream_reply([question], tools)])
    assert "booking number is" not in without
    made = ChatMessage("assistant", "", tool_calls=(ToolCallRequest("c", "book_table", "{}"),))
    result = {"booking_id": "B0002", "party_size": 2, "date": "2026-12-04", "time": "19:00"}
    answer = ChatMessage("tool", json.dumps(result), tool_call_id="c")
    said = "".join([str(d) async for d in model.stream_reply([made, answer, question], tools)])
    assert said.startswith("Your booking number is B0002, for 2")


async def test_the_demo_lists_the_bookings() -> None:
    model, tools = _default_model()
    [call] = [
        d
        async for d in model.stream_reply([ChatMessage("user", "what bookings do you have")], tools)
    ]
    assert isinstance(call, ToolCallRequest) and call.name == "list_bookings"
