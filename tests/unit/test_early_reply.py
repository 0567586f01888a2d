"""The reply begun while the caller pauses: used when the turn ends on its words, else unseen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from engine.runtime import events as ev
from engine.runtime.assistant import (
    AssistantConfig,
    AssistantConfigError,
    TurnSettings,
    VadSettings,
    parse_assistant,
)
from engine.runtime.early_reply import EarlyReplyCounts
from engine.runtime.pipeline import DuplexPipeline
from engine.runtime.ports.providers import ChatMessage, Recognition, ToolCallRequest, ToolSpec
from engine.runtime.tool_config import parse_tools

RATE = 16000
SPEECH = b"\x10\x27" * 320  # 20 ms the fake VAD calls speech
SILENCE = b"\x00\x00" * 320
HEARD = "what are your opening hours"
SURE = Recognition(HEARD, 0.9, "whisper")
REPLY = "We are open from noon to ten. Closed on Mondays."


class Vad:
    frame_bytes = 640

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


class EarlyStream:
    """An utterance whose early final reads ``early`` once the pause began."""

    def __init__(self, early: str, final: Recognition) -> None:
        self.early, self.final = early, final
        self._ready = False

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    def silence_began(self) -> None:
        self._ready = True

    def speech_resumed(self) -> None:
        self._ready = False

    def early_text(self) -> str | None:
        return self.early if self._ready else ""

    def early_alternatives(self) -> tuple[str, ...]:
        return ()

    async def finish(self) -> Recognition:
        return self.final

    def cancel(self) -> None:
        return None


class Speech:
    line = "LINEAR16/16000"

    def __init__(self, early: str, final: Recognition) -> None:
        self.stream = EarlyStream(early, final)

    def vad(self) -> Vad:
        return Vad()

    def recognizer(self) -> Speech:
        return self

    def start_utterance(self) -> EarlyStream:
        return self.stream

    def turn_detector(self) -> None:
        return None


class Llm:
    """Answers REPLY word by word; asked with a user text in ``tool_for``, calls book_table."""

    def __init__(self, tool_for: str = "") -> None:
        self.asked: list[str] = []
        self.open = 0  # streams not closed yet
        self.tool_for = tool_for
        self.gate: asyncio.Event | None = None
        self.tool_after: asyncio.Event | None = None  # text, then a call once this is set

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        said = messages[-1].content if messages[-1].role == "user" else ""
        self.asked.append(said)
        self.open += 1
        try:
            if self.gate is not None and said == "hello":
                await self.gate.wait()
            if self.tool_after is not None and said == HEARD and len(self.asked) == 1:
                yield "Let me check. "
                await self.tool_after.wait()
                yield ToolCallRequest("call_1", "book_table", "{}")
                return
            if said and said == self.tool_for:
                yield ToolCallRequest("call_1", "book_table", "{}")
                return
            for word in REPLY.split(" "):
                await asyncio.sleep(0)
                yield word + " "
        finally:
            self.open -= 1


class Tts:
    sample_rate_hz = RATE

    def __init__(self) -> None:
        self.said: list[str] = []

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        self.said.append(text)
        for _ in range(3):
            await asyncio.sleep(0)
            yield b"\x01\x00" * 800


class Tools:
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def execute_tool(self, invocation: Any, *, timeout_sec: float) -> Any:
        self.ran.append(invocation.name)
        return {"booked": True}


class Recorder:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def record(self, role: str, text: str, **kw: Any) -> None:
        self.entries.append((role, text))


def _config(early_reply: bool = True) -> AssistantConfig:
    tools = parse_tools(
        [{"name": "book_table", "parameters": {"type": "object"}}],
        lambda path, problem: AssistantConfigError(path, problem),
    )
    return AssistantConfig(
        id="t",
        name="t",
        vad=VadSettings(min_speech_ms=60, end_silence_ms=400),
        turn=TurnSettings(early_reply=early_reply),
        tools=tools,
    )


class Call:
    def __init__(
        self,
        early: str = HEARD,
        final: Recognition = SURE,
        *,
        early_reply: bool = True,
        tool_for: str = "",
    ) -> None:
        self.events: list[ev.Event] = []
        self.llm, self.tts, self.tools = Llm(tool_for), Tts(), Tools()
        self.recorder = Recorder()
        self.counts = EarlyReplyCounts()
        self.speech = Speech(early, final)
        self.pipeline = DuplexPipeline(
            _config(early_reply),
            llm=self.llm,
            synthesizer=self.tts,
            speech=self.speech,  # type: ignore[arg-type]
            recorder=self.recorder,
            emit=self._emit,
            audio_lead_ms=60_000,
            tool_backend=self.tools,
            early_counts=self.counts,
        )

    async def _emit(self, event: ev.Event) -> None:
        self.events.append(event)

    async def say(self, speech: int, silence: int = 0) -> None:
        for frame in [SPEECH] * speech + [SILENCE] * silence:
            await self.pipeline.user_audio(frame)

    async def settle(self) -> None:
        """Let the speculation's tasks run as far as they can."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def answered(self) -> None:
        async with asyncio.timeout(5):
            while not any(isinstance(e, ev.TurnMetrics) for e in self.events):
                await asyncio.sleep(0.005)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def said(self) -> str:
        return "".join(e.delta for e in self.events if isinstance(e, ev.AssistantText))


