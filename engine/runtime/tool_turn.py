"""One response's conversation with the model: text, tool rounds, filler, apologies.

Runs in the engine process, inside a response task (engine/runtime/response.py reads the
items it yields). A round is one generation of the model; the calls it made run only once
the generation is over (so a generation cut by barge-in runs none), and their results go
back to the model for the next round, at most ``tool_rounds_max`` rounds a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

from engine.runtime.assistant import AssistantConfig
from engine.runtime.ports.providers import ChatMessage, LanguageModel, ToolCallRequest
from engine.runtime.response import EndCall, ResponseItem, ResponseState, SentenceBreak
from engine.runtime.tools import ToolResult, ToolRunner

TOOL_FAILED_APOLOGY = "I'm sorry, I could not do that just now. Can I help with anything else?"
TOO_MANY_ROUNDS_APOLOGY = "I'm sorry, I could not finish that request. Could you try again?"


class ToolTurn:
    """The items of one response; the context is the session's, read and extended here."""

    def __init__(
        self,
        config: AssistantConfig,
        llm: LanguageModel,
        tools: ToolRunner,
        context: list[ChatMessage],
        state: ResponseState,
        *,
        first_round: AsyncGenerator[str | ToolCallRequest, None] | None = None,
    ) -> None:
        """``first_round``: the first generation, already begun (an early reply); else
        the model is asked."""
        self._first_round = first_round
        self._config = config
        self._llm = llm
        self._tools = tools
        self._context = context
        self._state = state
        self._specs = [tool.spec for tool in config.tools]
        self._filler_spoken = False
        self._failed = False

    async def items(self) -> AsyncGenerator[ResponseItem, None]:
        """Text deltas, sentence breaks before a wait, and EndCall after an end_call."""
        # Calls still running from an interrupted reply answer first: the model must see
        # their results (and never a call without one) before it answers this turn.
        await self._tools.settle()
        for round_number in range(self._config.tool_rounds_max + 1):
            text, calls = "", []
            stream = self._first_round or self._llm.stream_reply(list(self._context), self._specs)
            self._first_round = None
            async with contextlib.aclosing(stream) as model:
                async for piece in model:
                    if isinstance(piece, ToolCallRequest):
                        calls.append(piece)  # complete, but run only once the round is over
                    elif piece:
                        text += piece
                        yield piece
            if not calls:
                if self._failed and not text.strip():
                    yield self._spaced(TOOL_FAILED_APOLOGY)
                return
            yield SentenceBreak()
            calls = self._tools.unique(calls)
            message = ChatMessage("assistant", text, tool_calls=tuple(calls))
            self._context.append(message)
            self._state.text_in_context = self._state.text
            if round_number == self._config.tool_rounds_max:
                self._tools.refuse(calls, message, "not run: too many tool rounds in this turn")
                yield self._spaced(TOO_MANY_ROUNDS_APOLOGY)
                return
            tasks = [self._tools.start(call, message, self._state.response_id) for call in calls]
            results: list[ToolResult] = []
            # aclosing: cut while the filler is handed out, the wait decides at once which
            # tools stop, not whenever the generator is collected.
            async with contextlib.aclosing(self._wait(tasks, calls, results)) as waiting:
                async for item in waiting:
                    yield item
            if any(r.call.name == "end_call" and r.ok for r in results):
                yield EndCall("the assistant ended the call")
            self._failed = self._failed or not all(r.ok for r in results)
            if all(self._is_builtin(r.call) for r in results):
                return  # end_call / transfer need no answer from the model

    async def _wait(
        self,
        tasks: list[asyncio.Task[ToolResult]],
        calls: list[ToolCallRequest],
        results: list[ToolResult],
    ) -> AsyncGenerator[ResponseItem, None]:
        """Wait for the round's calls; say the filler once if they are slow."""
        started = time.monotonic()
        try:
            filler, after_sec = self._filler(calls)
            if filler and not self._filler_spoken:
                _, running = await asyncio.wait(tasks, timeout=after_sec)
                if running:
                    self._filler_spoken = True
                    yield self._spaced(filler)
                    yield SentenceBreak()
            await asyncio.wait(tasks)  # never cancels them: barge-in decides, below
        except BaseException:
            # Barge-in (or session end): tools without side effects stop; the others run
            # on and their results still reach the context and the history.
            self._tools.interrupted(tasks)
            raise
        finally:
            waited = int((time.monotonic() - started) * 1000)
            self._state.tool_ms = (self._state.tool_ms or 0) + waited
        for task in tasks:
            if not task.cancelled() and task.exception() is None:
                results.append(task.result())

    def _filler(self, calls: list[ToolCallRequest]) -> tuple[str, float]:
        for call in calls:
            tool = self._config.tool(call.name)
            if tool is not None and tool.filler:
                return tool.filler, tool.filler_after_ms / 1000
        return "", 0.0

    def _spaced(self, line: str) -> str:
        """``line`` as the next words of the reply (a space after what was said before)."""
        said = self._state.text
        return " " + line if said and not said[-1].isspace() else line

    def _is_builtin(self, call: ToolCallRequest) -> bool:
        tool = self._config.tool(call.name)
        return tool is not None and tool.executor == "engine"


def not_yet_in_context(heard: str, in_context: str) -> str:
    """What the context lacks of a reply: its text before tool calls is there already."""
    done = " ".join(in_context.split())
    if not done:
        return heard
    flat = " ".join(heard.split())
    return flat[len(done) :].strip() if flat.startswith(done) else ""
