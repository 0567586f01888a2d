"""AudioOutput timing on the wire, and response_done as the proto documents it."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient

FORMATS = [
    (pb.AUDIO_ENCODING_LINEAR16, 8000, 2),
    (pb.AUDIO_ENCODING_LINEAR16, 16000, 2),
    (pb.AUDIO_ENCODING_LINEAR16, 24000, 2),
    (pb.AUDIO_ENCODING_LINEAR16, 48000, 2),
    (pb.AUDIO_ENCODING_MULAW, 8000, 1),
]


def _audio_of(messages: list[pb.ConverseResponse], response_id: str) -> list[pb.AudioOutput]:
    return [
        m.audio for m in messages
        if m.WhichOneof("event") == "audio" and m.audio.response_id == response_id
    ]  # fmt: skip


@pytest.mark.parametrize(("encoding", "rate", "sample_bytes"), FORMATS)
async def test_audio_chunks_are_exact_even_and_contiguous(
    client: ConverseClient, encoding: int, rate: int, sample_bytes: int
) -> None:
    wire = pb.AudioFormat(encoding=encoding, sample_rate_hz=rate)
    client.start("default", input_audio=wire, output_audio=wire)
    done = (await client.until("response_done")).response_done  # the greeting
    client.send(end=pb.EndSession())
    await client.until("ended")

    audio = _audio_of(client.received, done.response_id)
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    position = 0
    for chunk in audio:
        assert chunk.offset_ms == position
        assert len(chunk.data) == chunk.duration_ms * rate // 1000 * sample_bytes
        position += chunk.duration_ms
    assert {a.duration_ms for a in audio[:-1]} == {100}
    assert 0 < audio[-1].duration_ms <= 100
    assert done.audio_ms == position


async def test_a_typed_turn_before_the_greeting_audio_reports_what_was_sent(
    start_engine: StartEngine, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    # Paced output (as in production): the greeting is still being sent when the text
    # arrives. Unpaced, a greeting the sentence cache holds is all sent at once.
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="500")
    client = ConverseClient(channel_to(target))
    client.start("default")
    client.send(text=pb.TextInput(text="what are your opening hours"))
    client.close_requests()
    messages = await client.drain()
    assert await client.status() == grpc.StatusCode.OK

    done = [m.response_done for m in messages if m.WhichOneof("event") == "response_done"]
    greeting, reply = done[0], done[-1]
    assert greeting.status == pb.RESPONSE_STATUS_INTERRUPTED
    assert reply.status == pb.RESPONSE_STATUS_COMPLETED
    for response in (greeting, reply):
        sent = _audio_of(messages, response.response_id)
        assert response.audio_ms == sum(a.duration_ms for a in sent)
    if greeting.audio_ms == 0:
        assert greeting.heard_text == ""
    interrupted = next(m.interrupted for m in messages if m.WhichOneof("event") == "interrupted")
    assert interrupted.response_id == greeting.response_id
    assert interrupted.heard_ms <= greeting.audio_ms


async def test_a_barge_in_mid_reply_reports_sent_audio_and_heard_words_apart(
    start_engine: StartEngine, channel_to: Callable[[str], grpc.aio.Channel]
) -> None:
    # Paced output (as in production), so the reply is still in flight when cut.
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="500")
    client = ConverseClient(channel_to(target))
    client.start("default")
    greeting = (await client.until("response_done")).response_done
    client.send(text=pb.TextInput(text="what are your opening hours"))
    first = (await client.until("audio")).audio
    # The client reports it played 600 ms of the reply, then the caller cuts in.
    client.send(playback=pb.PlaybackProgress(response_id=first.response_id, played_ms=600))
    await client.until("audio")
    client.send(control=pb.Control(action=pb.CONTROL_ACTION_INTERRUPT))
    interrupted = (await client.until("interrupted")).interrupted
    done = (await client.until("response_done")).response_done
    client.send(end=pb.EndSession())
    await client.until("ended")

    assert greeting.status == pb.RESPONSE_STATUS_COMPLETED
    assert done.status == pb.RESPONSE_STATUS_INTERRUPTED
    sent = _audio_of(client.received, done.response_id)
    assert done.audio_ms == sum(a.duration_ms for a in sent)
    assert interrupted.heard_ms == min(600, done.audio_ms)
    assert done.heard_text and done.text.startswith(done.heard_text.split()[0])
    assert len(done.heard_text) < len(done.text)
