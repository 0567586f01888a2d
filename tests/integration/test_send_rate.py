"""What the caller said does not depend on how fast the client sends it (real server)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import grpc
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.speech import spoken

ChannelTo = Callable[[str], grpc.aio.Channel]
FMT = AudioFormat(AudioEncoding.LINEAR16, 16000)
# Other wordings than the listed phrases (the grammar's guess differs from what was said),
# short and long, and one listed phrase.
QUESTIONS = (
    "how late is the kitchen open",
    "is the restaurant open on christmas eve",
    "where are you located",
)
# How each client paces its chunks: (chunk sizes in ms, speed; 0 = as fast as it can).
PACINGS: dict[str, tuple[Callable[[random.Random], int], float]] = {
    "real time": (lambda _: 20, 1.0),
    "10x real time": (lambda _: 20, 10.0),
    "as fast as possible": (lambda _: 100, 0.0),
    "jittered 20-200 ms chunks": (lambda rng: rng.randrange(20, 201, 20), 1.0),
}


async def _send_paced(client: ConverseClient, audio: bytes, pacing: str, seed: int) -> None:
    size_of, speed = PACINGS[pacing]
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    began, sent_ms, position = loop.time(), 0, 0
    while position < len(audio):
        ms = size_of(rng)
        client.send(audio=pb.AudioInput(data=audio[position : position + FMT.bytes_for_ms(ms)]))
        position += FMT.bytes_for_ms(ms)
        sent_ms += ms
        if speed:
            # A paced client sends each chunk once it has been captured.
            await asyncio.sleep(max(0.0, began + sent_ms / 1000 / speed - loop.time()))
    await asyncio.sleep(0)


async def _transcripts(target: str, channel_to: ChannelTo, pacing: str) -> list[tuple[str, str]]:
    client = ConverseClient(channel_to(target))
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("response_done")  # the greeting
    heard = []
    for seed, question in enumerate(QUESTIONS):
        await _send_paced(client, await spoken(question, FMT), pacing, seed)
        final = (await client.until("transcript", timeout=60)).transcript
        assert final.is_final
        heard.append((final.text, final.source))
        await client.until("response_done", timeout=60)
    client.send(end=pb.EndSession())
    await client.until("ended")
    return heard


async def test_the_same_clips_give_the_same_transcripts_at_any_send_rate(
    start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    target = await start_engine()
    by_pacing = {pacing: await _transcripts(target, channel_to, pacing) for pacing in PACINGS}
    in_real_time = by_pacing["real time"]
    # Heard, not guessed: Whisper's text, or a listed phrase the grammar confirmed.
    assert all(source in ("whisper", "grammar") for _, source in in_real_time), in_real_time
    for pacing, heard in by_pacing.items():
        assert heard == in_real_time, pacing
