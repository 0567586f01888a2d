"""A listed phrase heard for sure ends the caller's turn without the turn detector (real
server, fakes).

The recognizer's grammar and trigram agree on a listed phrase; the turn detector would
judge the pause unfinished. The turn ends anyway at ``turn.check_after_ms`` of silence, the
detector is never asked, and the history says why the turn ended.
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

PHRASE = "can i see the menu"
SPEECH = b"\x10\x27" * 320  # 20 ms of loud samples: speech to the fake VAD
SILENCE = bytes(640)


class _PhraseStream:
    """An utterance whose early final is a listed phrase; ``sure`` says if it was confirmed."""

    def __init__(self, sure: bool) -> None:
        self._sure = sure
        self._silent = False

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    def silence_began(self) -> None:
        self._silent = True

    def speech_resumed(self) -> None:
        self._silent = False

    def early_text(self) -> str | None:
        return PHRASE if self._silent else ""

    def early_alternatives(self) -> tuple[str, ...]:
        return ()

    def phrase_confirmed(self) -> bool | None:
        return self._sure if self._silent else None

    async def finish(self) -> Recognition:
        return Recognition(PHRASE, 0.95 if self._sure else 0.9, "grammar")

    def cancel(self) -> None:
        return None


class _Providers(FakeProviders):
    def __init__(self, sure: bool) -> None:
        super().__init__()
        self.sure = sure
        self.detector = ScriptedTurnDetector(0.1)  # "sounds unfinished"

    def recognizer(self, spec: ProviderSpec) -> object:  # type: ignore[override]
        sure = self.sure

        class _Recognizer:
            def start_utterance(self) -> _PhraseStream:
                return _PhraseStream(sure)

        return _Recognizer()

    def turn_detector(self, spec: ProviderSpec) -> ScriptedTurnDetector:
        return self.detector


async def _call(
    providers: _Providers, channel_to: Callable[[str], grpc.aio.Channel]
) -> tuple[list[str], dict[str, object]]:
    """Speech, 400 ms of silence, half-close: the finals, and the user turn's history."""
    assistant = {"id": "desk", "name": "Desk", "turn": {"detector": "scripted"}}
    settings = Settings.from_env(
        {"ENGINE_HOST": "127.0.0.1", "ENGINE_PORT": "0", "HISTORY_SPOOL_PATH": ""}
    )
    control_plane = FakeControlPlane({"desk": assistant})
    engine = await bootstrap(settings, control_plane=control_plane, providers=providers)
    server = EngineServer(engine)
    port = await server.start()
    try:
        client = ConverseClient(channel_to(f"127.0.0.1:{port}"))
        client.start("desk")
        for frame in [*[SPEECH] * 40, *[SILENCE] * 20]:
            client.send(audio=pb.AudioInput(data=frame))
        client.close_requests()
        messages = await client.drain()
        assert await client.status() == grpc.StatusCode.OK
    finally:
        await server.shutdown()
    finals = [m.transcript.text for m in messages if m.transcript.is_final]
    users = [e for e in control_plane.entries if e.role == "user"]
    assert len(users) == 1
    return finals, dict(users[0].metadata)


async def test_a_listed_phrase_heard_for_sure_ends_the_turn_without_the_detector(
    tmp_path: Path, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    providers = _Providers(sure=True)
    finals, metadata = await _call(providers, channel_to)
    assert finals == [PHRASE]
    assert metadata["ended_by"] == "phrase"
    assert providers.detector.heard == []  # never asked


async def test_a_phrase_not_heard_for_sure_is_left_to_the_detector(
    tmp_path: Path, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    providers = _Providers(sure=False)
    finals, metadata = await _call(providers, channel_to)
    assert finals == [PHRASE]
    assert metadata["ended_by"] == "client"  # judged unfinished: the half-close ended it
    assert len(providers.detector.heard) == 1
