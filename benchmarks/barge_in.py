"""Barge-in latency: the caller's speech onset -> `interrupted` on the wire.

    .venv/bin/python benchmarks/barge_in.py [--trials 10] [--reader prompt|realtime]
        [--max-sec 120]

Each trial is one call to the assistant ``default`` on an in-process engine (loopback,
engine-only, history off, the production output pacing ``ENGINE_OUTPUT_AUDIO_LEAD_MS=500``):
wait for the greeting's ``response_done``, ask "what are your opening hours" as text, and
once 300 ms of the spoken answer have arrived, stream the caller's interruption (eSpeak NG
speech with light noise) in real time in 20 ms chunks. Speech onset is when the chunk
holding the first speech sample was sent; the figure is onset -> the client reading
`interrupted`, plus how much of the cut answer's audio reached the client after the onset.

``--reader prompt`` reads every message as soon as it arrives; ``--reader realtime`` reads
audio only as fast as it would play (a client without a jitter buffer of its own), so the
engine's output backs up behind it.

Bounded: ``--trials`` calls, one at a time, and ``--max-sec`` of wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.speech import chunks, spoken

FMT = AudioFormat(AudioEncoding.LINEAR16, 16_000)
WIRE = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16_000)
CHUNK_MS = 20
SPEECH_THRESHOLD = 500  # |sample| above the padding noise: speech
TRIAL_TIMEOUT_SEC = 30.0


def onset_chunk(audio: bytes) -> int:
    """Index of the 20 ms chunk holding the first speech sample."""
    samples = np.abs(np.frombuffer(audio, dtype="<i2").astype(np.int32))
    loud = np.flatnonzero(samples > SPEECH_THRESHOLD)
    return int(loud[0]) * 2 // FMT.bytes_for_ms(CHUNK_MS)


class Trial:
    def __init__(self, channel: grpc.aio.Channel, realtime: bool) -> None:
        self._requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        stub = pb_grpc.VoiceEngineServiceStub(channel)
        self._call = stub.Converse(self._stream())
        self._realtime = realtime
        self.onset_at: float | None = None
        self.interrupted_at: float | None = None
        self.audio_after_onset_ms = 0

    async def _stream(self):  # type: ignore[no-untyped-def]
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, **fields: object) -> None:
        self._requests.put_nowait(pb.ConverseRequest(**fields))  # type: ignore[arg-type]

    async def run(self, speech: bytes) -> float:
        loop = asyncio.get_running_loop()
        self.send(
            start=pb.StartSession(assistant_id="default", input_audio=WIRE, output_audio=WIRE)
        )
        greeting_done = False
        answer_ms = 0
        answer_id = ""
        talking: asyncio.Task[None] | None = None
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    raise RuntimeError("stream ended before `interrupted`")
                kind = message.WhichOneof("event")
                if kind == "response_done" and not greeting_done:
                    greeting_done = True
                    self.send(text=pb.TextInput(text="what are your opening hours"))
                elif kind == "audio" and greeting_done:
                    answer_id = answer_id or message.audio.response_id
                    if message.audio.response_id == answer_id:
                        answer_ms += message.audio.duration_ms
                        if self.onset_at is not None:
                            self.audio_after_onset_ms += message.audio.duration_ms
                    if answer_ms >= 300 and talking is None:
                        talking = asyncio.create_task(self._talk(speech))
                    if self._realtime:
                        await asyncio.sleep(message.audio.duration_ms / 1000)
                elif kind == "interrupted":
                    self.interrupted_at = loop.time()
                    break
        finally:
            if talking is not None:
                talking.cancel()
            self.send(end=pb.EndSession(reason="benchmark"))
            self._requests.put_nowait(None)
            self._call.cancel()
        assert self.onset_at is not None and self.interrupted_at is not None
        return (self.interrupted_at - self.onset_at) * 1000

    async def _talk(self, speech: bytes) -> None:
        loop = asyncio.get_running_loop()
        first = onset_chunk(speech)
        start = loop.time()
        for index, piece in enumerate(chunks(speech, FMT, CHUNK_MS)):
            await asyncio.sleep(max(0.0, start + index * CHUNK_MS / 1000 - loop.time()))
            self.send(audio=pb.AudioInput(data=piece))
            if index == first:
                self.onset_at = loop.time()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, int(np.ceil(q / 100 * len(ordered)))) - 1]


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.max_sec
    speech = await spoken("wait, stop, i have a question", FMT, lead_ms=200, tail_ms=600)
    with tempfile.TemporaryDirectory() as state:
        settings = Settings.from_env(
            {
                "ENGINE_HOST": "127.0.0.1",
                "ENGINE_PORT": "0",
                "BACKEND_MODE": "disabled",
                "HISTORY_ENABLED": "false",
                "HISTORY_SPOOL_PATH": str(Path(state) / "spool.sqlite3"),
                "ENGINE_OUTPUT_AUDIO_LEAD_MS": "500",
                "ENGINE_SHUTDOWN_GRACE_SEC": "1",
            }
        )
        server = EngineServer(await bootstrap(settings))
        port = await server.start()
        latencies: list[float] = []
        leaked: list[int] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for _ in range(args.trials):
                    if loop.time() > deadline:
                        break
                    trial = Trial(channel, args.reader == "realtime")
                    async with asyncio.timeout(TRIAL_TIMEOUT_SEC):
                        latencies.append(await trial.run(speech))
                    leaked.append(trial.audio_after_onset_ms)
        finally:
            await server.shutdown()
    print(f"reader={args.reader} trials={len(latencies)}")
    print("| measure | n | p50 | p95 | max | mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in (
        ("speech onset -> `interrupted` read (ms)", latencies),
        ("cut answer's audio read after onset (ms)", [float(v) for v in leaked]),
    ):
        print(
            f"| {name} | {len(values)} | {pct(values, 50):.0f} | {pct(values, 95):.0f} | "
            f"{max(values):.0f} | {statistics.fmean(values):.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--reader", choices=("prompt", "realtime"), default="prompt")
    parser.add_argument("--max-sec", type=float, default=120.0)
    asyncio.run(main(parser.parse_args()))
