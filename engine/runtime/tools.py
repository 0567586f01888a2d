"""One session's tool calls: each runs once, bounded by its timeout, and always gets a result.

Runs in the engine process, on the session's event loop. A call's task belongs to this
runner, not to the response that asked for it: barge-in cancels only tools without side
effects; one with side effects runs to its result, which still enters the context (right
after the message that made the call) and the history. Every call gets a result the model
will see, ``cancelled`` and ``timeout`` included, so no context ever holds a call without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from engine.runtime.assistant import AssistantConfig
from engine.runtime.events import ErrorEvent, Event, ToolCall, ToolFinished, ToolStarted, Transfer
from engine.runtime.ports.control_plane import ToolFailed, ToolInvocation
from engine.runtime.ports.history import TurnRecorder
from engine.runtime.ports.providers import ChatMessage, ToolCallRequest
from engine.runtime.tool_config import ToolDeclaration

log = logging.getLogger(__name__)

Outcome = Literal["ok", "error", "rejected", "timeout", "cancelled"]
# The runtime's own bound sits this far past a backend tool's timeout, so the adapter's
# own timeout (which it retries within) normally answers first.
BACKSTOP_SEC = 0.25
MAX_CLIENT_RESULT_CHARS = 64 * 1024  # what a client's tool result may put in the context


class ToolBackend(Protocol):
    """Runs backend-executed tools (the control plane's ``execute_tool``)."""

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call came to: the JSON the model sees and how it ended."""

    call: ToolCallRequest
    executor: str
    outcome: Outcome
    result: Any
    latency_ms: int

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def content(self) -> str:
        """The ``tool`` message's content: the result, or why there is none."""
        if self.ok:
            return json.dumps(self.result, ensure_ascii=False)
        return json.dumps({"error": self.result, "outcome": self.outcome}, ensure_ascii=False)


class _Cancelled(Exception):
    """A tool without side effects stopped by barge-in or session end."""


class ToolRunner:
    """Executes one session's tool calls; ``context`` is the session's message list."""

    def __init__(
        self,
        config: AssistantConfig,
        *,
        call_id: str,
        backend: ToolBackend | None,
        emit: Callable[[Event], Awaitable[None]],
        recorder: TurnRecorder,
        context: list[ChatMessage],
    ) -> None:
        self._config = config
        self._call_id = call_id
        self._backend = backend
        self._emit = emit
        self._recorder = recorder
        self._context = context
        self._tasks: dict[asyncio.Task[ToolResult], ToolCallRequest] = {}  # running
        self._same: dict[str, asyncio.Task[ToolResult]] = {}  # by name + arguments, running
        self._waiting: dict[str, asyncio.Future[tuple[Any, str]]] = {}  # client tools
        self._ids: set[str] = set()  # every tool call id of the session so far

    def unique(self, calls: list[ToolCallRequest]) -> list[ToolCallRequest]:
        """``calls`` with ids unique in the session: the id is half of a call's idempotency
        key, and a model that numbers its calls from 0 each turn must not have a second
        booking answered with the first one's stored result."""
        unique = []
        for call in calls:
            call_id, n = call.id or "call", 1
            while call_id in self._ids:
                n += 1
                call_id = f"{call.id or 'call'}-{n}"
            self._ids.add(call_id)
            unique.append(call if call_id == call.id else replace(call, id=call_id))
        return unique

    def start(
        self, call: ToolCallRequest, message: ChatMessage, response_id: str
    ) -> asyncio.Task[ToolResult]:
        """Run ``call`` (made by ``message``, already in the context); its result follows it."""
        key = f"{call.name}\x00{_canonical(call.arguments_json)}"
        first = self._same.get(key)
        if first is not None and not first.done():
            # The same call again while the first runs: it executes once, both get its result.
            coro = self._share(call, first, message)
        else:
            coro = self._run(call, message, response_id)
        task = asyncio.create_task(coro, name=f"tool {call.name} {call.id}")
        self._tasks[task] = call
        task.add_done_callback(self._forget)
        if first is None or first.done():
            self._same[key] = task
        return task

    def _forget(self, task: asyncio.Task[ToolResult]) -> None:
        call = self._tasks.pop(task, None)
        if call is not None:
            key = f"{call.name}\x00{_canonical(call.arguments_json)}"
            if self._same.get(key) is task:
                del self._same[key]

    def refuse(self, calls: Iterable[ToolCallRequest], message: ChatMessage, why: str) -> None:
        """Calls that will not run (too many rounds): each still gets a ``cancelled`` result."""
        for call in calls:
            tool = self._config.tool(call.name)
            executor = tool.executor if tool is not None else "unknown"
            self._finish(ToolResult(call, executor, "cancelled", why, 0), message, _args(call))

    def interrupted(self, tasks: Iterable[asyncio.Task[ToolResult]]) -> None:
        """Barge-in: stop the calls that may be stopped; the others run to their result."""
        for task in tasks:
            call = self._tasks.get(task)
            if call is None or task.done():
                continue
            tool = self._config.tool(call.name)
            if tool is None or not tool.side_effects:
                self._cancel_waiting(call.id)
                task.cancel()

    @property
    def idle(self) -> bool:
        """No call is running or waiting for a client's result."""
        return not self._tasks and not self._waiting

    async def settle(self) -> None:
        """Wait for every running call (each is bounded by its timeout)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        """Session end: client tools and ones without side effects stop; the rest finish."""
        for call_id in list(self._waiting):
            self._cancel_waiting(call_id)
        self.interrupted(list(self._tasks))
        await self.settle()

    def client_result(self, tool_call_id: str, result_json: str, error: str) -> str | None:
        """A client's answer to a ``tool_call``; None when taken, else why it was not."""
        waiting = self._waiting.get(tool_call_id)
        if waiting is None or waiting.done():
            return (
                f"no tool call {tool_call_id[:64]!r} is waiting for a result"
                " (unknown, already answered or past its deadline); ignored"
            )
        if error:
            waiting.set_result((None, error[:500]))
            return None
        if len(result_json) > MAX_CLIENT_RESULT_CHARS:
            return f"tool_result.result_json is over {MAX_CLIENT_RESULT_CHARS} characters"
        try:
            result = json.loads(result_json)
        except json.JSONDecodeError as exc:
            return f"tool_result.result_json is not JSON ({exc.msg}); send it again"
        waiting.set_result((result, ""))
        return None

    # --- one call -------------------------------------------------------------------

    async def _run(
        self, call: ToolCallRequest, message: ChatMessage, response_id: str
    ) -> ToolResult:
        started = time.monotonic()
        tool = self._config.tool(call.name)
        arguments = _args(call)
        executor = tool.executor if tool is not None else "unknown"
        outcome: Outcome
        if tool is None:
            outcome, value = "rejected", f"there is no tool named {call.name[:64]!r}"
        elif not isinstance(arguments, dict):
            outcome, value = "rejected", "the arguments must be a JSON object"
        elif (problem := tool.argument_errors(arguments)) is not None:
            outcome, value = "rejected", f"invalid arguments: {problem}"
        else:
            try:
                if tool.side_effects and executor != "engine":
                    self._record_started(call, executor, arguments)
                if executor != "client":
                    await self._emit(ToolStarted(response_id, call.id, call.name, executor))
                outcome, value = await self._execute(tool, call, arguments, response_id)
            except (asyncio.CancelledError, _Cancelled):
                outcome, value = "cancelled", "stopped: the caller interrupted"
        latency_ms = int((time.monotonic() - started) * 1000)
        result = ToolResult(call, executor, outcome, value, latency_ms)
        self._finish(result, message, arguments)
        await self._emit(
            ToolFinished(response_id, call.id, call.name, executor, outcome, latency_ms)
        )
        if not result.ok:
            await self._emit(
                ErrorEvent("tool_failed", f"tool {call.name} ended {outcome}", response_id)
            )
        return result

    async def _share(
        self, call: ToolCallRequest, first: asyncio.Task[ToolResult], message: ChatMessage
    ) -> ToolResult:
        try:
            done = await asyncio.shield(first)
        except asyncio.CancelledError:
            tool = self._config.tool(call.name)
            executor = tool.executor if tool is not None else "unknown"
            self._finish(
                ToolResult(call, executor, "cancelled", "stopped", 0), message, _args(call)
            )
            raise
        result = ToolResult(call, done.executor, done.outcome, done.result, done.latency_ms)
        self._finish(result, message, _args(call), duplicate_of=done.call.id)
        return result

    async def _execute(
        self,
        tool: ToolDeclaration,
        call: ToolCallRequest,
        arguments: dict[str, Any],
        response_id: str,
    ) -> tuple[Outcome, Any]:
        timeout_sec = tool.timeout_ms / 1000
        if tool.executor == "engine":
            return await self._builtin(tool, arguments, response_id)
        if tool.executor == "client":
            return await self._client(tool, call, response_id, timeout_sec)
        if self._backend is None:
            return "error", "no backend runs tools here"
        invocation = ToolInvocation(self._call_id, call.id, self._config.id, tool.name, arguments)
        try:
            async with asyncio.timeout(timeout_sec + BACKSTOP_SEC):
                return "ok", await self._backend.execute_tool(invocation, timeout_sec=timeout_sec)
        except TimeoutError:
            return "timeout", f"no result within {tool.timeout_ms} ms"
        except ToolFailed as exc:
            log.warning("tool %s (%s): %s: %s", tool.name, call.id, exc.outcome, exc)
            if exc.outcome == "timeout":
                return "timeout", f"no result within {tool.timeout_ms} ms"
            if exc.outcome == "rejected":
                return "rejected", "the backend refused the call"
            return "error", "the backend could not run the tool"
        except Exception:
            log.exception("tool %s (%s) failed", tool.name, call.id)
            return "error", "the tool failed"

    async def _builtin(
        self, tool: ToolDeclaration, arguments: dict[str, Any], response_id: str
    ) -> tuple[Outcome, Any]:
        if tool.name == "transfer":
            target = str(arguments["target"])
            await self._emit(Transfer(response_id, target))
            return "ok", {"transferred": True, "target": target}
        return "ok", {"ending": True}  # end_call: the response hangs up once spoken

    async def _client(
        self, tool: ToolDeclaration, call: ToolCallRequest, response_id: str, timeout_sec: float
    ) -> tuple[Outcome, Any]:
        waiting: asyncio.Future[tuple[Any, str]] = asyncio.get_running_loop().create_future()
        self._waiting[call.id] = waiting
        try:
            await self._emit(
                ToolCall(response_id, call.id, call.name, call.arguments_json, tool.timeout_ms)
            )
            async with asyncio.timeout(timeout_sec):
                value, error = await waiting
        except TimeoutError:
            return "timeout", f"the client sent no result within {tool.timeout_ms} ms"
        finally:
            self._waiting.pop(call.id, None)
        return ("error", error) if error else ("ok", value)

    def _cancel_waiting(self, call_id: str) -> None:
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_exception(_Cancelled())

    # --- results --------------------------------------------------------------------

    def _finish(
        self, result: ToolResult, message: ChatMessage, arguments: Any, duplicate_of: str = ""
    ) -> None:
        """The result follows its call in the context and becomes a history entry."""
        self._answer(message, ChatMessage("tool", result.content(), tool_call_id=result.call.id))
        now = time.time()
        metadata: dict[str, Any] = {
            "tool_call_id": result.call.id,
            "name": result.call.name,
            "arguments": arguments,
            "executor": result.executor,
            "outcome": result.outcome,
            "result": result.result,
            "latency_ms": result.latency_ms,
        }
        if duplicate_of:
            metadata["duplicate_of"] = duplicate_of
        self._recorder.record(
            "tool",
            f"{result.call.name} -> {result.outcome}",
            started_at=now - result.latency_ms / 1000,
            ended_at=now,
            metadata=metadata,
        )

    def _record_started(self, call: ToolCallRequest, executor: str, arguments: Any) -> None:
        """A tool with side effects leaves a trace before it acts.

        Should the engine die before the result comes back, the call's history still says
        which action was started and with which key; the backend holds its outcome.
        """
        now = time.time()
        self._recorder.record(
            "tool",
            f"{call.name} -> started",
            started_at=now,
            ended_at=now,
            metadata={
                "tool_call_id": call.id,
                "name": call.name,
                "arguments": arguments,
                "executor": executor,
                "outcome": "started",
                "idempotency_key": f"{self._call_id}:{call.id}",
            },
        )

    def _answer(self, call_message: ChatMessage, answer: ChatMessage) -> None:
        # After the call's message and the answers already there; before anything later
        # (a caller's turn that barged in while the tool ran).
        for index, message in enumerate(self._context):
            if message is call_message:
                at = index + 1
                while at < len(self._context) and self._context[at].role == "tool":
                    at += 1
                self._context.insert(at, answer)
                return
        # The call's message was trimmed away (a very long call): its answer goes too.


def _args(call: ToolCallRequest) -> Any:
    try:
        return json.loads(call.arguments_json or "{}")
    except json.JSONDecodeError:
        return call.arguments_json[:500]


def _canonical(arguments_json: str) -> str:
    try:
        return json.dumps(json.loads(arguments_json or "{}"), sort_keys=True)
    except json.JSONDecodeError:
        return arguments_json
