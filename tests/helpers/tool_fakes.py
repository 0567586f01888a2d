"""Fakes for tool-calling tests: a model that follows a script of rounds, and a backend
whose tools answer when a test lets them (each implements the same Protocol as the real one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.ports.control_plane import ToolFailed, ToolInvocation
from engine.runtime.ports.providers import ChatMessage, ToolCallRequest, ToolSpec

Item = str | ToolCallRequest


@dataclass
class Round:
    """One generation: its items, optionally stalling (until ``release``) after ``stall_after``."""

    items: list[Item]
    stall_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedRounds:
    """A LanguageModel that plays ``rounds`` in order (then repeats ``then``)."""

    def __init__(self, rounds: list[Round], then: list[Item] | None = None) -> None:
        self.rounds = list(rounds)
        self.then = then if then is not None else ["Okay."]
        self.seen: list[list[ChatMessage]] = []
        self.offered: list[list[str]] = []
        self.stalled = asyncio.Event()

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        self.seen.append(list(messages))
        self.offered.append([t.name for t in tools])
        script = self.rounds.pop(0) if self.rounds else Round(list(self.then))
        for index, item in enumerate(script.items):
            if script.stall_after is not None and index == script.stall_after:
                self.stalled.set()
                await script.release.wait()
            yield item
            await asyncio.sleep(0)


def call(call_id: str, name: str, arguments: str = "{}") -> ToolCallRequest:
    return ToolCallRequest(call_id, name, arguments)


class GatedBackend:
    """Runs tools: each answers ``results[name]`` (raising it if an exception) once
    ``gates[name]`` is set (no gate: at once). Counts executions per idempotency key."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.invocations: list[ToolInvocation] = []
        self.started = asyncio.Event()
        self.cancelled: list[str] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        self.invocations.append(invocation)
        self.started.set()
        gate = self.gates.get(invocation.name)
        try:
            if gate is not None:
                await gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(invocation.tool_call_id)
            raise
        result = self.results.get(invocation.name, {"ok": True})
        if isinstance(result, BaseException):
            raise result
        return result

    def runs_of(self, name: str) -> int:
        return sum(1 for i in self.invocations if i.name == name)


def rejected(message: str = "no") -> ToolFailed:
    return ToolFailed(message, "rejected")