async def test_the_reply_begins_in_the_pause_and_is_sent_only_after_the_final() -> None:
    call = Call()
    await call.say(speech=10, silence=10)  # 200 ms: the early final is ready
    await call.settle()
    assert call.llm.asked == [HEARD]
    assert call.tts.said == ["We are open from noon to ten."]  # first sentence, ahead
    assert call.kinds() == ["SpeechStarted"]  # nothing of the reply reaches the client
    assert call.recorder.entries == []

    await call.say(speech=0, silence=10)  # 400 ms: the turn ends
    await call.answered()
    kinds = call.kinds()
    assert kinds.index("Transcript") < kinds.index("AssistantText") < kinds.index("AudioChunk")
    assert call.said().strip() == REPLY
    assert call.llm.asked == [HEARD]  # the model was not asked again
    assert call.tts.said == ["We are open from noon to ten.", "Closed on Mondays."]
    assert [(role, text.strip()) for role, text in call.recorder.entries] == [
        ("user", HEARD),
        ("assistant", REPLY),
    ]
    assert call.counts == EarlyReplyCounts(started=1, used=1, discarded=0)


async def test_a_caller_who_goes_on_leaves_no_trace_of_it() -> None:
    call = Call()
    await call.say(speech=10, silence=10)
    await call.settle()
    assert call.llm.asked == [HEARD]
    await call.say(speech=10)  # the caller goes on
    await call.settle()
    assert call.llm.open == 0  # the model's stream was closed
    assert call.counts == EarlyReplyCounts(started=1, used=0, discarded=1)
    assert call.kinds() == ["SpeechStarted"]
    assert call.recorder.entries == []


async def test_a_final_with_other_words_is_answered_afresh() -> None:
    call = Call(final=Recognition("where are you located", 0.9, "whisper"))
    await call.say(speech=10, silence=10)
    await call.settle()
    await call.say(speech=0, silence=10)
    await call.answered()
    assert call.llm.asked == [HEARD, "where are you located"]
    assert call.said().strip() == REPLY
    assert call.said().count("We are open") == 1  # the discarded one was never sent
    assert call.counts == EarlyReplyCounts(started=1, used=0, discarded=1)


async def test_the_same_words_in_another_form_use_it() -> None:
    call = Call(final=Recognition("What are your opening hours?", 0.9, "whisper"))
    await call.say(speech=10, silence=10)
    await call.settle()
    await call.say(speech=0, silence=10)
    await call.answered()
    assert call.llm.asked == [HEARD]
    assert call.counts.used == 1


