"""Interruptions that are not: noises and acknowledgements over a reply, against real ones.

    .venv/bin/python benchmarks/interruptions.py [--formats l16k,mulaw8k] [--mode cut|pause]
        [--classes noise,backchannel,real] [--repeat 1] [--max-sec 900]

Each trial is one call on an in-process engine (loopback, engine-only, history off, the
production output pacing ``ENGINE_OUTPUT_AUDIO_LEAD_MS=500``) to the assistant ``default``
with its greeting removed and ``interruption.mode`` set by ``--mode``: ask "what are your
opening hours" as text and, once 1.5 s of the spoken answer have arrived (about 1 s
played), stream a sound in real time in 20 ms chunks, in the call's format (LINEAR16
16 kHz or MULAW 8 kHz, in and out):

- noise: synthesized coughs (band-passed bursts), thumps (low-passed), hiss (high-passed)
  and clatter (clicks), each at two lengths;
- backchannel: "mm hmm", "okay", "right", "yeah", "uh huh" in two eSpeak NG voices;
- real: "wait", "stop", "no, no", "hold on, what about parking", "wait, stop, i have a
  question" in the same two voices.

The client plays what it receives (a simulated player: it drops its buffer on
`interrupted`) and records the gaps the caller hears. A noise or backchannel trial *goes
on* when the answer is spoken to its end (never cut, or cut and resumed) with at most one
gap and without the sound becoming a turn; a real trial is *cut* when `interrupted` comes
and the answer does not resume; time to cut is the sound's onset (the chunk holding its
first sample above the background) -> `interrupted` read; leaked audio is the cut answer's
audio read after `interrupted`.

Bounded: trials run one at a time, each within TRIAL_TIMEOUT_SEC, all within ``--max-sec``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
import yaml
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from benchmarks.interruption_sounds import FORMATS, Sound, sounds
from engine.server import EngineServer, bootstrap
from engine.settings import Settings
from tests.helpers.speech import chunks

CHUNK_MS = 20
TRIAL_TIMEOUT_SEC = 25.0
START_AFTER_MS = 1500  # of the answer's audio received before the sound starts
SETTLE_SEC = 3.0  # after `interrupted` with no resume, or after a turn: the trial is over
GAP_MS = 60  # a silence the caller hears in the answer longer than this is a gap


@dataclass
class Outcome:
    sound: Sound
    cut_ms: float | None = None  # onset -> `interrupted`
    resumed: bool = False
    completed: bool = False
    became_turn: bool = False
    leaked_ms: int = 0
    gaps_ms: list[float] = field(default_factory=list)

    @property
    def goes_on(self) -> bool:
        return self.completed and not self.became_turn and len(self.gaps_ms) <= 1

    @property
    def cut(self) -> bool:
        return self.cut_ms is not None and not self.resumed


class Player:
    """What the caller hears: audio played in order, in real time, dropped on `interrupted`."""

    def __init__(self) -> None:
        self.free_at: float | None = None  # when the buffered audio runs out
        self.gaps_ms: list[float] = []

    def audio(self, now: float, duration_ms: int) -> None:
        if self.free_at is not None and now - self.free_at > GAP_MS / 1000:
            self.gaps_ms.append((now - self.free_at) * 1000)
        start = now if self.free_at is None else max(now, self.free_at)
        self.free_at = start + duration_ms / 1000

    def drop(self, now: float) -> None:
        self.free_at = now


class Trial:
    def __init__(self, channel: grpc.aio.Channel, sound: Sound) -> None:
        self._requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        self._call = pb_grpc.VoiceEngineServiceStub(channel).Converse(self._stream())
        self._sound = sound
        self._onset_at: float | None = None
        self.outcome = Outcome(sound)

    async def _stream(self):  # type: ignore[no-untyped-def]
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, **fields: object) -> None:
        self._requests.put_nowait(pb.ConverseRequest(**fields))  # type: ignore[arg-type]

    async def run(self) -> Outcome:
        wire = FORMATS[self._sound.fmt]
        self.send(start=pb.StartSession(assistant_id="bench", input_audio=wire, output_audio=wire))
        self.send(text=pb.TextInput(text="what are your opening hours"))
        talking: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(TRIAL_TIMEOUT_SEC):
                talking = await self._read()
        except TimeoutError:
            pass
        finally:
            if talking is not None:
                talking.cancel()
            self.send(end=pb.EndSession(reason="benchmark"))
            self._requests.put_nowait(None)
            self._call.cancel()
        return self.outcome

    async def _read(self) -> asyncio.Task[None] | None:
        loop = asyncio.get_running_loop()
        out, player = self.outcome, Player()
        answer: set[str] = set()  # the answer and its resumed continuations
        cut: str | None = None
        settle_at: float | None = None
        received_ms = 0
        talking: asyncio.Task[None] | None = None
        while settle_at is None or loop.time() < settle_at:
            wait = None if settle_at is None else max(0.01, settle_at - loop.time())
            try:
                message = await asyncio.wait_for(self._call.read(), wait)
            except TimeoutError:
                break
            if message is grpc.aio.EOF:
                break
            now, kind = loop.time(), message.WhichOneof("event")
            event = getattr(message, kind)
            rid = getattr(event, "response_id", "")
            if kind == "audio" and (not answer or rid in answer):
                answer = answer or {rid}
                if rid == cut:
                    out.leaked_ms += event.duration_ms
                elif rid in answer:
                    player.audio(now, event.duration_ms)
                    received_ms += event.duration_ms
                    if received_ms >= START_AFTER_MS and talking is None:
                        talking = asyncio.create_task(self._talk())
            elif kind == "interrupted" and rid in answer and self._onset_at is not None:
                cut = rid
                out.cut_ms = out.cut_ms or (now - self._onset_at) * 1000
                player.drop(now)
                settle_at = now + SETTLE_SEC
            elif kind == "response_resumed" and event.resumed_response_id in answer:
                out.resumed, settle_at = True, None
                answer.add(rid)
            elif kind in ("assistant_text", "audio") and answer and rid not in answer:
                out.became_turn = True  # the sound was answered as a turn
                break
            elif kind == "response_done" and rid in answer and rid != cut:
                out.completed = event.status == pb.RESPONSE_STATUS_COMPLETED
                break
        out.gaps_ms = player.gaps_ms
        return talking

    async def _talk(self) -> None:
        loop = asyncio.get_running_loop()
        wire_chunks = chunks(self._sound.audio, self._sound.format, CHUNK_MS)
        start = loop.time()
        for index, piece in enumerate(wire_chunks):
            await asyncio.sleep(max(0.0, start + index * CHUNK_MS / 1000 - loop.time()))
            self.send(audio=pb.AudioInput(data=piece))
            if index == self._sound.onset_ms // CHUNK_MS:
                self._onset_at = loop.time()
        silence = self._sound.format.bytes_for_ms(CHUNK_MS)
        quiet = (b"\xff" if self._sound.fmt == "mulaw8k" else b"\0") * silence
        for index in range(len(wire_chunks), len(wire_chunks) + 400):
            await asyncio.sleep(max(0.0, start + index * CHUNK_MS / 1000 - loop.time()))
            self.send(audio=pb.AudioInput(data=quiet))


def bench_agents(directory: Path, mode: str) -> Path:
    """The default assistant without its greeting, in ``mode``."""
    source = Path(__file__).resolve().parents[1] / "engine/config/agents/default.yaml"
    document = yaml.safe_load(source.read_text())
    document.update(id="bench", greeting="")
    document["interruption"] = {**document.get("interruption", {}), "mode": mode}
    (directory / "bench.yaml").write_text(yaml.safe_dump(document))
    return directory


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, int(np.ceil(q / 100 * len(ordered)))) - 1]


def _ms(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    return f"{pct(values, 50):.0f} | {pct(values, 95):.0f} | {max(values):.0f}"


def report(outcomes: list[Outcome]) -> None:
    print(
        "| format | class | n | goes on | cut | cut <= 450 ms | cut ms p50 / p95 / max | "
        "gaps heard (trials with 0 / 1 / 2+) | gap ms p50 / p95 / max | leaked ms max |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|---|---:|")
    for fmt in FORMATS:
        for kind in ("noise", "backchannel", "real"):
            group = [o for o in outcomes if o.sound.fmt == fmt and o.sound.kind == kind]
            if not group:
                continue
            cut_ms = [o.cut_ms for o in group if o.cut and o.cut_ms is not None]
            gaps = [g for o in group for g in o.gaps_ms]
            counts = [sum(1 for o in group if len(o.gaps_ms) == n) for n in (0, 1)]
            counts.append(sum(1 for o in group if len(o.gaps_ms) >= 2))
            fast = sum(1 for ms in cut_ms if ms <= 450)
            print(
                f"| {fmt} | {kind} | {len(group)} | {sum(o.goes_on for o in group)} | "
                f"{len(cut_ms)} | {fast} | {_ms(cut_ms).replace(' | ', ' / ')} | "
                f"{' / '.join(map(str, counts))} | {_ms(gaps).replace(' | ', ' / ')} | "
                f"{max(o.leaked_ms for o in group)} |"
            )
    print()
    print("| sound | format | goes on | cut ms | resumed | spoken to the end | turn | gaps ms |")
    print("|---|---|---|---:|---|---|---|---|")
    for o in outcomes:
        cut = f"{o.cut_ms:.0f}" if o.cut_ms is not None else "-"
        gaps = ", ".join(f"{g:.0f}" for g in o.gaps_ms) or "-"
        print(
            f"| {o.sound.name} | {o.sound.fmt} | {o.goes_on} | {cut} | {o.resumed} | "
            f"{o.completed} | {o.became_turn} | {gaps} |"
        )


async def main(args: argparse.Namespace) -> None:
    if args.explain:  # each barge-in's hypotheses and decisions, on stderr
        logging.basicConfig(format="%(relativeCreated)d %(message)s")
        logging.getLogger("engine.runtime.barge_in").setLevel(logging.DEBUG)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.max_sec
    formats = args.formats.split(",")
    classes = args.classes.split(",")
    plan = [s for s in await sounds(formats) if s.kind in classes] * args.repeat
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as state:
        settings = Settings.from_env(
            {
                "ENGINE_HOST": "127.0.0.1",
                "ENGINE_PORT": "0",
                "BACKEND_MODE": "disabled",
                "HISTORY_ENABLED": "false",
                "HISTORY_SPOOL_PATH": str(Path(state) / "spool.sqlite3"),
                "ASSISTANT_LOCAL_CONFIG_DIR": str(bench_agents(Path(state), args.mode)),
                "ENGINE_OUTPUT_AUDIO_LEAD_MS": "500",
                "ENGINE_SHUTDOWN_GRACE_SEC": "1",
            }
        )
        server = EngineServer(await bootstrap(settings))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for sound in plan:
                    if loop.time() > deadline:
                        break
                    if args.explain:
                        print(f"-- {sound.name} {sound.fmt}", file=sys.stderr, flush=True)
                    outcomes.append(await Trial(channel, sound).run())
        finally:
            await server.shutdown()
    print(f"mode={args.mode} trials={len(outcomes)} of {len(plan)}")
    report(outcomes)
    cut = [o.cut_ms for o in outcomes if o.sound.kind == "real" and o.cut_ms is not None]
    if cut:
        print(f"\nreal: time to cut mean {statistics.fmean(cut):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--formats", default="l16k,mulaw8k")
    parser.add_argument("--mode", choices=("cut", "pause"), default="cut")
    parser.add_argument("--classes", default="noise,backchannel,real")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--max-sec", type=float, default=900.0)
    parser.add_argument("--explain", action="store_true", help="log barge-in decisions")
    asyncio.run(main(parser.parse_args()))
