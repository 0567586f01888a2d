"""The reply begun while the caller pauses, end to end over gRPC on loopback.

The real server with the embedded recognizer (eSpeak speech in real time, Whisper's early
final) and an OpenAI-compatible model on loopback (tests/helpers/fake_openai.py) whose first
token takes 300 ms: the model is asked before the final transcript reaches the client, and
the reply is the one it wrote; a caller who goes on after the pause never sees the reply
begun for their first half, nor its tool call run. With fakes for the recognizer: a final
with other words than the early one is answered afresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.ports.control_plane import ToolInvocation
from engine.runtime.ports.providers import ChatMessage, ProviderSpec, Recognition, ToolSpec
from engine.server import EngineServer, bootstrap
from engine.settings import DEFAULT_AGENTS_DIR, Settings
from tests.helpers.converse import ConverseClient
from tests.helpers.fake_openai import FakeOpenAI, tool_chunk
from tests.helpers.fakes import FakeControlPlane, FakeProviders
from tests.helpers.security import metric, scrape
from tests.helpers.speech import chunks, silence, spoken

FMT = AudioFormat(AudioEncoding.LINEAR16, 16000)
CHUNK_MS = 100
REPLY = ["We are open from noon ", "to ten in the evening. ", "Closed on Mondays."]
FIRST_TOKEN_SEC = 0.3
ChannelTo = Callable[[str], grpc.aio.Channel]


class ToolRecordingPlane(FakeControlPlane):
    """The fake backend, keeping every tool call it is asked to run."""

    def __init__(self, assistants: dict[str, Any]) -> None:
        super().__init__(assistants)
        self.tools_run: list[ToolInvocation] = []

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        self.tools_run.append(invocation)
        return {"booking_id": "B0001"}


def _desk(llm_url: str, *, early_reply: bool) -> dict[str, Any]:
    """The demo assistant's recognizer and voice; the model on loopback; fixed 2.5 s end
    silence (the pause before it is what an early reply works in)."""
    demo = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    return {
        "id": "desk",
        "name": "Desk",
        "llm": {"provider": "openai", "model": "fake-model", "base_url": llm_url},
        "tts": demo["tts"],
        # However loaded the machine, the final is Whisper's (the early final's pass).
        "asr": {**demo["asr"], "final_wait_ms": 10_000},
        "vad": {**demo["vad"], "end_silence_ms": 2500},
        "turn": {"detector": "none", "early_reply": early_reply},
        "tools": [{"name": "book_table", "parameters": {"type": "object"}}],
    }


@dataclass
class Heard:
    """What the client received, each event with when it arrived (time.monotonic)."""

    events: list[tuple[float, pb.ConverseResponse]] = field(default_factory=list)

    def of(self, kind: str) -> list[tuple[float, pb.ConverseResponse]]:
        return [(t, m) for t, m in self.events if m.WhichOneof("event") == kind]

    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("event")) for _, m in self.events]

    def finals(self) -> list[tuple[float, str]]:
        return [(t, m.transcript.text) for t, m in self.of("transcript") if m.transcript.is_final]


async def _engine(plane: FakeControlPlane, llm_url: str) -> EngineServer:
    settings = Settings.from_env(
        {
            "ENGINE_HOST": "127.0.0.1",
            "ENGINE_PORT": "0",
            "HISTORY_SPOOL_PATH": "",
            "LLM_ALLOWED_BASE_URLS": llm_url,
            "ENGINE_OUTPUT_AUDIO_LEAD_MS": "60000",
        }
    )
    server = EngineServer(await bootstrap(settings, control_plane=plane))
    await server.start()
    return server


@pytest.fixture
async def desk(llm_server: FakeOpenAI) -> AsyncIterator[Callable[..., Any]]:
    """Start an engine serving ``desk`` (early reply on or off); shut down at the end."""
    servers: list[EngineServer] = []

    async def start(*, early_reply: bool = True) -> tuple[EngineServer, ToolRecordingPlane]:
        plane = ToolRecordingPlane({"desk": _desk(llm_server.base_url, early_reply=early_reply)})
        servers.append(await _engine(plane, llm_server.base_url))
        return servers[-1], plane

    yield start
    for server in servers:
        await server.shutdown()


async def _call(
    target: str,
    channel_to: ChannelTo,
    parts: Sequence[tuple[bytes, Callable[[Heard], bool]]],
) -> Heard:
    """A call in real time: each part's audio, then silence until its condition holds
    (bounded), then the next part; the call ends once a reply is done."""
    client = ConverseClient(channel_to(target))
    client.start("desk", input_audio=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16))
    heard = Heard()

    async def read() -> None:
        while True:
            message = await client.next(30)
            heard.events.append((time.monotonic(), message))

    reader = asyncio.create_task(read())
    quiet = silence(FMT, CHUNK_MS)
    try:
        for audio, until in parts:
            for piece in chunks(audio, FMT, CHUNK_MS):
                client.send(audio=pb.AudioInput(data=piece))
                await asyncio.sleep(CHUNK_MS / 1000)
            for _ in range(150):  # 15 s at most
                if until(heard):
                    break
                client.send(audio=pb.AudioInput(data=quiet))
                await asyncio.sleep(CHUNK_MS / 1000)
        client.send(end=pb.EndSession())
        async with asyncio.timeout(30):
            while not heard.of("ended"):
                await asyncio.sleep(0.02)
    finally:
        reader.cancel()
        client.call.cancel()
    return heard


def _replied(heard: Heard) -> bool:
    return bool(heard.of("response_done"))


@pytest.mark.realtime_speech
async def test_the_model_is_asked_before_the_final_and_its_reply_is_the_answer(
    desk: Callable[..., Any], llm_server: FakeOpenAI, channel_to: ChannelTo
) -> None:
    server, plane = await desk(early_reply=True)
    llm_server.reply(REPLY, first_token_sec=FIRST_TOKEN_SEC)
    question = await spoken("what are your opening hours", FMT, lead_ms=300, tail_ms=0)
    heard = await _call(f"127.0.0.1:{server.port}", channel_to, [(question, _replied)])

    [(final_at, final)] = heard.finals()
    [request] = llm_server.requests  # one request: the one begun in the pause
    assert request.received_at < final_at, "the model was not asked before the final"
    assert request.user_text() == final
    kinds = heard.kinds()
    assert kinds.index("transcript") < kinds.index("assistant_text") < kinds.index("audio")
    [(_, done)] = heard.of("response_done")
    assert done.response_done.text == "".join(REPLY)
    assert done.response_done.status == pb.RESPONSE_STATUS_COMPLETED
    counts = server.engine.sessions.early_replies
    assert (counts.started, counts.used, counts.discarded) == (1, 1, 0)
    await server.engine.history.close()
    assert [(e.role, e.text.strip()) for e in plane.entries] == [
        ("user", final),
        ("assistant", "".join(REPLY)),
    ]


@pytest.mark.realtime_speech
async def test_without_early_reply_the_model_is_asked_when_the_turn_ends(
    desk: Callable[..., Any], llm_server: FakeOpenAI, channel_to: ChannelTo
) -> None:
    server, _ = await desk(early_reply=False)
    llm_server.reply(REPLY, first_token_sec=FIRST_TOKEN_SEC)
    question = await spoken("what are your opening hours", FMT, lead_ms=300, tail_ms=0)
    heard = await _call(f"127.0.0.1:{server.port}", channel_to, [(question, _replied)])

    [(final_at, final)] = heard.finals()
    [request] = llm_server.requests
    # Asked when the turn ended, not in the 2.5 s pause before it. The request and the
    # final travel on two connections: which of them lands first is a race of milliseconds.
    assert request.received_at > final_at - 1.0
    assert request.user_text().startswith(final)  # with the recognizer's confidence after it
    assert server.engine.sessions.early_replies.started == 0


@pytest.mark.realtime_speech
async def test_a_caller_who_goes_on_sees_nothing_of_the_reply_begun_in_the_pause(
    desk: Callable[..., Any], llm_server: FakeOpenAI, channel_to: ChannelTo
) -> None:
    server, plane = await desk(early_reply=True)
    # Asked in the pause, the model books a table (a side effect); asked again, it answers.
    llm_server.reply_events([tool_chunk(0, call_id="call_1", name="book_table", arguments="{}")])
    llm_server.then()
    llm_server.reply(["Sure, for how many people?"])
    first = await spoken("i would like to book a table", FMT, lead_ms=300, tail_ms=0)
    second = await spoken("on friday evening", FMT, lead_ms=0, tail_ms=0)

    def asked(_: Heard) -> bool:
        return bool(llm_server.requests)

    heard = await _call(
        f"127.0.0.1:{server.port}", channel_to, [(first, asked), (second, _replied)]
    )

    assert llm_server.requests, "no early reply began in the pause"
    [(_, final)] = heard.finals()  # one turn: the whole sentence
    assert llm_server.requests[0].user_text() != final
    assert llm_server.requests[-1].user_text() == final
    assert plane.tools_run == []
    assert not {"tool_started", "tool_finished", "tool_call"} & set(heard.kinds())
    [(_, done)] = heard.of("response_done")
    assert done.response_done.text == "Sure, for how many people?"
    assert "".join(m.assistant_text.delta for _, m in heard.of("assistant_text")) == (
        "Sure, for how many people?"
    )
    assert server.engine.sessions.early_replies.discarded >= 1
    await server.engine.history.close()
    assert [(e.role, e.text.strip()) for e in plane.entries] == [
        ("user", final),
        ("assistant", "Sure, for how many people?"),
    ]


# --- a final with other words than the early one (fake recognizer and model) -----------

EARLY = "what are your opening hours"
FINAL = "where are you located"
SPEECH = b"\x10\x27" * 320  # 20 ms of loud samples: speech to the fake VAD
QUIET = bytes(640)


class _ChangingStream:
    """An utterance whose early final reads EARLY and whose final is FINAL."""

    def __init__(self) -> None:
        self._paused = False

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    def silence_began(self) -> None:
        self._paused = True

    def speech_resumed(self) -> None:
        self._paused = False

    def early_text(self) -> str | None:
        return EARLY if self._paused else ""

    def early_alternatives(self) -> tuple[str, ...]:
        return ()

    async def finish(self) -> Recognition:
        return Recognition(FINAL, 0.9, "whisper")

    def cancel(self) -> None:
        return None


class _AnsweringLlm:
    """Answers "Answer to <the user's words>."; keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str, None]:
        self.asked.append(messages[-1].content)
        for word in f"Answer to {messages[-1].content}.".split(" "):
            await asyncio.sleep(0)
            yield word + " "


