"""Client-executed tools (tool_call / tool_result) and tool declarations in the assistant."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from engine.runtime import events as ev
from engine.runtime.assistant import AssistantConfigError, parse_assistant
from engine.runtime.context_window import trim_context
from engine.runtime.ports.providers import ChatMessage, ToolCallRequest
from engine.runtime.tool_config import ToolDeclaration
from tests.helpers.tool_fakes import Round, ScriptedRounds, call
from tests.unit.test_tool_semantics import Harness, tool_messages

CRM = ToolDeclaration(
    "crm_lookup",
    "Look the caller up in the client's CRM.",
    {"type": "object", "properties": {"phone": {"type": "string"}}},
    executor="client",
    timeout_ms=5000,
)


async def test_a_client_tool_is_sent_as_tool_call_and_its_result_goes_to_the_model() -> None:
    llm = ScriptedRounds([Round([call("c1", "crm_lookup", '{"phone": "555"}')]), Round(["Hi."])])
    h = Harness(llm, CRM)
    await h.pipeline.user_text("who am I")
    tool_call = await h.wait_for(ev.ToolCall)
    assert (tool_call.tool_call_id, tool_call.name, tool_call.deadline_ms) == (
        "c1",
        "crm_lookup",
        5000,
    )
    assert json.loads(tool_call.arguments_json) == {"phone": "555"}
    assert h.pipeline.tool_result("c1", '{"name": "Ada"}', "") is None
    await h.wait_for(ev.ResponseDone)
    [answer] = tool_messages(llm.seen[1])
    assert json.loads(answer.content) == {"name": "Ada"}
    assert h.recorder.tools()[0]["executor"] == "client"


async def test_unknown_repeated_and_late_results_are_refused_and_change_nothing() -> None:
    llm = ScriptedRounds([Round([call("c1", "crm_lookup")]), Round(["Hi."])])
    h = Harness(llm, replace(CRM, timeout_ms=100))
    assert h.pipeline.tool_result("nope", "{}", "") is not None  # unknown
    await h.pipeline.user_text("who am I")
    await h.wait_for(ev.ToolCall)
    finished = await h.wait_for(ev.ToolFinished)
    assert finished.outcome == "timeout"
    late = h.pipeline.tool_result("c1", '{"name": "Ada"}', "")
    assert late is not None and "waiting" in late
    await h.wait_for(ev.ResponseDone)
    assert [t["outcome"] for t in h.recorder.tools()] == ["timeout"]


async def test_a_repeated_result_is_refused() -> None:
    llm = ScriptedRounds([Round([call("c1", "crm_lookup")]), Round(["Hi."])])
    h = Harness(llm, CRM)
    await h.pipeline.user_text("who am I")
    await h.wait_for(ev.ToolCall)
    assert h.pipeline.tool_result("c1", "not json", "") is not None  # bad: send it again
    assert h.pipeline.tool_result("c1", "", "crm down") is None
    assert h.pipeline.tool_result("c1", "{}", "") is not None  # already answered
    await h.wait_for(ev.ResponseDone)
    [entry] = h.recorder.tools()
    assert entry["outcome"] == "error" and entry["result"] == "crm down"


def _doc(**fields: Any) -> dict[str, Any]:
    return {"id": "a", **fields}


def test_tools_load_with_their_defaults() -> None:
    config = parse_assistant(
        _doc(
            tools=[
                {
                    "name": "book_table",
                    "description": "Book a table.",
                    "parameters": {
                        "type": "object",
                        "properties": {"party_size": {"type": "integer"}},
                        "required": ["party_size"],
                    },
                    "filler": "One moment.",
                },
                {"name": "end_call", "executor": "engine"},
                {"name": "transfer", "executor": "engine"},
            ],
            tool_rounds_max=2,
        )
    )
    book, end, transfer = config.tools
    assert (book.executor, book.timeout_ms, book.filler_after_ms, book.side_effects) == (
        "backend",
        5000,
        1000,
        True,
    )
    assert end.executor == "engine" and transfer.parameters["required"] == ["target"]
    assert config.tool_rounds_max == 2
    assert book.argument_errors({"party_size": 2}) is None
    assert "party_size" in (book.argument_errors({}) or "")


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ("book", "tools"),
        ([{"name": "9bad"}], "tools[0].name"),
        ([{"name": "a"}, {"name": "a"}], "tools[1].name"),
        ([{"name": "a", "executor": "robot"}], "tools[0].executor"),
        ([{"name": "a", "executor": "engine"}], "tools[0].executor"),
        ([{"name": "end_call", "executor": "backend"}], "tools[0].executor"),
        ([{"name": "a", "parameters": {"type": "string"}}], "tools[0].parameters"),
        (
            [{"name": "a", "parameters": {"type": "object", "minProperties": -1}}],
            "tools[0].parameters",
        ),
        (
            [{"name": "a", "parameters": {"type": "object", "$ref": "http://x/y"}}],
            "tools[0].parameters",
        ),
        ([{"name": "a", "timeout_ms": 0}], "tools[0].timeout_ms"),
        ([{"name": "a", "side_effects": "yes"}], "tools[0].side_effects"),
        ([{"name": "a", "colour": "red"}], "tools[0].colour"),
    ],
)
def test_a_bad_tool_declaration_names_its_field(tools: Any, field: str) -> None:
    with pytest.raises(AssistantConfigError) as error:
        parse_assistant(_doc(tools=tools))
    assert error.value.field_path == field


def test_tool_rounds_max_is_bounded() -> None:
    with pytest.raises(AssistantConfigError) as error:
        parse_assistant(_doc(tool_rounds_max=0))
    assert error.value.field_path == "tool_rounds_max"


def test_trimming_the_context_never_leaves_a_result_without_its_call() -> None:
    made = ChatMessage("assistant", "", tool_calls=(ToolCallRequest("c1", "t", "{}"),))
    messages = [
        ChatMessage("system", "s"),
        ChatMessage("user", "u"),
        made,
        ChatMessage("tool", "{}", tool_call_id="c1"),
        ChatMessage("assistant", "a"),
    ]
    trim_context(messages, 3)
    assert [m.role for m in messages] == ["system", "assistant"]
