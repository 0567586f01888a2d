"""Load-test calls as ghz makes them (docs/load-testing.md): all messages at once, half-close.

ghz cannot be installed here, so these tests play its part with the very data files that
clients/ghz/make_data.py writes for it: the messages are parsed back as ghz parses them,
sent without waiting, the request stream is half-closed, and everything is read to the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from clients.ghz import make_data
from engine.audio.formats import AudioEncoding, AudioFormat
from tests.helpers.speech import spoken

ChannelTo = Callable[[str], grpc.aio.Channel]
HOURS = "We are open from noon to ten in the evening"
PCM_16K = AudioFormat(AudioEncoding.LINEAR16, 16000)


async def _ghz_call(
    channel: grpc.aio.Channel, messages: list[pb.ConverseRequest]
) -> tuple[list[pb.ConverseResponse], grpc.StatusCode]:
    async def send_all() -> AsyncIterator[pb.ConverseRequest]:
        for message in messages:
            yield message  # then the iterator ends: grpc half-closes the request stream

    call = pb_grpc.VoiceEngineServiceStub(channel).Converse(send_all(), timeout=60)
    received = [message async for message in call]
    return received, await call.code()


def _assert_complete_reply_then_ended(
    received: list[pb.ConverseResponse], code: grpc.StatusCode
) -> None:
    assert code == grpc.StatusCode.OK
    kinds = [m.WhichOneof("event") for m in received]
    assert kinds[0] == "started" and kinds[-1] == "ended"
    assert received[-1].ended.reason == pb.END_REASON_INPUT_CLOSED
    answers = [m.response_done for m in received if m.response_done.text.startswith(HOURS)]
    assert [a.status for a in answers] == [pb.RESPONSE_STATUS_COMPLETED]
    audio = [m.audio for m in received if m.audio.response_id == answers[0].response_id]
    assert audio and sum(len(a.data) for a in audio) / 32 == pytest.approx(
        answers[0].audio_ms, abs=len(audio)
    )


async def test_a_json_text_call_gets_the_complete_reply(engine: str, channel_to: ChannelTo) -> None:
    data = make_data.to_json(make_data.text_call("what are your opening hours"))
    received, code = await _ghz_call(channel_to(engine), make_data.from_json(data))
    _assert_complete_reply_then_ended(received, code)


async def test_a_binary_audio_call_gets_its_transcript_and_complete_reply(
    engine: str, channel_to: ChannelTo
) -> None:
    # Speech without trailing silence: the half-close itself ends the utterance.
    speech = await spoken("what are your opening hours", PCM_16K, tail_ms=0)
    data = make_data.to_binary(make_data.audio_call(speech, 16000, chunk_ms=100))
    received, code = await _ghz_call(channel_to(engine), make_data.from_binary(data))
    finals = [m.transcript.text for m in received if m.transcript.is_final]
    # One final for the open utterance (the recognizer's exact words are tested elsewhere).
    assert len(finals) == 1 and "opening hours" in finals[0]
    _assert_complete_reply_then_ended(received, code)


def test_ghz_data_files_hold_one_whole_call() -> None:
    speech = bytes(16000 * 2)  # one second of 16 kHz PCM
    messages = make_data.audio_call(speech, 16000, chunk_ms=40)
    for decoded in (
        make_data.from_json(make_data.to_json(messages)),
        make_data.from_binary(make_data.to_binary(messages)),
    ):
        assert decoded == messages
    assert messages[0].start.input_audio.sample_rate_hz == 16000
    assert [m.WhichOneof("request") for m in messages] == ["start"] + ["audio"] * 25
    assert {len(m.audio.data) for m in messages[1:]} == {1280}  # 40 ms each