class _Providers(FakeProviders):
    def __init__(self) -> None:
        super().__init__()
        self.llm = _AnsweringLlm()

    def recognizer(self, spec: ProviderSpec) -> Any:
        class Recognizer:
            def start_utterance(self) -> _ChangingStream:
                return _ChangingStream()

        return Recognizer()

    def language_model(self, spec: ProviderSpec) -> Any:
        return self.llm


async def test_a_final_with_other_words_is_answered_afresh(channel_to: ChannelTo) -> None:
    providers = _Providers()
    plane = FakeControlPlane({"desk": {"id": "desk", "name": "Desk"}})
    settings = Settings.from_env(
        {
            "ENGINE_HOST": "127.0.0.1",
            "ENGINE_PORT": "0",
            "HISTORY_SPOOL_PATH": "",
            "ENGINE_METRICS_PORT": "0",
        }
    )
    server = EngineServer(await bootstrap(settings, control_plane=plane, providers=providers))
    port = await server.start()
    try:
        client = ConverseClient(channel_to(f"127.0.0.1:{port}"))
        client.start("desk")
        for frame in [SPEECH] * 30 + [QUIET] * 12:  # 240 ms of pause: the early final
            client.send(audio=pb.AudioInput(data=frame))
        async with asyncio.timeout(10):
            while not providers.llm.asked:
                await asyncio.sleep(0.01)
        for frame in [QUIET] * 40:  # the rest of the end silence (600 ms)
            client.send(audio=pb.AudioInput(data=frame))
        client.close_requests()
        messages = await client.drain()
        assert await client.status() == grpc.StatusCode.OK
        assert server.metrics_port is not None
        samples = await asyncio.to_thread(scrape, server.metrics_port)
    finally:
        await server.shutdown()

    assert providers.llm.asked == [EARLY, FINAL]
    finals = [m.transcript.text for m in messages if m.transcript.is_final]
    said = "".join(m.assistant_text.delta for m in messages if m.HasField("assistant_text"))
    assert finals == [FINAL]
    assert said.strip() == f"Answer to {FINAL}."
    early = "voiceengine_early_replies_total"
    assert [metric(samples, early, outcome=o) for o in ("started", "used", "discarded")] == [
        1,
        0,
        1,
    ]
    assert [(e.role, e.text.strip()) for e in plane.entries] == [
        ("user", FINAL),
        ("assistant", f"Answer to {FINAL}."),
    ]
