"""The conversation context is bounded (ENGINE_MAX_CONTEXT_MESSAGES): a long call keeps
its system prompt and its most recent messages, so memory and prompt size stay flat."""

from __future__ import annotations

from engine.runtime.ports.providers import ChatMessage


def trim_context(messages: list[ChatMessage], max_messages: int) -> None:
    """Drop the oldest non-system messages until at most ``max_messages`` remain."""
    excess = len(messages) - max_messages
    if excess <= 0:
        return
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    keep = max(0, max_messages - len(system))
    kept = rest[-keep:] if keep else []
    # A tool result whose call was trimmed away would be an answer to nothing.
    while kept and kept[0].role == "tool":
        kept.pop(0)
    messages[:] = system + kept
