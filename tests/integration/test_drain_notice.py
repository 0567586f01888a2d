"""SIGTERM's drain: every live session is told how long it has left."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import engine_processes, spawn_engine
from tests.integration.conftest import StartServer, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]


async def test_live_sessions_get_a_draining_notice_then_end(
    start_server: StartServer, channel_to: ChannelTo
) -> None:
    server = await start_server(ENGINE_SHUTDOWN_GRACE_SEC="3")
    clients = [ConverseClient(channel_to(target_of(server))) for _ in range(3)]
    for client in clients:
        client.start("default", options=pb.SessionOptions(text_only=True))
        await client.until("started")
    shutdown = asyncio.create_task(server.shutdown())
    for client in clients:
        notice = (await client.until("draining")).draining
        assert notice.remaining_ms == 3000
    # One client finishes its call; the others are ended when the grace period is over.
    clients[0].send(end=pb.EndSession())
    assert (await clients[0].until("ended")).ended.reason == pb.END_REASON_CLIENT_ENDED
    for client in clients[1:]:
        ended = (await client.until("ended")).ended
        assert ended.reason == pb.END_REASON_SERVER_SHUTDOWN
    await shutdown


async def test_sigterm_sends_the_notice_from_a_real_process(
    tmp_path: Path, channel_to: ChannelTo
) -> None:
    async with engine_processes(tmp_path) as spawned:
        engine = await spawn_engine(
            tmp_path,
            ENGINE_SHUTDOWN_GRACE_SEC="30",
            HISTORY_SPOOL_PATH=str(tmp_path / "spool.sqlite3"),
        )
        spawned.append(engine)
        client = ConverseClient(channel_to(engine.target))
        client.start("default", options=pb.SessionOptions(text_only=True))
        await client.until("started")
        engine.proc.send_signal(signal.SIGTERM)
        notice = (await client.until("draining")).draining
        assert notice.remaining_ms == 30000
        client.send(end=pb.EndSession())
        await client.drain()
        assert await asyncio.wait_for(engine.proc.wait(), 30) == 0
