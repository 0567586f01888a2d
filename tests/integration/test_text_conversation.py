"""A spoken text conversation end to end, over the real server and generated stubs."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from adapters.llm.scripted import ScriptedLanguageModel
from engine.runtime.assistant import parse_assistant
from engine.settings import DEFAULT_AGENTS_DIR
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient

ChannelTo = Callable[[str], grpc.aio.Channel]


def _default_replies() -> ScriptedLanguageModel:
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    config = parse_assistant(document, expected_id="default")
    return ScriptedLanguageModel.from_options(config.llm.options)


async def _response(client: ConverseClient) -> tuple[str, bytes, pb.ResponseDone]:
    """Collect one response: its text deltas, its audio, its response_done."""
    text, audio = "", b""
    while True:
        message = await client.next()
        kind = message.WhichOneof("event")
        if kind == "assistant_text":
            text += message.assistant_text.delta
        elif kind == "audio":
            audio += message.audio.data
        elif kind == "response_done":
            return text, audio, message.response_done


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_greeting_and_two_turns_are_spoken_in_the_requested_format(
    client: ConverseClient, rate: int
) -> None:
    replies = _default_replies()
    client.start(
        "default",
        output_audio=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=rate),
    )
    started = (await client.until("started")).started
    assert started.assistant.id == "default"
    assert started.assistant.config_source == pb.CONFIG_SOURCE_LOCAL
    assert started.output_audio.sample_rate_hz == rate
    assert started.call_id and started.session_id
    assert started.greeting

    greeting, greeting_audio, done = await _response(client)
    assert greeting.startswith("Hello, thank you for calling Bella Vista")
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert greeting_audio

    for question in ("what are your opening hours", "I would like to book a table"):
        client.send(text=pb.TextInput(text=question))
        text, audio, done = await _response(client)
        assert text.strip() == replies.reply_for(question)
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        assert done.heard_text == done.text == text
        # LINEAR16 at the requested rate: 2 bytes a sample, duration as reported.
        assert len(audio) % 2 == 0
        seconds = len(audio) / 2 / rate
        assert seconds == pytest.approx(done.audio_ms / 1000, abs=0.05)
        assert 2.0 < seconds < 15.0  # a spoken sentence or two, not silence

    client.send(end=pb.EndSession(reason="caller hung up"))
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_CLIENT_ENDED
    assert await client.status() == grpc.StatusCode.OK


async def test_audio_arrives_in_chunks_of_about_100_ms(client: ConverseClient) -> None:
    client.start("default")
    await client.until("response_done")
    chunks = [m.audio for m in client.of_kind("audio")]
    assert len(chunks) > 5
    assert all(c.duration_ms <= 110 for c in chunks)
    # The resampler's start-up delay and sentence ends make a few chunks shorter.
    full = [c for c in chunks if c.duration_ms >= 90]
    assert len(full) >= 0.8 * len(chunks)
    offsets = [c.offset_ms for c in chunks]
    assert offsets == sorted(offsets) and offsets[0] == 0


async def test_mulaw_output_is_one_byte_a_sample_at_8000_hz(client: ConverseClient) -> None:
    client.start("default", output_audio=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW))
    started = (await client.until("started")).started
    assert started.output_audio.encoding == pb.AUDIO_ENCODING_MULAW
    assert started.output_audio.sample_rate_hz == 8000
    _, audio, done = await _response(client)
    assert len(audio) / 8000 == pytest.approx(done.audio_ms / 1000, abs=0.05)


async def test_text_only_session_streams_text_without_audio(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    text, audio, done = await _response(client)
    assert text and not audio
    assert done.status == pb.RESPONSE_STATUS_COMPLETED


async def test_a_second_text_turn_interrupts_the_reply_in_flight(start_engine, channel_to) -> None:
    # Real-time pacing (500 ms lead): the reply is still streaming when the next turn comes.
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="500")
    client = ConverseClient(channel_to(target))
    client.start("default")
    first = await client.until("audio")
    interrupted_id = first.audio.response_id
    client.send(text=pb.TextInput(text="where are you located"))

    interrupted = await client.until("interrupted")
    assert interrupted.interrupted.response_id == interrupted_id
    done = (await client.until("response_done")).response_done
    assert done.response_id == interrupted_id
    assert done.status == pb.RESPONSE_STATUS_INTERRUPTED
    assert len(done.heard_text) < len(done.text)
    assert done.text.startswith(done.heard_text)
    # No audio of the interrupted response after `interrupted`.
    after = client.received[client.received.index(interrupted) :]
    assert not [
        m
        for m in after
        if m.WhichOneof("event") == "audio" and m.audio.response_id == interrupted_id
    ]

    echoed = [m.transcript.text for m in client.of_kind("transcript")]
    assert echoed == ["where are you located"]
    next_text = await client.until("assistant_text")
    assert next_text.assistant_text.response_id != interrupted_id
    client.send(end=pb.EndSession())
    await client.until("ended")


async def test_every_turn_reports_its_latencies(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("response_done")
    client.send(text=pb.TextInput(text="what are your opening hours"))
    await client.until("metrics")  # the greeting's
    metrics = (await client.until("metrics")).metrics
    assert metrics.HasField("llm_first_token_ms")
    assert not metrics.HasField("end_of_speech_to_final_transcript_ms")  # typed turn


async def test_half_close_ends_the_session_as_input_closed(client: ConverseClient) -> None:
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.close_requests()
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_INPUT_CLOSED
    assert await client.status() == grpc.StatusCode.OK


async def test_a_goodbye_rule_ends_the_call_after_it_is_spoken(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="300")
    client = ConverseClient(channel_to(target))
    client.start("default")
    await client.until("metrics")  # the greeting is over
    client.send(text=pb.TextInput(text="that is all, goodbye"))
    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert done.text.endswith("Goodbye.")
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_ASSISTANT_ENDED
    # The call ends only once the goodbye has had time to play out.
    last_audio = client.of_kind("audio")[-1]
    audio_end_ms = last_audio.session_time_ms + last_audio.audio.duration_ms
    ended_at_ms = client.received[-1].session_time_ms
    assert ended_at_ms >= audio_end_ms - 350  # the lead it was sent ahead, at most
    assert await client.status() == grpc.StatusCode.OK
