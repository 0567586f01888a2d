"""Prometheus metrics scraped from the real server after a conversation, and JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import engine_processes, spawn_engine
from tests.helpers.security import KeyedClient, metric, scrape
from tests.integration.conftest import StartServer, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]


async def test_metrics_after_a_conversation(
    start_server: StartServer, channel_to: ChannelTo
) -> None:
    server = await start_server(ENGINE_API_KEYS="good-key")
    channel = channel_to(target_of(server))
    refused = ConverseClient(channel)  # no key: refused, and counted
    refused.start("default")
    with contextlib.suppress(grpc.aio.AioRpcError):
        await refused.drain()
    client = KeyedClient(channel, "Bearer good-key")
    client.start("default", options=pb.SessionOptions(text_only=False))
    await client.until("started")
    assert server.metrics_port is not None
    during = await asyncio.to_thread(scrape, server.metrics_port)
    assert metric(during, "voiceengine_active_sessions") == 1
    client.send(text=pb.TextInput(text="what are your opening hours"))
    await client.until("metrics")  # the greeting's
    await client.until("metrics")  # the answer's
    client.send(end=pb.EndSession())
    await client.drain()

    samples = await asyncio.to_thread(scrape, server.metrics_port)
    assert metric(samples, "voiceengine_active_sessions") == 0
    assert (
        metric(samples, "voiceengine_sessions_ended_total", reason="END_REASON_CLIENT_ENDED") == 1
    )
    assert metric(samples, "voiceengine_turns_total", status="RESPONSE_STATUS_COMPLETED") == 2
    assert metric(samples, "voiceengine_auth_failures_total", reason="API_KEY_MISSING") == 1
    assert (
        metric(
            samples,
            "voiceengine_rpc_errors_total",
            code="UNAUTHENTICATED",
            reason="API_KEY_MISSING",
        )
        == 1
    )
    count = 'voiceengine_turn_latency_seconds_count{stage="end_of_speech_to_first_audio"}'
    assert samples[count] == 2
    assert samples['voiceengine_turn_latency_seconds_count{stage="llm_first_token"}'] == 2
    # History counters come from the bridge (engine-only mode: history is a no-op).
    assert 'voiceengine_history_writes_total{outcome="enqueued"}' in samples


async def test_json_logs_carry_the_session_and_call_ids(
    tmp_path: Path, channel_to: ChannelTo
) -> None:
    async with engine_processes(tmp_path) as spawned:
        engine = await spawn_engine(
            tmp_path,
            ENGINE_LOG_FORMAT="json",
            ENGINE_LOG_LEVEL="DEBUG",
            HISTORY_SPOOL_PATH=str(tmp_path / "spool.sqlite3"),
        )
        spawned.append(engine)
        client = ConverseClient(channel_to(engine.target))
        client.start("default", options=pb.SessionOptions(text_only=True))
        started = (await client.until("started")).started
        client.send(text=pb.TextInput(text="my card number is 4111 1111 1111 1111"))
        await client.until("response_done")
        client.send(end=pb.EndSession())
        await client.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20

        def session_lines() -> list[dict[str, str]]:
            lines = [json.loads(line) for line in engine.log if line.startswith("{")]
            return [e for e in lines if e["session_id"] == started.session_id]

        while not session_lines():
            assert loop.time() < deadline, "no log line carries the session id"
            await asyncio.sleep(0.05)
        assert all(e["call_id"] == started.call_id for e in session_lines())
        # Every line is JSON, and caller text never appears above DEBUG.
        entries = [json.loads(line) for line in engine.log if line.strip()]
        assert all("4111" not in e["message"] for e in entries if e["level"] != "DEBUG")