async def test_an_unsure_final_gets_the_unsure_reply_and_not_the_early_one() -> None:
    call = Call(final=Recognition(HEARD, 0.3, "grammar_fallback"))
    await call.say(speech=10, silence=10)
    await call.settle()
    await call.say(speech=0, silence=10)
    await call.answered()
    assert call.said() == _config().unsure_reply
    assert call.llm.asked == [HEARD]  # only the early reply asked it
    assert call.counts == EarlyReplyCounts(started=1, used=0, discarded=1)
    assert call.llm.open == 0


async def test_a_tool_the_early_reply_asks_for_runs_only_once_the_turn_is_committed() -> None:
    call = Call(tool_for=HEARD)
    await call.say(speech=10, silence=10)
    await call.settle()
    assert call.llm.asked == [HEARD]
    assert call.tools.ran == []  # the turn has not happened yet
    assert not any(isinstance(e, ev.ToolStarted) for e in call.events)

    await call.say(speech=0, silence=10)
    await call.answered()
    # Redone for real: the model is asked again, its call runs once, then it answers.
    assert call.llm.asked[:2] == [HEARD, HEARD]
    assert call.tools.ran == ["book_table"]
    assert call.counts == EarlyReplyCounts(started=1, used=0, discarded=1)


async def test_a_tool_called_after_the_turn_is_committed_runs_as_in_any_reply() -> None:
    call = Call()
    call.llm.tool_after = asyncio.Event()
    await call.say(speech=10, silence=10)
    await call.settle()
    await call.say(speech=0, silence=10)  # the turn ends: the early reply is the answer
    call.llm.tool_after.set()
    await call.answered()
    assert call.tools.ran == ["book_table"]
    assert call.llm.asked == [HEARD, ""]  # the next round answers the tool's result
    assert call.said().strip() == "Let me check. " + REPLY
    assert call.counts == EarlyReplyCounts(started=1, used=1, discarded=0)


async def test_off_the_model_is_asked_only_when_the_turn_ends() -> None:
    call = Call(early_reply=False)
    await call.say(speech=10, silence=10)
    await call.settle()
    assert call.llm.asked == []
    await call.say(speech=0, silence=10)
    await call.answered()
    assert call.llm.asked == [HEARD]
    assert call.counts == EarlyReplyCounts()


async def test_one_per_pause_and_another_in_the_next_pause() -> None:
    call = Call()
    await call.say(speech=10, silence=15)
    await call.settle()
    assert call.counts.started == 1  # many frames of the same pause: one
    await call.say(speech=10, silence=10)
    await call.settle()
    assert call.counts == EarlyReplyCounts(started=2, used=0, discarded=1)


async def test_the_session_ending_in_the_pause_cancels_it_unrecorded() -> None:
    call = Call()
    await call.say(speech=10, silence=10)
    await call.settle()
    await call.pipeline.close()
    assert call.llm.open == 0
    assert call.counts.discarded == 1
    assert call.recorder.entries == []
    assert call.kinds() == ["SpeechStarted"]


async def test_no_early_reply_while_a_reply_is_in_flight() -> None:
    call = Call()
    call.llm.gate = asyncio.Event()  # the typed turn's reply waits for its model
    await call.pipeline.user_text("hello")
    await call.say(speech=3, silence=10)  # shorter than a barge-in, then a pause
    await call.settle()
    assert call.pipeline.responding
    assert call.llm.asked == ["hello"]
    assert call.counts.started == 0
    call.llm.gate.set()
    await call.pipeline.close()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_turn_early_reply_must_be_true_or_false(value: object) -> None:
    with pytest.raises(AssistantConfigError, match=r"turn\.early_reply: must be true or false"):
        parse_assistant({"id": "a", "turn": {"early_reply": value}})


def test_turn_early_reply_is_read() -> None:
    assert parse_assistant({"id": "a", "turn": {"early_reply": False}}).turn.early_reply is False
    assert parse_assistant({"id": "a"}).turn.early_reply is TurnSettings().early_reply
