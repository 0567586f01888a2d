"""An LLM with a fixed reply, streamed word by word with an optional delay per token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderConfigError,
    ToolCallRequest,
    ToolSpec,
    reject_unknown_options,
)

__all__ = ["FixedReplyLanguageModel"]

_OPTION_KEYS = frozenset({"reply", "token_delay_ms"})
DEFAULT_REPLY = "Sure."


class FixedReplyLanguageModel:
    """LanguageModel port: always the same reply; ``token_delay_ms`` before each word."""

    def __init__(self, reply: str = DEFAULT_REPLY, token_delay_ms: float = 0.0) -> None:
        self._tokens = tuple(re.findall(r"\S+\s*", reply))
        if not self._tokens:
            raise ProviderConfigError("llm.reply: must be a non-empty string")
        self._delay = token_delay_ms / 1000.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FixedReplyLanguageModel:
        """Build from an assistant's ``llm:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("llm", "testkit", options, _OPTION_KEYS)
        reply = options.get("reply", DEFAULT_REPLY)
        if not isinstance(reply, str) or not reply.strip():
            raise ProviderConfigError("llm.reply: must be a non-empty string")
        delay = options.get("token_delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 10000:
            raise ProviderConfigError("llm.token_delay_ms: must be a number from 0 to 10000")
        return cls(reply.strip(), float(delay))

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """Yield the reply a word at a time, sleeping ``token_delay_ms`` before each."""
        for token in self._tokens:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield token
