"""The tool request's wire form: path segments quoted, key and body from the invocation."""

from __future__ import annotations

from adapters.control_plane.tool_http import tool_body, tool_path
from engine.runtime.ports.control_plane import ToolInvocation


def test_path_segments_are_quoted() -> None:
    invocation = ToolInvocation("a/b c", "t1", "bella", "book-table_2", {})
    assert tool_path(invocation) == "/v1/calls/a%2Fb%20c/tools/book-table_2"


def test_the_body_carries_the_tool_call_id_assistant_and_arguments() -> None:
    invocation = ToolInvocation("c1", "t1", "bella", "book_table", {"party_size": 2})
    assert tool_body(invocation) == {
        "tool_call_id": "t1",
        "assistant_id": "bella",
        "arguments": {"party_size": 2},
    }
    assert invocation.idempotency_key == "c1:t1"
