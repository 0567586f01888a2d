"""Tool calls end to end: the Bella Vista assistant booking on the reference backend.

The caller speaks (eSpeak, 8 kHz mu-law) over gRPC; the booking lands in the backend's
SQLite store, read here read-only. Barge-in during a slow tool, and an engine killed
with SIGKILL while a booking is in flight, leave at most one booking and a history
delivered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR
from tests.conftest import StartServer, target_of
from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import engine_processes, http_backend_env, spawn_engine
from tests.helpers.refbackend import RefBackend, running_refbackend
from tests.helpers.speech import chunks, spoken

ASSISTANT_ID = "bella"
MULAW_8K = AudioFormat(AudioEncoding.MULAW, 8000)
BOOKING = "a table for four tomorrow at seven"
ChannelTo = Callable[[str], grpc.aio.Channel]


def bella(book_timeout_ms: int = 5000) -> dict[str, Any]:
    """The bundled assistant under another id; the final transcript waits for Whisper
    (a loaded test machine must not turn the caller's words into the phrase grammar's)."""
    document: dict[str, Any] = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    document["id"] = ASSISTANT_ID
    document["asr"]["final_wait_ms"] = 10_000
    for tool in document["tools"]:
        if tool["name"] == "book_table":
            tool["timeout_ms"] = book_timeout_ms
    return document


class BackendDb:
    """Read-only view of the reference backend's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        uri = f"file:{self.path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return db.execute(sql, args).fetchall()

    def bookings(self) -> list[tuple[Any, ...]]:
        return self.rows("SELECT call_id, party_size, date, time, cancelled FROM bookings")

    def entries(self, call_id: str) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT body FROM transcripts WHERE call_id = ? ORDER BY sequence", call_id
        )
        return [json.loads(body) for (body,) in rows]

    def summaries(self, call_id: str) -> list[dict[str, Any]]:
        rows = self.rows("SELECT body FROM summaries WHERE call_id = ?", call_id)
        return [json.loads(body) for (body,) in rows]

    async def finalized(self, call_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the call's finalize is stored; returns it."""
        async with asyncio.timeout(timeout):
            while not (summaries := self.summaries(call_id)):
                await asyncio.sleep(0.05)
        assert len(summaries) == 1
        return summaries[0]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(bella())
        await ref.reset()
        yield ref


@pytest.fixture
def db(tmp_path: Path, backend: RefBackend) -> BackendDb:
    return BackendDb(tmp_path / "backend.sqlite3")


async def warm_engine(start_server: StartServer, **env: str) -> str:
    """An in-process engine whose Whisper model is loaded (as `serve` does before the port
    opens): a first turn must not fall back to the grammar while it loads."""
    server = await start_server(**env)
    await server.engine.providers.warm_up()
    return target_of(server)


async def open_call(client: ConverseClient) -> pb.SessionStarted:
    client.start(
        ASSISTANT_ID,
        input_audio=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=8000),
        options=pb.SessionOptions(text_only=True),
    )
    started = (await client.until("started")).started
    assert started.assistant.config_source == pb.CONFIG_SOURCE_BACKEND
    await client.until("response_done")  # the greeting
    return started


async def say(client: ConverseClient, text: str) -> str:
    """Speak ``text`` (40 ms chunks, as fast as the engine takes them); its final transcript."""
    for piece in chunks(await spoken(text, MULAW_8K), MULAW_8K, ms=40):
        client.send(audio=pb.AudioInput(data=piece))
    while not (transcript := (await client.until("transcript", 60)).transcript).is_final:
        pass
    return transcript.text


async def completed_reply(client: ConverseClient) -> str:
    while True:
        done = (await client.until("response_done", 60)).response_done
        if done.status == pb.RESPONSE_STATUS_COMPLETED:
            return done.text


