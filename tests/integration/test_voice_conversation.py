"""The real audio path over the real server: VAD, streaming ASR, endpointing, barge-in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from voiceengine.v1 import converse_pb2 as pb

from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from engine.audio.codec import StreamResampler
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR as AGENTS
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.refbackend import running_refbackend
from tests.helpers.speech import chunks, silence, spoken

ChannelTo = Callable[[str], grpc.aio.Channel]
LOCATION_REPLY = "We are at twelve Harbour Street, next to the old lighthouse."
HOURS_REPLY = (
    "We are open from noon to ten in the evening, Tuesday to Sunday. We are closed on Mondays."
)

FORMATS = [
    (pb.AUDIO_ENCODING_LINEAR16, 8000),
    (pb.AUDIO_ENCODING_LINEAR16, 16000),
    (pb.AUDIO_ENCODING_LINEAR16, 24000),
    (pb.AUDIO_ENCODING_LINEAR16, 48000),
    (pb.AUDIO_ENCODING_MULAW, 8000),
]


def _fmt(encoding: int, rate: int) -> AudioFormat:
    return AudioFormat(
        AudioEncoding.MULAW if encoding == pb.AUDIO_ENCODING_MULAW else AudioEncoding.LINEAR16,
        rate,
    )


async def _send_audio(client: ConverseClient, data: bytes, fmt: AudioFormat) -> None:
    for piece in chunks(data, fmt):
        client.send(audio=pb.AudioInput(data=piece))
    await asyncio.sleep(0)


@pytest.mark.parametrize(("encoding", "rate"), FORMATS)
async def test_a_spoken_question_gets_its_transcript_and_the_spoken_answer(
    client: ConverseClient, encoding: int, rate: int
) -> None:
    fmt = _fmt(encoding, rate)
    wire = pb.AudioFormat(encoding=encoding, sample_rate_hz=rate)
    client.start("default", input_audio=wire, output_audio=wire)
    await client.until("response_done")  # the greeting
    await _send_audio(client, await spoken("what are your opening hours", fmt), fmt)

    stopped = await client.until("speech_stopped")
    final = await client.until("transcript")
    assert final.transcript.is_final
    assert final.transcript.text == "what are your opening hours"
    assert 0 < final.transcript.confidence <= 1
    started = client.of_kind("speech_started")[0].speech_started
    assert 300 <= started.offset_ms < stopped.speech_stopped.offset_ms
    assert started.utterance_id == final.transcript.utterance_id

    done = (await client.until("response_done")).response_done
    assert done.status == pb.RESPONSE_STATUS_COMPLETED
    assert done.text.strip() == HOURS_REPLY
    metrics = (await client.until("metrics")).metrics
    assert metrics.HasField("end_of_speech_to_final_transcript_ms")
    assert metrics.HasField("end_of_speech_to_first_audio_ms")
    client.send(end=pb.EndSession())
    await client.until("ended")


async def test_the_spoken_answer_says_the_reply_text(client: ConverseClient) -> None:
    """Round trip: the answer's audio, recognized again, is the reply text."""
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    client.start("default")
    await client.until("response_done")
    await _send_audio(client, await spoken("where are you located", fmt), fmt)
    await client.until("transcript")
    audio = b""
    while True:
        message = await client.next()
        if message.WhichOneof("event") == "audio":
            audio += message.audio.data
        if message.WhichOneof("event") == "response_done":
            break
    expected = LOCATION_REPLY.rstrip(".").lower().replace(",", "")
    # A recognizer that knows the reply (and other phrases it could be confused with).
    runtime = RecognizerRuntime()
    try:
        phrases = [expected, "we are open from noon to ten"]
        stream = PocketsphinxRecognizer(phrases, runtime=runtime).start_utterance()
        await stream.feed(bytes(6400) + audio + bytes(6400))
        assert (await stream.finish()).text == expected
    finally:
        await asyncio.to_thread(runtime.close)


async def test_silence_alone_produces_no_turn(client: ConverseClient) -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("metrics")  # the greeting's, its last event
    await _send_audio(client, silence(fmt, 3000), fmt)
    client.send(end=pb.EndSession())
    rest = await client.drain()
    kinds = {m.WhichOneof("event") for m in rest}
    assert kinds == {"ended"}


