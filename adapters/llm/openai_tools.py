"""The OpenAI chat-completions wire format of tools: offering them, messages that carry
calls and results, and streamed ``tool_calls`` fragments put back together.

Used by adapters/llm/openai_compatible.py, in the engine process.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
)

_NAME = "openai-compatible LLM"
MAX_ARGUMENT_CHARS = 64 * 1024


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    """A tool as ``tools[]`` offers it."""
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def message_json(message: ChatMessage) -> dict[str, Any]:
    """One ``messages[]`` entry: assistant messages carry their ``tool_calls``, and a
    ``tool`` message names the call it answers."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in message.tool_calls
            ],
        }
    if message.confidence is not None:  # a spoken turn: how sure recognition was of it
        heard = f"[heard by speech recognition, confidence {message.confidence:.2f}]"
        return {"role": message.role, "content": f"{message.content}\n{heard}"}
    return {"role": message.role, "content": message.content}


@dataclass(slots=True)
class _Partial:
    id: str = ""
    name: str = ""
    arguments: str = ""


class ToolCallAssembler:
    """Accumulates ``delta.tool_calls`` fragments by ``index``: the first fragment of a
    call carries its id and name, later ones pieces of its arguments (several calls may
    be streamed in one reply). A new id at an index already in use starts another call:
    Ollama streams a parallel batch all at index 0, told apart by id only."""

    def __init__(self) -> None:
        self._calls: list[_Partial] = []
        self._slot_of: dict[int, int] = {}  # the stream's index -> its call now

    def add(self, fragments: list[Any]) -> None:
        """Take one chunk's fragments."""
        for fragment in fragments:
            if not isinstance(fragment, dict):
                raise ProviderError(f"{_NAME}: a tool_calls fragment is not an object")
            partial = self._partial(fragment)
            function = fragment.get("function") or {}
            if not isinstance(function, dict):
                raise ProviderError(f"{_NAME}: a tool_calls fragment's function is not an object")
            if isinstance(function.get("name"), str) and function["name"] and not partial.name:
                partial.name = function["name"]
            if isinstance(function.get("arguments"), str):
                partial.arguments += function["arguments"]
                if len(partial.arguments) > MAX_ARGUMENT_CHARS:
                    raise ProviderError(f"{_NAME}: a tool call's arguments are too long")

    def _partial(self, fragment: dict[str, Any]) -> _Partial:
        index = fragment.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64:
            raise ProviderError(f"{_NAME}: a tool_calls fragment has no valid index")
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) else ""
        slot = self._slot_of.get(index)
        if slot is None or (call_id and self._calls[slot].id and call_id != self._calls[slot].id):
            if len(self._calls) >= 64:
                raise ProviderError(f"{_NAME}: too many tool calls in one reply")
            self._calls.append(_Partial())
            slot = self._slot_of[index] = len(self._calls) - 1
        partial = self._calls[slot]
        if call_id and not partial.id:
            partial.id = call_id
        return partial

    def finish(self) -> list[ToolCallRequest]:
        """The complete calls, in the order they began (and forget them)."""
        calls = []
        for partial in self._calls:
            if not partial.name:
                raise ProviderError(f"{_NAME}: a streamed tool call has no name")
            # A server that sends no id (some local ones) still gets a unique one: the id
            # is half of the call's idempotency key.
            call_id = partial.id or f"call_{uuid.uuid4().hex[:24]}"
            calls.append(ToolCallRequest(call_id, partial.name, partial.arguments or "{}"))
        self._calls.clear()
        self._slot_of.clear()
        return calls
