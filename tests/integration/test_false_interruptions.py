"""Barge-in over the real server: a noise resumes the reply, an acknowledgement leaves it alone."""

from __future__ import annotations

from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.integration.conftest import StartServer, target_of

RATE = 16000
FRAME_BYTES = RATE * 20 // 1000 * 2
WIRE = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
REPLY = "We are open from noon to ten. We are closed on Mondays. Bookings are welcome."
# What the test-kit recognizer hears when an utterance's first sample has value 1, 2, 3, 4
# (or -1, -2...: the test-kit VAD hears no pitch in negative samples, as in a cough).
HEARD = ("uh", "mm hmm", "wait stop", "thank you")

ASSISTANT = f"""\
id: listener
name: Listener
llm:
  provider: testkit
  reply: {REPLY}
  token_delay_ms: 0
tts:
  provider: testkit
  duration_ms: 1000
  sample_rate_hz: {RATE}
asr:
  provider: testkit
  transcripts: [{", ".join(HEARD)}]
vad:
  provider: testkit
  frame_ms: 20
  min_speech_ms: 60
  end_silence_ms: 300
  pre_speech_pad_ms: 0
interruption:
  min_speech_ms: 200
"""


def _sound(heard: int, ms: int, *, voice: bool = True) -> list[bytes]:
    value = heard + 1 if voice else -(heard + 1)
    frame = value.to_bytes(2, "little", signed=True) * (FRAME_BYTES // 2)
    return [frame] * (ms // 20) + [b"\0" * FRAME_BYTES] * 25


async def _reply_playing(tmp_path: Path, start_server: StartServer) -> ConverseClient:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "listener.yaml").write_text(ASSISTANT)
    # Real-time output pacing, so that the reply is still playing when the caller speaks.
    server = await start_server(
        ASSISTANT_LOCAL_CONFIG_DIR=str(agents), ENGINE_OUTPUT_AUDIO_LEAD_MS="200"
    )
    channel = grpc.aio.insecure_channel(target_of(server))
    client = ConverseClient(channel)
    client.start("listener", input_audio=WIRE, output_audio=WIRE)
    client.send(text=pb.TextInput(text="when are you open"))
    await client.until("audio")
    return client


async def _speak_over(client: ConverseClient, heard: int, *, voice: bool = True) -> None:
    for frame in _sound(heard, 400, voice=voice):
        client.send(audio=pb.AudioInput(data=frame))


async def test_a_noise_during_the_reply_resumes_it_from_what_was_not_heard(
    tmp_path: Path, start_server: StartServer
) -> None:
    client = await _reply_playing(tmp_path, start_server)
    await _speak_over(client, HEARD.index("uh"))
    cut = (await client.until("interrupted")).interrupted
    resumed = (await client.until("response_resumed")).response_resumed
    assert resumed.resumed_response_id == cut.response_id != resumed.response_id
    assert f"{resumed.heard_text} {resumed.resumed_from_text}".strip() == REPLY
    client.close_requests()
    rest = await client.drain()
    done = [m.response_done for m in rest if m.WhichOneof("event") == "response_done"]
    assert [(d.response_id, d.status) for d in done] == [
        (resumed.response_id, pb.RESPONSE_STATUS_COMPLETED)
    ]
    assert any(m.audio.response_id == resumed.response_id for m in rest if m.HasField("audio"))
    assert not [
        m
        for m in rest
        if m.WhichOneof("event") == "transcript"
        and m.transcript.is_final
        and m.transcript.text != "uh"
    ]


async def _the_reply_went_on_untouched(client: ConverseClient) -> None:
    """The caller hangs up; the reply was never interrupted or resumed, and ended whole."""
    client.close_requests()
    rest = await client.drain()
    kinds = [m.WhichOneof("event") for m in rest]
    assert "interrupted" not in kinds and "response_resumed" not in kinds
    [done] = [m.response_done for m in rest if m.WhichOneof("event") == "response_done"]
    assert done.status == pb.RESPONSE_STATUS_COMPLETED and done.text.strip() == REPLY


async def test_an_acknowledgement_during_the_reply_does_not_interrupt_it(
    tmp_path: Path, start_server: StartServer
) -> None:
    client = await _reply_playing(tmp_path, start_server)
    await _speak_over(client, HEARD.index("mm hmm"))
    await _the_reply_went_on_untouched(client)


async def test_a_real_interruption_cuts_the_reply_and_is_answered(
    tmp_path: Path, start_server: StartServer
) -> None:
    client = await _reply_playing(tmp_path, start_server)
    await _speak_over(client, HEARD.index("wait stop"))
    cut = (await client.until("interrupted")).interrupted
    client.close_requests()
    rest = await client.drain()
    assert not [m for m in rest if m.HasField("audio") and m.audio.response_id == cut.response_id]
    assert "response_resumed" not in [m.WhichOneof("event") for m in rest]
    finals = [m.transcript.text for m in rest if m.HasField("transcript")]
    assert "wait stop" in finals


async def test_a_sound_without_a_voice_is_neither_a_barge_in_nor_a_turn(
    tmp_path: Path, start_server: StartServer
) -> None:
    client = await _reply_playing(tmp_path, start_server)
    # A cough that the recognizer hears as words, as Whisper does with "thank you".
    await _speak_over(client, HEARD.index("thank you"), voice=False)
    await _the_reply_went_on_untouched(client)
