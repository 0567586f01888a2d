"""Callers who do not read the phrase list: the hybrid recognizer over the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.speech import chunks, silence, spoken

ChannelTo = Callable[[str], grpc.aio.Channel]
MENU_REPLY = (
    "Our menu changes with the seasons, and every course has a vegetarian and a gluten free option."
)
# The demo cancels through its cancel_booking tool; a new call has booked nothing to cancel.
CANCEL_REPLY = (
    "I could not find a booking made during this call to cancel."
    " Please call us during opening hours and we will sort it out."
)


@pytest.fixture
async def hybrid_client(
    tmp_path: Path, start_engine: StartEngine, channel_to: ChannelTo
) -> ConverseClient:
    """The default assistant, waiting as long as Whisper needs (CI machines are loaded:
    these tests check what is heard, the benchmark checks how fast)."""
    agent = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    assert agent["asr"].get("final", "whisper") == "whisper"
    agent["asr"]["final_wait_ms"] = 10_000
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "default.yaml").write_text(yaml.safe_dump(agent))
    target = await start_engine(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    return ConverseClient(channel_to(target))


async def _ask(client: ConverseClient, audio: bytes, fmt: AudioFormat) -> tuple[str, str]:
    """Send one spoken turn; its final transcript and the reply's text."""
    for piece in chunks(audio, fmt):
        client.send(audio=pb.AudioInput(data=piece))
    await asyncio.sleep(0)
    final = (await client.until("transcript")).transcript
    assert final.is_final
    done = (await client.until("response_done")).response_done
    return final.text, done.text.strip()


def _start(client: ConverseClient, fmt: AudioFormat) -> None:
    encoding = (
        pb.AUDIO_ENCODING_MULAW
        if fmt.encoding is AudioEncoding.MULAW
        else pb.AUDIO_ENCODING_LINEAR16
    )
    wire = pb.AudioFormat(encoding=encoding, sample_rate_hz=fmt.sample_rate_hz)
    client.start("default", input_audio=wire, output_audio=wire)


async def test_a_question_in_other_words_is_heard_and_answered(
    hybrid_client: ConverseClient,
) -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    _start(hybrid_client, fmt)
    await hybrid_client.until("response_done")  # the greeting
    audio = await spoken("do you have gluten free dishes", fmt)
    text, reply = await _ask(hybrid_client, audio, fmt)
    assert text == "do you have gluten free dishes"  # no phrase has "gluten" or "dishes"
    assert reply == MENU_REPLY


async def test_telephone_audio_in_another_voice_is_heard(hybrid_client: ConverseClient) -> None:
    fmt = AudioFormat(AudioEncoding.MULAW, 8000)
    _start(hybrid_client, fmt)
    await hybrid_client.until("response_done")
    audio = await spoken("i need to cancel my booking for friday", fmt, voice="en-us+m3")
    text, reply = await _ask(hybrid_client, audio, fmt)
    assert text == "i need to cancel my booking for friday"  # no phrase has "friday"
    assert reply == CANCEL_REPLY


@pytest.mark.parametrize("colour", ["white", "brown"])
async def test_loud_noise_produces_no_turn(hybrid_client: ConverseClient, colour: str) -> None:
    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    hybrid_client.start("default", options=pb.SessionOptions(text_only=True))
    await hybrid_client.until("metrics")  # the greeting's, its last event
    white = np.random.default_rng(11).normal(0, 1, 16000 * 2)
    noise = white if colour == "white" else np.cumsum(white)
    noise = noise - noise.mean()
    burst = (noise / np.abs(noise).max() * 8000).astype("<i2").tobytes()
    for piece in chunks(burst + silence(fmt, 1500), fmt):
        hybrid_client.send(audio=pb.AudioInput(data=piece))
    hybrid_client.send(end=pb.EndSession())
    kinds = {m.WhichOneof("event") for m in await hybrid_client.drain()}
    assert "transcript" not in kinds and "response_done" not in kinds
    assert "ended" in kinds