def tool_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool entries that carry a result (not the trace left when a tool starts)."""
    return [e for e in entries if e["role"] == "tool" and e["metadata"]["outcome"] != "started"]


@pytest.mark.parametrize("faults", ["none", "503 then a timeout"])
async def test_a_spoken_booking_makes_exactly_one_booking_and_the_reply_says_so(
    faults: str,
    backend: RefBackend,
    db: BackendDb,
    start_server: StartServer,
    channel_to: ChannelTo,
) -> None:
    env = http_backend_env(backend.url)
    if faults != "none":
        # The first attempt gets a 503, the second no answer within its 1 s (the booking is
        # made, its answer held back), the third the stored result of the same key.
        await backend.put_assistant(bella(book_timeout_ms=8000))
        await backend.faults(tool_fail_next=1, tool_status=503)
        await backend.faults(tool_delay_ms=10_000, tool_delay_next=1)
        env["BACKEND_TIMEOUT_SEC"] = "1"
    target = await warm_engine(start_server, **env)
    client = ConverseClient(channel_to(target))
    started = await open_call(client)
    heard = await say(client, BOOKING)
    assert "four" in heard.lower() and "seven" in heard.lower()
    reply = await completed_reply(client)
    assert "booked" in reply and "B0001" in reply
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert db.bookings() == [(started.call_id, 4, tomorrow, "19:00", 0)]
    client.send(end=pb.EndSession())
    await client.until("ended")
    await db.finalized(started.call_id)
    [tool] = tool_entries(db.entries(started.call_id))
    assert tool["text"] == "book_table -> ok"
    assert tool["metadata"]["result"]["booking_id"] == "B0001"


# The caller's speech must be heard while the tool still runs: real time, alone.
@pytest.mark.realtime_speech
async def test_barge_in_during_a_two_second_tool_keeps_its_booking_and_result(
    backend: RefBackend, db: BackendDb, start_server: StartServer, channel_to: ChannelTo
) -> None:
    env = http_backend_env(backend.url)
    target = await warm_engine(start_server, **env)
    client = ConverseClient(channel_to(target))
    started = await open_call(client)
    await backend.faults(tool_delay_ms=2000, tool_delay_next=1)  # a 2 s tool
    client.send(text=pb.TextInput(text=BOOKING))
    await client.until("tool_started")
    heard = await say(client, "what is my booking number")  # the caller talks over the wait
    assert "booking number" in heard.lower()
    assert client.of_kind("interrupted")
    reply = await completed_reply(client)
    assert "B0001" in reply  # the next reply used the result of the interrupted turn's tool
    assert len(db.bookings()) == 1
    await backend.reset()
    client.send(end=pb.EndSession())
    await client.until("ended")
    await db.finalized(started.call_id)
    entries = db.entries(started.call_id)
    [tool] = tool_entries(entries)
    assert tool["metadata"]["outcome"] == "ok"
    assert [e["sequence"] for e in entries] == list(range(1, len(entries) + 1))


async def test_an_engine_killed_during_a_tool_call_books_at_most_once(
    backend: RefBackend, db: BackendDb, tmp_path: Path
) -> None:
    env = http_backend_env(backend.url, tmp_path / "engine-spool.sqlite3")
    async with engine_processes(tmp_path) as spawned:
        first = await spawn_engine(tmp_path, **env)
        spawned.append(first)
        async with grpc.aio.insecure_channel(first.target) as channel:
            client = ConverseClient(channel)
            client.start(ASSISTANT_ID, options=pb.SessionOptions(text_only=True))
            started = (await client.until("started")).started
            await client.until("response_done")
            await backend.faults(tool_delay_ms=5000, tool_delay_next=1)
            client.send(text=pb.TextInput(text=BOOKING))
            await client.until("tool_started")
            assert await first.kill() == -9  # the booking is in flight
        await backend.reset()
        second = await spawn_engine(tmp_path, **env)
        spawned.append(second)
        summary = await db.finalized(started.call_id)
    assert summary["end_reason"] == "engine_restarted"
    assert len(db.bookings()) <= 1
    entries = db.entries(started.call_id)
    assert [e["sequence"] for e in entries] == list(range(1, len(entries) + 1))
    # The greeting, the ask and the booking that was started; its result never came back
    # to the engine that was killed, and the backend holds it under the key the entry names.
    assert [e["role"] for e in entries] == ["assistant", "user", "tool"]
    assert entries[1]["text"] == BOOKING
    trace = entries[2]["metadata"]
    assert trace["outcome"] == "started" and trace["name"] == "book_table"
    assert trace["idempotency_key"] == f"{started.call_id}:{trace['tool_call_id']}"
