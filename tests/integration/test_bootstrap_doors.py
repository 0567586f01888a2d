"""bootstrap's doors: a real server on loopback over in-memory fakes of every port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.converse import ConverseClient
from tests.helpers.fakes import FakeControlPlane, FakeProviders

REPLY = "Fake reply. Nothing more."


async def test_fakes_handed_to_bootstrap_serve_a_call_and_receive_its_history(
    tmp_path: Path, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    plane = FakeControlPlane({"fake": {"id": "fake", "name": "Fake", "greeting": "Hi."}})
    settings = Settings.from_env(
        {"ENGINE_HOST": "127.0.0.1", "ENGINE_PORT": "0", "HISTORY_SPOOL_PATH": ""}
    )
    server = EngineServer(
        await bootstrap(settings, control_plane=plane, providers=FakeProviders(reply=REPLY))
    )
    port = await server.start()
    try:
        client = ConverseClient(channel_to(f"127.0.0.1:{port}"))
        client.start("fake")
        client.send(text=pb.TextInput(text="question"))
        client.close_requests()
        messages = await client.drain()
        assert await client.status() == grpc.StatusCode.OK
    finally:
        await server.shutdown()

    started = messages[0].started
    assert started.assistant.name == "Fake"
    done = [m.response_done for m in messages if m.HasField("response_done")]
    assert done[-1].text.strip() == REPLY
    assert messages[-1].ended.reason == pb.END_REASON_INPUT_CLOSED
    # History went to the control plane handed in, in order, and was finalized.
    assert [c.call_id for c in plane.calls] == [started.call_id]
    assert [(e.role, e.text.strip()) for e in plane.entries][-2:] == [
        ("user", "question"),
        ("assistant", REPLY),
    ]
    assert [s.end_reason for s in plane.summaries] == ["input_closed"]
    assert plane.closed
