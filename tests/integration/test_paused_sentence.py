"""A caller who pauses mid-sentence gets one answer, to the whole sentence (real server, fakes).

The turn detector says "complete" at every pause, and the recognizer's early final of the
first half has a word added at the cut ("a table for it"), as Whisper does with audio that
stops short, while it found the sentence ending in "for" likely too. That reading cannot end
a sentence, so the engine listens on and the caller's second half belongs to the same turn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from engine.runtime.ports.providers import ProviderSpec, Recognition
from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.converse import ConverseClient
from tests.helpers.fakes import FakeControlPlane, FakeProviders, ScriptedTurnDetector

FIRST_HALF = "i would like to book a table for"
WHOLE = "i would like to book a table for four people"
SPEECH = b"\x10\x27" * 320  # 20 ms of loud samples: speech to the fake VAD
SILENCE = bytes(640)


class _PausingStream:
    """An utterance whose early final of the first half reads "... a table for it"."""

    def __init__(self) -> None:
        self._pauses = 0
        self._early: str | None = None
        self._alternatives: tuple[str, ...] = ()

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    def silence_began(self) -> None:
        self._pauses += 1
        if self._pauses == 1:
            self._early, self._alternatives = f"{FIRST_HALF} it", (FIRST_HALF,)
        else:
            self._early, self._alternatives = WHOLE, ()

    def speech_resumed(self) -> None:
        self._early, self._alternatives = None, ()

    def early_text(self) -> str | None:
        return self._early if self._early is not None else ""

    def early_alternatives(self) -> tuple[str, ...]:
        return self._alternatives

    async def finish(self) -> Recognition:
        return Recognition(self._early or "", 0.9, "whisper")

    def cancel(self) -> None:
        return None


class _PausingRecognizer:
    def start_utterance(self) -> _PausingStream:
        return _PausingStream()


class _Providers(FakeProviders):
    def recognizer(self, spec: ProviderSpec) -> _PausingRecognizer:  # type: ignore[override]
        return _PausingRecognizer()

    def turn_detector(self, spec: ProviderSpec) -> ScriptedTurnDetector:
        return ScriptedTurnDetector(0.97, 0.97, 0.97)  # "complete" at every pause


async def test_a_pause_after_a_word_that_cannot_end_the_sentence_is_one_turn(
    tmp_path: Path, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    assistant = {"id": "desk", "name": "Desk", "turn": {"detector": "scripted"}}
    settings = Settings.from_env(
        {"ENGINE_HOST": "127.0.0.1", "ENGINE_PORT": "0", "HISTORY_SPOOL_PATH": ""}
    )
    engine = await bootstrap(
        settings, control_plane=FakeControlPlane({"desk": assistant}), providers=_Providers()
    )
    server = EngineServer(engine)
    port = await server.start()
    try:
        client = ConverseClient(channel_to(f"127.0.0.1:{port}"))
        client.start("desk")
        pause = [SILENCE] * 50  # 1 s: longer than the end silence (600 ms)
        for frame in [*[SPEECH] * 40, *pause, *[SPEECH] * 30, *[SILENCE] * 40]:
            client.send(audio=pb.AudioInput(data=frame))
        client.close_requests()
        messages = await client.drain()
        assert await client.status() == grpc.StatusCode.OK
    finally:
        await server.shutdown()

    finals = [m.transcript.text for m in messages if m.transcript.is_final]
    assert finals == [WHOLE]
