"""How input ends: a half-close answers what was sent, and a caller who stops sending
audio mid-utterance still gets the turn ended by the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR as AGENTS
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.refbackend import running_refbackend
from tests.helpers.speech import chunks, spoken

ChannelTo = Callable[[str], grpc.aio.Channel]
QUESTION = "what are your opening hours"
HOURS_REPLY = (
    "We are open from noon to ten in the evening, Tuesday to Sunday. We are closed on Mondays."
)
PCM16K = AudioFormat(AudioEncoding.LINEAR16, 16_000)
WIRE = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16_000)


def _kinds(messages: list[pb.ConverseResponse]) -> list[str]:
    return [m.WhichOneof("event") or "" for m in messages]


def _reply_to(messages: list[pb.ConverseResponse], text: str) -> pb.ResponseDone:
    for message in messages:
        done = message.response_done
        if message.WhichOneof("event") == "response_done" and done.text.strip() == text:
            return done
    raise AssertionError(f"no response_done with {text!r} in {_kinds(messages)}")


async def test_send_all_then_half_close_gets_the_complete_typed_reply(
    client: ConverseClient,
) -> None:
    # A ghz-style client: every message at once, then it closes its side.
    client.start("default")
    client.send(text=pb.TextInput(text=QUESTION))
    client.close_requests()
    messages = await client.drain()
    assert await client.status() == grpc.StatusCode.OK

    kinds = _kinds(messages)
    assert kinds[-1] == "ended"
    assert messages[-1].ended.reason == pb.END_REASON_INPUT_CLOSED
    done = _reply_to(messages, HOURS_REPLY)
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert done.heard_text == done.text
    transcript = next(m.transcript for m in messages if m.WhichOneof("event") == "transcript")
    assert transcript.text == QUESTION and transcript.is_final
    reply_id = done.response_id
    text = "".join(
        m.assistant_text.delta
        for m in messages
        if m.WhichOneof("event") == "assistant_text" and m.assistant_text.response_id == reply_id
    )
    assert text.strip() == HOURS_REPLY
    audio = [m.audio for m in messages if m.WhichOneof("event") == "audio"]
    reply_audio = [a for a in audio if a.response_id == reply_id]
    assert sum(a.duration_ms for a in reply_audio) == done.audio_ms > 1000
    # The reply is complete before the session ends: response_done, then `ended`.
    done_at = next(
        i
        for i, m in enumerate(messages)
        if m.WhichOneof("event") == "response_done" and m.response_done.response_id == reply_id
    )
    assert done_at < len(messages) - 1


async def test_speech_then_half_close_gets_the_open_utterance_answered(
    client: ConverseClient,
) -> None:
    speech = await spoken(QUESTION, PCM16K, tail_ms=60)  # cut off right after the words
    client.start("default", input_audio=WIRE, output_audio=WIRE)
    for piece in chunks(speech, PCM16K):
        client.send(audio=pb.AudioInput(data=piece))
    client.close_requests()
    messages = await client.drain()
    assert await client.status() == grpc.StatusCode.OK

    finals = [
        m.transcript for m in messages
        if m.WhichOneof("event") == "transcript" and m.transcript.is_final
    ]  # fmt: skip
    # One final for the open utterance (the recognizer's exact words are tested elsewhere;
    # speech cut off mid-word may come out as "what are you opening hours").
    assert len(finals) == 1 and "opening hours" in finals[0].text
    done = _reply_to(messages, HOURS_REPLY)
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert _kinds(messages)[-1] == "ended"
    assert messages[-1].ended.reason == pb.END_REASON_INPUT_CLOSED


async def test_end_still_hangs_up_at_once(start_engine: StartEngine, channel_to: ChannelTo) -> None:
    # Paced output (as in production): the reply is still playing when `end` is read. An
    # unpaced reply can be whole before the reader gets to the next message.
    client = ConverseClient(channel_to(await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="500")))
    client.start("default")
    client.send(text=pb.TextInput(text=QUESTION))
    client.send(end=pb.EndSession(reason="bye"))
    client.close_requests()
    messages = await client.drain()
    assert messages[-1].ended.reason == pb.END_REASON_CLIENT_ENDED
    assert await client.status() == grpc.StatusCode.OK
    # Nothing was completed: the reply in flight was cut by the hang-up.
    completed = [
        m for m in messages
        if m.WhichOneof("event") == "response_done"
        and m.response_done.status == pb.RESPONSE_STATUS_COMPLETED
        and m.response_done.text.strip() == HOURS_REPLY
    ]  # fmt: skip
    assert completed == []


async def test_a_half_closed_call_is_recorded_whole_in_the_history(
    tmp_path: Path, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    async with running_refbackend(tmp_path / "backend.sqlite3") as backend:
        await backend.put_assistant(yaml.safe_load((AGENTS / "default.yaml").read_text()))
        target = await start_engine(BACKEND_MODE="http", BACKEND_URL=backend.url)
        client = ConverseClient(channel_to(target))
        client.start("default", options=pb.SessionOptions(text_only=True))
        client.send(text=pb.TextInput(text=QUESTION))
        client.close_requests()
        messages = await client.drain()
        call_id = messages[0].started.call_id
        assert messages[-1].ended.history.finalized
        call = await backend.get_call(call_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while call["summary"] is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
            call = await backend.get_call(call_id)
        assert call["summary"]["end_reason"] == "input_closed"
        entries = [(e["role"], e["text"].strip()) for e in call["transcripts"]]
        assert ("user", QUESTION) in entries
        assert entries[-1] == ("assistant", HOURS_REPLY)


@pytest.mark.realtime_speech
async def test_a_caller_who_stops_sending_mid_utterance_gets_the_turn_ended_by_the_clock(
    client: ConverseClient,
) -> None:
    # Silence suppression: the audio stops with the words; no END_OF_TURN, no half-close.
    speech = await spoken(QUESTION, PCM16K, tail_ms=60)
    client.start("default", input_audio=WIRE, output_audio=WIRE)
    await client.until("response_done")  # the greeting
    for piece in chunks(speech, PCM16K):
        client.send(audio=pb.AudioInput(data=piece))
    final = await client.until("transcript")
    while not final.transcript.is_final:
        final = await client.until("transcript")
    assert "opening hours" in final.transcript.text  # cut off mid-word: "you" or "your"
    done = (await client.until("response_done")).response_done
    assert done.text.strip() == HOURS_REPLY
    client.send(end=pb.EndSession())
    assert (await client.until("ended")).ended.reason == pb.END_REASON_CLIENT_ENDED