@pytest.mark.realtime_speech
async def test_interim_transcripts_arrive_while_the_caller_speaks(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine()
    client = ConverseClient(channel_to(target))
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    client.start("default", options=pb.SessionOptions(interim_transcripts=True, text_only=True))
    await client.until("response_done")
    speech = await spoken("i would like to book a table", fmt)
    # Real time, so the 200 ms interim throttle has time to pass.
    for piece in chunks(speech, fmt, ms=100):
        client.send(audio=pb.AudioInput(data=piece))
        await asyncio.sleep(0.1)
    final = await client.until("transcript")
    while not final.transcript.is_final:
        final = await client.until("transcript")
    interims = [m.transcript for m in client.of_kind("transcript") if not m.transcript.is_final]
    assert interims and all(i.utterance_id == final.transcript.utterance_id for i in interims)
    assert final.transcript.text == "i would like to book a table"


@pytest.mark.realtime_speech
async def test_barge_in_interrupts_before_the_next_audio_chunk(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="300")
    client = ConverseClient(channel_to(target))
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    client.start("default")
    await client.until("started")
    greeting_audio = await client.until("audio")
    greeting_id = greeting_audio.audio.response_id
    # The caller talks over the greeting, in real time, like a person would.
    speech = await spoken("where are you located", fmt, lead_ms=200, tail_ms=1000)
    for piece in chunks(speech, fmt, ms=40):
        client.send(audio=pb.AudioInput(data=piece))
        await asyncio.sleep(0.04)
    interrupted = await client.until("interrupted")
    assert interrupted.interrupted.response_id == greeting_id
    done = (await client.until("response_done")).response_done
    assert done.response_id == greeting_id
    assert done.status == pb.RESPONSE_STATUS_INTERRUPTED
    assert done.text.startswith(done.heard_text) and len(done.heard_text) < len(done.text)
    after = client.received[client.received.index(interrupted) :]
    assert not [
        m for m in after if m.WhichOneof("event") == "audio" and m.audio.response_id == greeting_id
    ]
    final = await client.until("transcript")
    assert final.transcript.text == "where are you located"


async def test_two_concurrent_sessions_do_not_hear_each_other(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine()
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    questions = ["where are you located", "can i see the menu"]
    clients = [ConverseClient(channel_to(target)) for _ in questions]
    for client in clients:
        client.start("default", options=pb.SessionOptions(text_only=True))
    for client in clients:
        await client.until("response_done")
    speeches = [await spoken(q, fmt) for q in questions]
    # Interleave the two callers' chunks.
    for a, b in zip(chunks(speeches[0], fmt), chunks(speeches[1], fmt), strict=False):
        clients[0].send(audio=pb.AudioInput(data=a))
        clients[1].send(audio=pb.AudioInput(data=b))
    finals = [(await c.until("transcript")).transcript.text for c in clients]
    assert finals == questions


def test_resampled_speech_keeps_its_energy() -> None:
    """Guard for the helpers above: 48 kHz speech is not silence after resampling."""
    resampler = StreamResampler(16000, 48000)
    tone = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes()
    out = np.frombuffer(resampler.process(tone) + resampler.flush(), dtype=np.int16)
    assert np.abs(out).mean() > 2000


async def test_the_client_may_end_the_turn_itself(client: ConverseClient) -> None:
    """Client-side VAD: no trailing silence, an explicit end of turn instead."""
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("metrics")
    speech = await spoken("can i see the menu", fmt, tail_ms=100)
    await _send_audio(client, speech, fmt)
    client.send(control=pb.Control(action=pb.CONTROL_ACTION_END_OF_TURN))
    final = await client.until("transcript")
    assert final.transcript.is_final and final.transcript.text == "can i see the menu"
    done = (await client.until("response_done")).response_done
    assert "menu" in done.text


@pytest.mark.realtime_speech
async def test_barge_in_leaves_only_the_heard_words_in_history(
    start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    async with running_refbackend(tmp_path / "backend.sqlite3", seed_dir=AGENTS) as backend:
        target = await start_engine(
            BACKEND_URL=backend.url, BACKEND_MODE="http", ENGINE_OUTPUT_AUDIO_LEAD_MS="300"
        )
        client = ConverseClient(channel_to(target))
        fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
        client.start("default")
        started = (await client.until("started")).started
        await client.until("audio")
        speech = await spoken("where are you located", fmt, lead_ms=200, tail_ms=1000)
        for piece in chunks(speech, fmt, ms=40):
            client.send(audio=pb.AudioInput(data=piece))
            await asyncio.sleep(0.04)
        done = (await client.until("response_done")).response_done
        assert done.status == pb.RESPONSE_STATUS_INTERRUPTED
        await client.until("response_done")  # the answer to the question
        client.send(end=pb.EndSession())
        history = (await client.until("ended")).ended.history
        assert history.finalized and history.delivered == 3

        call = await backend.get_call(started.call_id)
        greeting, question, answer = call["transcripts"]
        assert greeting["role"] == "assistant" and greeting["interrupted"] is True
        assert greeting["text"] == done.heard_text
        assert len(greeting["text"]) < len(greeting["full_text"])
        assert greeting["full_text"].startswith(greeting["text"])
        assert question["text"] == "where are you located"
        assert question["metadata"]["confidence"] > 0
        assert answer["metadata"]["latency_ms"]["end_of_speech_to_first_audio_ms"] >= 0
