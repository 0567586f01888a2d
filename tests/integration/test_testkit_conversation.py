"""The test-kit assistant over the real server: speech read from the signal, carried transcripts."""

from __future__ import annotations

import asyncio

from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient

RATE = 16000
FRAME = RATE * 20 // 1000 * 2  # 20 ms of PCM16
REPLY = "We are open from noon to ten in the evening."


def _frames(sample_value: int, ms: int) -> list[bytes]:
    frame = sample_value.to_bytes(2, "little", signed=True) * (FRAME // 2)
    return [frame] * (ms // 20)


async def _say(client: ConverseClient, question_index: int) -> None:
    for frame in _frames(0, 200) + _frames(question_index + 1, 400) + _frames(0, 800):
        client.send(audio=pb.AudioInput(data=frame))
    await asyncio.sleep(0)


async def test_speech_in_the_signal_is_heard_as_the_transcript_it_carries(
    client: ConverseClient,
) -> None:
    wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
    client.start("testkit", input_audio=wire, output_audio=wire)
    await client.until("response_done")  # the greeting

    for index, expected in ((1, "where are you located"), (3, "can i see the menu")):
        await _say(client, index)
        stopped = (await client.until("speech_stopped")).speech_stopped
        final = (await client.until("transcript")).transcript
        assert (final.text, final.is_final) == (expected, True)
        done = (await client.until("response_done")).response_done
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        assert done.text.strip() == REPLY
        metrics = (await client.until("metrics")).metrics
        assert metrics.HasField("end_of_speech_to_first_audio_ms")
        assert stopped.offset_ms > 0

    # The test-kit TTS made one second of 16 kHz audio per sentence of the reply.
    audio = b"".join(m.audio.data for m in client.of_kind("audio"))
    assert len(audio) >= 3 * RATE * 2  # greeting + two replies
    client.send(end=pb.EndSession())
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_CLIENT_ENDED


async def test_digital_silence_is_no_turn(client: ConverseClient) -> None:
    wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
    client.start("testkit", input_audio=wire, output_audio=wire)
    await client.until("response_done")
    for frame in _frames(0, 2000):
        client.send(audio=pb.AudioInput(data=frame))
    client.send(end=pb.EndSession())
    await client.until("ended")
    kinds = {m.WhichOneof("event") for m in client.received}
    assert "speech_started" not in kinds and "transcript" not in kinds
