"""DuplexPipeline behaviour with fake providers that implement the ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

from engine.runtime import events as ev
from engine.runtime.assistant import AssistantConfig, InterruptionSettings, VadSettings
from engine.runtime.pipeline import DuplexPipeline
from engine.runtime.ports.providers import ChatMessage, Recognition, ToolCallRequest, ToolSpec
from engine.runtime.response import EndCall

RATE = 16000
FRAME = b"\x10\x27" * 320  # 20 ms of "speech" for the fake VAD
SILENCE = b"\x00\x00" * 320


class FakeVad:
    frame_bytes = 640

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


class FakeStream:
    def __init__(self, text: str, confidence: float = 0.9, source: str = "whisper") -> None:
        self.text = text
        self.confidence = confidence
        self.source = source
        self.fed = 0
        self.cancelled = False

    async def feed(self, pcm16k: bytes) -> None:
        self.fed += len(pcm16k)

    def partial(self) -> str:
        return self.text.split()[0]

    async def finish(self) -> Recognition:
        return Recognition(self.text, self.confidence, self.source)

    def cancel(self) -> None:
        self.cancelled = True


class FakeRecognizer:
    def __init__(self, text: str = "what are your opening hours") -> None:
        self.text = text
        self.confidence = 0.9
        self.source = "whisper"
        self.streams: list[FakeStream] = []

    def start_utterance(self) -> FakeStream:
        self.streams.append(FakeStream(self.text, self.confidence, self.source))
        return self.streams[-1]


class FakeSpeech:
    line = "LINEAR16/16000"

    def __init__(self) -> None:
        self.asr = FakeRecognizer()

    def vad(self) -> FakeVad:
        return FakeVad()

    def recognizer(self) -> FakeRecognizer:
        return self.asr

    def turn_detector(self) -> None:
        return None


class EchoLlm:
    """Replies with a long, fixed answer, word by word."""

    reply = "We are open from noon to ten. We are closed on Mondays. Bookings are welcome."

    def __init__(self) -> None:
        self.asked: list[Sequence[ChatMessage]] = []

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str, None]:
        self.asked.append(list(messages))
        for word in self.reply.split(" "):
            yield word + " "


class ToneTts:
    """1 s of audio per sentence in 50 ms chunks."""

    sample_rate_hz = RATE

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        for _ in range(20):
            yield b"\x01\x00" * (RATE // 20)
            await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, role: str, text: str, **kw: Any) -> None:
        self.entries.append({"role": role, "text": text, **kw})


def _config(**changes: Any) -> AssistantConfig:
    base = AssistantConfig(
        id="t",
        name="t",
        vad=VadSettings(min_speech_ms=60, end_silence_ms=200),
        interruption=InterruptionSettings(enabled=True, min_speech_ms=100),
    )
    return replace(base, **changes)


class Harness:
    def __init__(
        self,
        config: AssistantConfig | None = None,
        lead_ms: int = 200,
        llm: Any = None,
        on_end_call: Any = None,
    ) -> None:
        self.events: list[ev.Event] = []
        self.recorder = Recorder()
        self.speech = FakeSpeech()
        self.pipeline = DuplexPipeline(
            config or _config(),
            llm=llm or EchoLlm(),
            synthesizer=ToneTts(),
            speech=self.speech,
            recorder=self.recorder,
            emit=self._emit,
            audio_lead_ms=lead_ms,
            on_end_call=on_end_call,
        )
        self._arrived: asyncio.Queue[ev.Event] = asyncio.Queue()

    async def _emit(self, event: ev.Event) -> None:
        self.events.append(event)
        self._arrived.put_nowait(event)

    async def wait_for(self, kind: type[ev.Event], timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                event = await self._arrived.get()
                if isinstance(event, kind):
                    return event

    async def speak(self, speech_frames: int, silence_frames: int = 0) -> None:
        for _ in range(speech_frames):
            await self.pipeline.user_audio(FRAME)
        for _ in range(silence_frames):
            await self.pipeline.user_audio(SILENCE)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


async def test_speech_then_silence_is_one_turn_with_a_spoken_answer() -> None:
    h = Harness(lead_ms=60_000)
    await h.speak(speech_frames=30, silence_frames=15)
    final = await h.wait_for(ev.Transcript)
    assert final.is_final and final.text == "what are your opening hours"
    done = await h.wait_for(ev.ResponseDone)
    assert done.status is ev.ResponseStatus.COMPLETED
    kinds = h.kinds()
    assert kinds.index("SpeechStarted") < kinds.index("SpeechStopped") < kinds.index("Transcript")
    assert [e["role"] for e in h.recorder.entries] == ["user", "assistant"]
    metrics = await h.wait_for(ev.TurnMetrics)
    assert metrics.end_of_speech_to_final_transcript_ms is not None


async def test_silence_alone_produces_no_turn() -> None:
    h = Harness()
    await h.speak(speech_frames=0, silence_frames=100)
    assert h.events == []


async def test_a_blip_shorter_than_min_speech_is_not_speech() -> None:
    h = Harness()
    await h.speak(speech_frames=2, silence_frames=20)
    assert h.events == []


async def test_barge_in_cuts_the_reply_and_keeps_only_what_was_heard() -> None:
    h = Harness(lead_ms=200)
    await h.pipeline.user_text("hello")
    first_audio = await h.wait_for(ev.AudioChunk)
    # Let some audio play, then the caller talks over it for longer than min_speech_ms.
    await h.wait_for(ev.AudioChunk)
    await h.wait_for(ev.AudioChunk)
    await h.speak(speech_frames=6)
    interrupted = await h.wait_for(ev.Interrupted)
    done = await h.wait_for(ev.ResponseDone)
    assert interrupted.response_id == first_audio.response_id == done.response_id
    assert done.status is ev.ResponseStatus.INTERRUPTED
    assert EchoLlm.reply.startswith(done.heard_text) and len(done.heard_text) < len(done.text)
    after = h.events[h.events.index(interrupted) :]
    assert not [
        e for e in after if isinstance(e, ev.AudioChunk) and e.response_id == done.response_id
    ]
    # The cut reply is recorded once the interruption proves to be words (its final).
    await h.wait_for(ev.Transcript)
    assistant = next(e for e in h.recorder.entries if e["role"] == "assistant")
    assert assistant["interrupted"] is True
    assert assistant["text"] == done.heard_text and assistant["full_text"] == done.text


async def test_playback_reports_decide_what_was_heard() -> None:
    h = Harness(lead_ms=60_000)  # all audio is sent at once; only the report says what played
    await h.pipeline.user_text("hello")
    chunk = await h.wait_for(ev.AudioChunk)
    h.pipeline.playback(chunk.response_id, 0)
    assert await h.pipeline.interrupt()
    done = await h.wait_for(ev.ResponseDone)
    assert done.heard_text == ""
    # audio_ms is what was sent, whatever was heard
    sent = [e for e in h.events if isinstance(e, ev.AudioChunk)]
    assert done.audio_ms == sum(c.duration_ms for c in sent) > 0
    interrupted = next(e for e in h.events if isinstance(e, ev.Interrupted))
    assert interrupted.heard_ms == 0


async def test_with_interruption_disabled_the_assistant_keeps_talking() -> None:
    config = _config(
        interruption=InterruptionSettings(enabled=False, min_speech_ms=100),
        # The caller's words stay one open utterance for the whole reply (no audio
        # arriving ends a turn only after the end-silence time).
        vad=VadSettings(min_speech_ms=60, end_silence_ms=60_000),
    )
    h = Harness(config, lead_ms=200)
    await h.pipeline.user_text("hello")
    await h.wait_for(ev.AudioChunk)
    await h.speak(speech_frames=10)
    done = await h.wait_for(ev.ResponseDone, timeout=10)
    assert done.status is ev.ResponseStatus.COMPLETED
    assert not [e for e in h.events if isinstance(e, ev.Interrupted)]


async def test_close_mid_reply_records_it_as_interrupted_and_leaves_no_task() -> None:
    h = Harness(lead_ms=200)
    before = asyncio.all_tasks()
    await h.pipeline.user_text("hello")
    await h.wait_for(ev.AudioChunk)
    await h.pipeline.close()
    assert asyncio.all_tasks() == before
    assert h.recorder.entries[-1]["role"] == "assistant"
    assert h.recorder.entries[-1]["interrupted"] is True
    assert not h.pipeline.responding


async def test_client_end_of_turn_finalizes_at_once() -> None:
    h = Harness(lead_ms=60_000)
    await h.speak(speech_frames=10)
    await h.pipeline.end_of_turn()
    final = await h.wait_for(ev.Transcript)
    assert final.is_final
    assert h.speech.asr.streams[0].fed > 0


class GoodbyeLlm:
    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        if messages[-1].role == "tool":
            return  # end_call needs no answer; never asked
        yield "Goodbye now. Take care and see you soon."
        yield ToolCallRequest("c1", "end_call", '{"reason": "goodbye"}')


async def test_end_call_is_asked_for_only_when_the_reply_was_spoken_to_the_end() -> None:
    calls: list[tuple[EndCall, float]] = []
    h = Harness(lead_ms=60_000, llm=GoodbyeLlm(), on_end_call=lambda e, t: calls.append((e, t)))
    await h.pipeline.user_text("bye")
    await h.wait_for(ev.TurnMetrics)
    [(end, left)] = calls
    assert isinstance(end, EndCall)
    assert 0 < left <= 2.0  # two sentences of 1 s, all sent, none of it played yet

    calls.clear()
    h2 = Harness(lead_ms=200, llm=GoodbyeLlm(), on_end_call=lambda e, t: calls.append((e, t)))
    await h2.pipeline.user_text("bye")
    await h2.wait_for(ev.AudioChunk)
    await h2.pipeline.interrupt()  # the caller talks over the goodbye: stay on the line
    await h2.pipeline.close()
    assert calls == []


async def test_a_final_that_is_a_guess_gets_the_unsure_reply_not_an_answer() -> None:
    llm = EchoLlm()
    h = Harness(config=_config(unsure_reply="Pardon me?"), lead_ms=60_000, llm=llm)
    h.speech.asr.confidence, h.speech.asr.source = 0.36, "grammar_fallback"
    await h.speak(speech_frames=30, silence_frames=15)
    final = await h.wait_for(ev.Transcript)
    assert (final.source, final.confidence) == ("grammar_fallback", 0.36)
    done = await h.wait_for(ev.ResponseDone)
    assert done.text.strip() == "Pardon me?"
    assert llm.asked == []  # the model never saw the guess
    user = h.recorder.entries[0]
    assert user["metadata"]["unsure"] is True
    assert user["metadata"]["source"] == "grammar_fallback"


async def test_a_confident_final_is_answered_and_the_model_is_told_its_confidence() -> None:
    llm = EchoLlm()
    h = Harness(lead_ms=60_000, llm=llm)
    h.speech.asr.confidence = 0.83
    await h.speak(speech_frames=30, silence_frames=15)
    done = await h.wait_for(ev.ResponseDone)
    assert done.text.strip() == EchoLlm.reply
    assert llm.asked[0][-1] == ChatMessage("user", "what are your opening hours", confidence=0.83)
    user = h.recorder.entries[0]
    assert user["metadata"]["source"] == "whisper" and user["metadata"]["unsure"] is False


async def test_a_typed_turn_is_never_a_guess() -> None:
    llm = EchoLlm()
    h = Harness(config=_config(unsure_confidence=1.0), lead_ms=60_000, llm=llm)
    await h.pipeline.user_text("hello")
    final = await h.wait_for(ev.Transcript)
    assert (final.source, final.confidence) == ("text", 1.0)
    await h.wait_for(ev.ResponseDone)
    assert llm.asked[0][-1] == ChatMessage("user", "hello")


async def test_one_chunk_that_ends_a_turn_and_starts_the_next_loses_neither() -> None:
    # A client sending long chunks (or a recording, fast): the end of one question and the
    # start of the next arrive in the same piece of audio.
    h = Harness(lead_ms=60_000)
    await h.pipeline.user_audio(FRAME * 30 + SILENCE * 40 + FRAME * 30)
    await h.speak(speech_frames=0, silence_frames=40)
    await h.wait_for(ev.ResponseDone)
    async with asyncio.timeout(5):
        while [e["role"] for e in h.recorder.entries].count("user") < 2:
            await asyncio.sleep(0.01)
    finals = [e for e in h.events if isinstance(e, ev.Transcript) and e.is_final]
    assert len(finals) == 2
