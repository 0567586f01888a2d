"""The hybrid recognizer's counters on /metrics: a spoken turn shows a Whisper final."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import yaml
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.settings import DEFAULT_AGENTS_DIR
from tests.helpers.converse import ConverseClient
from tests.helpers.security import metric, scrape
from tests.helpers.speech import chunks, spoken
from tests.integration.conftest import StartServer, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]
HYBRID = "voiceengine_asr_hybrid_total"


async def test_a_spoken_turn_counts_a_whisper_final(
    tmp_path: Path, start_server: StartServer, channel_to: ChannelTo
) -> None:
    agent = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    assert agent["asr"].get("final", "whisper") == "whisper"
    agent["asr"]["final_wait_ms"] = 10_000  # a loaded machine must not fall back late
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "default.yaml").write_text(yaml.safe_dump(agent))
    server = await start_server(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    assert server.metrics_port is not None
    # The recognizer's counters are per process (other tests may have spoken before).
    before = await asyncio.to_thread(scrape, server.metrics_port)

    fmt = AudioFormat(AudioEncoding.LINEAR16, 16000)
    wire = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000)
    client = ConverseClient(channel_to(target_of(server)))
    client.start("default", input_audio=wire, output_audio=wire)
    await client.until("response_done")  # the greeting
    for piece in chunks(await spoken("do you have gluten free dishes", fmt), fmt):
        client.send(audio=pb.AudioInput(data=piece))
    final = (await client.until("transcript")).transcript
    assert final.is_final and final.text == "do you have gluten free dishes"
    await client.until("response_done")
    client.send(end=pb.EndSession())
    await client.drain()

    after = await asyncio.to_thread(scrape, server.metrics_port)
    assert metric(after, HYBRID, event="whisper") == metric(before, HYBRID, event="whisper") + 1
    for fallback in ("fallback_saturated", "fallback_failed", "fallback_late"):
        assert metric(after, HYBRID, event=fallback) == metric(before, HYBRID, event=fallback)
    completed = "voiceengine_whisper_pool_requests_total"
    assert metric(after, completed, outcome="completed") > metric(
        before, completed, outcome="completed"
    )
    assert "voiceengine_whisper_pool_workers" in after
