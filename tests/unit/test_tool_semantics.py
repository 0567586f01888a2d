"""Tool calls in a conversation: what runs, when, how often, and what the model then sees.

DuplexPipeline with a scripted fake model and a backend whose tools answer when the test
lets them; no sleeps: every wait is on an event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from engine.runtime import events as ev
from engine.runtime.assistant import AssistantConfig
from engine.runtime.pipeline import DuplexPipeline
from engine.runtime.ports.providers import ChatMessage
from engine.runtime.tool_config import ToolDeclaration
from engine.runtime.tool_turn import TOO_MANY_ROUNDS_APOLOGY, TOOL_FAILED_APOLOGY
from tests.helpers.tool_fakes import GatedBackend, Round, ScriptedRounds, call

BOOK = ToolDeclaration(
    "book_table",
    "Book a table.",
    {
        "type": "object",
        "properties": {"party_size": {"type": "integer", "minimum": 1}},
        "required": ["party_size"],
    },
)
LOOKUP = ToolDeclaration("lookup", "Read-only.", side_effects=False)
ARGS = '{"party_size": 4}'


class NoSpeech:
    line = "LINEAR16/16000"

    def vad(self) -> Any:
        raise AssertionError("text-only test")

    def recognizer(self) -> Any:
        raise AssertionError("text-only test")


class Recorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, role: str, text: str, **fields: Any) -> None:
        self.entries.append({"role": role, "text": text, **fields})

    def tools(self) -> list[dict[str, Any]]:
        """The tool entries that carry a result."""
        return [m for m in self.all_tools() if m["outcome"] != "started"]

    def all_tools(self) -> list[dict[str, Any]]:
        return [e["metadata"] for e in self.entries if e["role"] == "tool"]


class Harness:
    def __init__(self, llm: ScriptedRounds, *tools: ToolDeclaration, **config: Any) -> None:
        self.llm = llm
        self.backend = GatedBackend()
        self.recorder = Recorder()
        self.events: list[ev.Event] = []
        self._arrived: asyncio.Queue[ev.Event] = asyncio.Queue()
        base = AssistantConfig(id="t", name="t", tools=tools)
        self.pipeline = DuplexPipeline(
            replace(base, **config),
            llm=llm,
            synthesizer=None,
            speech=NoSpeech(),
            recorder=self.recorder,
            emit=self._emit,
            call_id="call-1",
            tool_backend=self.backend,
        )

    async def _emit(self, event: ev.Event) -> None:
        self.events.append(event)
        self._arrived.put_nowait(event)

    async def wait_for(self, kind: type[Any], **match: Any) -> Any:
        async with asyncio.timeout(10):
            while True:
                event = await self._arrived.get()
                if isinstance(event, kind) and all(
                    getattr(event, k) == v for k, v in match.items()
                ):
                    return event

    async def turn(self, text: str) -> ev.ResponseDone:
        await self.pipeline.user_text(text)
        done: ev.ResponseDone = await self.wait_for(ev.ResponseDone)
        return done

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def tool_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    return [m for m in messages if m.role == "tool"]


async def test_a_call_runs_once_the_model_finished_emitting_it_and_its_result_is_answered() -> None:
    llm = ScriptedRounds(
        [Round(["Let me book that. ", call("c1", "book_table", ARGS)]), Round(["Booked."])]
    )
    h = Harness(llm, BOOK)
    h.backend.results["book_table"] = {"booking_id": "B0001"}
    done = await h.turn("a table for four")
    assert done.text == "Let me book that. Booked."
    [invocation] = h.backend.invocations
    assert invocation.idempotency_key == "call-1:c1" and invocation.arguments == {"party_size": 4}
    second = llm.seen[1]
    assert second[-2].tool_calls and second[-2].tool_calls[0].id == "c1"
    assert second[-1] == ChatMessage("tool", '{"booking_id": "B0001"}', tool_call_id="c1")
    assert llm.offered[0] == ["book_table"]


async def test_a_tool_with_side_effects_is_in_the_history_before_it_acts() -> None:
    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS)]), Round(["Booked."])])
    h = Harness(llm, BOOK)
    gate = h.backend.gate("book_table")
    h.backend.results["book_table"] = {"booking_id": "B0001"}
    await h.pipeline.user_text("a table for four")
    await h.backend.started.wait()
    [started] = h.recorder.all_tools()  # the backend is acting; no result yet
    assert started["outcome"] == "started" and started["idempotency_key"] == "call-1:c1"
    gate.set()
    await h.wait_for(ev.ResponseDone, status=ev.ResponseStatus.COMPLETED)
    assert [m["outcome"] for m in h.recorder.all_tools()] == ["started", "ok"]


async def test_a_read_only_tool_leaves_only_its_result_in_the_history() -> None:
    llm = ScriptedRounds([Round([call("c1", "lookup", "{}")]), Round(["Found."])])
    h = Harness(llm, LOOKUP)
    await h.turn("look it up")
    assert [m["outcome"] for m in h.recorder.all_tools()] == ["ok"]


async def test_a_generation_interrupted_before_it_finished_executes_nothing() -> None:
    # The call is complete, but the generation goes on (more text) when the caller cuts in.
    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS), "and more"], stall_after=1)])
    h = Harness(llm, BOOK)
    await h.pipeline.user_text("book it")
    await llm.stalled.wait()
    await h.pipeline.interrupt()
    await h.pipeline.close()
    assert h.backend.invocations == []
    assert h.recorder.all_tools() == [] and not h.of(ev.ToolStarted)


async def test_barge_in_does_not_cancel_a_started_tool_with_side_effects() -> None:
    llm = ScriptedRounds(
        [Round(["One moment. ", call("c1", "book_table", ARGS)]), Round(["You have B0001."])]
    )
    h = Harness(llm, BOOK)
    gate = h.backend.gate("book_table")
    h.backend.results["book_table"] = {"booking_id": "B0001"}
    await h.pipeline.user_text("a table for four")
    await h.backend.started.wait()
    await h.pipeline.interrupt()  # the caller talks over the tool
    await h.pipeline.user_text("did it work?")
    gate.set()
    done = await h.wait_for(ev.ResponseDone, status=ev.ResponseStatus.COMPLETED)
    assert done.text == "You have B0001."
    assert h.backend.runs_of("book_table") == 1 and h.backend.cancelled == []
    [entry] = h.recorder.tools()
    assert entry["outcome"] == "ok" and entry["result"] == {"booking_id": "B0001"}
    # The next reply saw the result, right after the call and before the new turn.
    roles = [m.role for m in llm.seen[1]]
    assert roles[-3:] == ["assistant", "tool", "user"]
    assert json.loads(llm.seen[1][-2].content) == {"booking_id": "B0001"}


async def test_a_tool_without_side_effects_is_cancelled_by_barge_in_with_a_cancelled_result() -> (
    None
):
    llm = ScriptedRounds([Round([call("c1", "lookup")]), Round(["Fine."])])
    h = Harness(llm, LOOKUP)
    h.backend.gate("lookup")  # never answers
    await h.pipeline.user_text("look it up")
    await h.backend.started.wait()
    await h.pipeline.interrupt()
    finished = await h.wait_for(ev.ToolFinished)
    assert finished.outcome == "cancelled" and h.backend.cancelled == ["c1"]
    await h.pipeline.user_text("never mind")
    await h.wait_for(ev.ResponseDone, status=ev.ResponseStatus.COMPLETED)
    [answer] = tool_messages(llm.seen[1])
    assert json.loads(answer.content)["outcome"] == "cancelled"
    assert h.recorder.tools()[0]["outcome"] == "cancelled"


async def test_a_timed_out_tool_gets_a_timeout_result_an_error_and_a_spoken_apology() -> None:
    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS)]), Round([])], then=["Sure."])
    h = Harness(llm, replace(BOOK, timeout_ms=100))
    h.backend.gate("book_table")  # never answers
    done = await h.turn("book it")
    assert done.text == TOOL_FAILED_APOLOGY
    [answer] = tool_messages(llm.seen[1])
    assert json.loads(answer.content)["outcome"] == "timeout"
    error = h.of(ev.ErrorEvent)[0]
    assert error.code == "tool_failed" and error.response_id == done.response_id
    assert h.recorder.tools()[0]["outcome"] == "timeout"
    assert (await h.turn("hello")).text == "Sure."  # the call goes on


async def test_a_failed_tool_gets_an_error_result_and_the_model_speaks_its_answer() -> None:
    from tests.helpers.tool_fakes import rejected

    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS)]), Round(["That day is full."])])
    h = Harness(llm, BOOK)
    h.backend.results["book_table"] = rejected()
    done = await h.turn("book it")
    assert done.text == "That day is full."
    assert h.recorder.tools()[0]["outcome"] == "rejected"
    assert [e.code for e in h.of(ev.ErrorEvent)] == ["tool_failed"]


async def test_identical_calls_while_the_first_is_in_flight_execute_once() -> None:
    same = [call("c1", "book_table", ARGS), call("c2", "book_table", '{"party_size":4}')]
    llm = ScriptedRounds([Round(same), Round(["Done."])])
    h = Harness(llm, BOOK)
    await h.turn("book it twice")
    assert h.backend.runs_of("book_table") == 1
    answers = tool_messages(llm.seen[1])
    assert [m.tool_call_id for m in answers] == ["c1", "c2"]  # each call has its result
    assert answers[0].content == answers[1].content
    assert h.recorder.tools()[1]["duplicate_of"] == "c1"


async def test_at_most_n_tool_rounds_per_turn_then_a_spoken_apology() -> None:
    rounds = [Round([call(f"c{i}", "lookup")]) for i in range(3)]  # one more than allowed
    llm = ScriptedRounds(rounds)
    h = Harness(llm, LOOKUP, tool_rounds_max=2)
    done = await h.turn("loop")
    assert h.backend.runs_of("lookup") == 2
    assert done.text.strip() == TOO_MANY_ROUNDS_APOLOGY
    assert [t["outcome"] for t in h.recorder.tools()] == ["ok", "ok", "cancelled"]
    await h.turn("again")  # the refused call has its result: the next turn is consistent
    last = llm.seen[-1]
    assert [m.tool_call_id for m in tool_messages(last)] == ["c0", "c1", "c2"]


async def test_a_slow_tool_gets_its_filler_spoken_once_then_the_answer() -> None:
    slow = replace(BOOK, filler="One moment please.", filler_after_ms=0)
    llm = ScriptedRounds(
        [
            Round([call("c1", "book_table", ARGS)]),
            Round([call("c2", "book_table", '{"party_size": 2}')]),
            Round(["Both are booked."]),
        ]
    )
    h = Harness(llm, slow)
    gate = h.backend.gate("book_table")
    await h.pipeline.user_text("book two tables")
    await h.wait_for(ev.AssistantText, delta="One moment please.")
    gate.set()
    done = await h.wait_for(ev.ResponseDone)
    assert done.text.count("One moment please.") == 1
    assert done.text.endswith("Both are booked.")
    metrics = await h.wait_for(ev.TurnMetrics)
    assert metrics.tool_ms is not None


async def test_arguments_that_break_the_schema_are_rejected_without_running() -> None:
    llm = ScriptedRounds([Round([call("c1", "book_table", '{"party_size": "many"}')])])
    h = Harness(llm, BOOK)
    await h.turn("book it")
    assert h.backend.invocations == []
    [entry] = h.recorder.tools()
    assert entry["outcome"] == "rejected" and "party_size" in entry["result"]


async def test_an_unknown_tool_is_rejected() -> None:
    llm = ScriptedRounds([Round([call("c1", "launch_rockets")])])
    h = Harness(llm, BOOK)
    await h.turn("go")
    assert h.recorder.tools()[0]["outcome"] == "rejected" and h.backend.invocations == []


async def test_transfer_emits_an_event_with_its_target_and_needs_no_second_round() -> None:
    from engine.runtime.tool_config import builtin_tool

    llm = ScriptedRounds(
        [Round(["Transferring you. ", call("c1", "transfer", '{"target": "desk"}')])]
    )
    h = Harness(llm, builtin_tool("transfer"))
    done = await h.turn("a person please")
    [transfer] = h.of(ev.Transfer)
    assert transfer.target == "desk" and transfer.response_id == done.response_id
    assert len(llm.seen) == 1


async def test_end_call_hangs_up_after_the_reply() -> None:
    hung_up: list[float] = []
    llm = ScriptedRounds([Round(["Goodbye now. ", call("c1", "end_call")])])
    h = Harness(llm)  # end_call is built in, declared or not
    h.pipeline._on_end_call = lambda end, left: hung_up.append(left)
    done = await h.turn("bye")
    assert done.text.strip() == "Goodbye now." and len(hung_up) == 1
    assert h.recorder.tools()[0]["name"] == "end_call"


async def test_history_entries_carry_the_call_and_its_result() -> None:
    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS)]), Round(["Booked."])])
    h = Harness(llm, BOOK)
    h.backend.results["book_table"] = {"booking_id": "B0007"}
    await h.turn("book")
    roles = [e["role"] for e in h.recorder.entries]
    assert roles == ["user", "tool", "tool", "assistant"]
    assert h.recorder.entries[1]["text"] == "book_table -> started"
    entry = h.recorder.entries[2]
    assert entry["text"] == "book_table -> ok"
    meta = entry["metadata"]
    assert {k: meta[k] for k in ("tool_call_id", "name", "arguments", "executor", "outcome")} == {
        "tool_call_id": "c1",
        "name": "book_table",
        "arguments": {"party_size": 4},
        "executor": "backend",
        "outcome": "ok",
    }
    assert meta["result"] == {"booking_id": "B0007"} and isinstance(meta["latency_ms"], int)
    started, finished = h.of(ev.ToolStarted)[0], h.of(ev.ToolFinished)[0]
    assert started.tool_call_id == finished.tool_call_id == "c1"


async def test_session_end_lets_a_started_tool_with_side_effects_finish_and_records_it() -> None:
    llm = ScriptedRounds([Round([call("c1", "book_table", ARGS)])])
    h = Harness(llm, BOOK)
    gate = h.backend.gate("book_table")
    await h.pipeline.user_text("book it")
    await h.backend.started.wait()
    closing = asyncio.create_task(h.pipeline.close())  # the caller hangs up
    await h.wait_for(ev.ResponseDone)
    assert not closing.done()  # still waiting for the booking's result
    gate.set()
    await closing
    assert [t["outcome"] for t in h.recorder.tools()] == ["ok"]
    assert h.backend.cancelled == []


async def test_session_end_cancels_a_client_tool_with_an_explicit_result() -> None:
    crm = ToolDeclaration("crm", executor="client", side_effects=False)
    llm = ScriptedRounds([Round([call("c1", "crm")])])
    h = Harness(llm, crm)
    await h.pipeline.user_text("who am I")
    await h.wait_for(ev.ToolCall)
    await h.pipeline.close()
    assert [t["outcome"] for t in h.recorder.tools()] == ["cancelled"]
    assert h.pipeline.tool_result("c1", "{}", "") is not None  # too late now


async def test_a_tool_call_id_used_again_in_the_call_gets_a_key_of_its_own() -> None:
    # A model that numbers its calls from 0 every turn: two bookings, two keys.
    llm = ScriptedRounds(
        [
            Round([call("call_0", "book_table", ARGS)]),
            Round(["Booked."]),
            Round([call("call_0", "book_table", '{"party_size": 2}')]),
            Round(["Booked again."]),
        ]
    )
    h = Harness(llm, BOOK)
    await h.turn("book for four")
    await h.turn("and one for two")
    keys = [i.idempotency_key for i in h.backend.invocations]
    assert keys == ["call-1:call_0", "call-1:call_0-2"]
    answers = tool_messages(llm.seen[-1])
    assert [m.tool_call_id for m in answers] == ["call_0", "call_0-2"]


async def test_a_filler_or_an_apology_after_words_is_a_sentence_of_its_own() -> None:
    slow = replace(BOOK, filler="One moment please.", filler_after_ms=0, timeout_ms=100)
    llm = ScriptedRounds([Round(["Let me check", call("c1", "book_table", ARGS)]), Round([])])
    h = Harness(llm, slow)
    h.backend.gate("book_table")  # never answers: the filler, then the apology
    done = await h.turn("book it")
    assert done.text == f"Let me check One moment please. {TOOL_FAILED_APOLOGY}"
