"""The peer: the load benchmark's session pattern through Pipecat, with equally fake services.

    .venv/bin/python benchmarks/peers/pipecat.py            # makes .tools/pipecat-venv, sweeps
    .venv/bin/python benchmarks/peers/pipecat.py --sweep 1,10,20

Pipecat (PyPI ``pipecat-ai``, pinned below) is installed into its own venv under
``.tools/`` on first use, never into the engine's. Each point runs in a fresh process
pinned to ``--cpus`` (default core 0): N Pipecat pipelines (``PipelineWorker`` run by
``WorkerRunner``), each ``[signal VAD + STT, LLM, TTS, sink]`` as FrameProcessors that do
what our test kit does: speech is any non-zero sample and ends after 600 ms of digital
silence, the transcript is carried by the sample value, the LLM streams a fixed reply word
by word, the TTS emits 1 s of ready-made 16 kHz audio per sentence in 100 ms frames.
There is no network transport (the reference figure of 12 pipelines per core is without
one too): a feeder task per pipeline queues 20 ms ``InputAudioRawFrame``s in real time,
question (1.2 s), silence until the reply's audio is over, a random 1-4 s pause, again.

Turn overhead: from queueing the frame that completes the end silence to the first TTS
audio frame reaching the sink. Per point: p50/p95/p99, the process's CPU (feeder
included), RSS, frames the feeder was late. Bounded by ``--duration-sec`` per point and
``--max-sec`` overall; stops when p95 is over the single-pipeline p95 + ``--budget-ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PIPECAT = "pipecat-ai==1.14.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".tools" / "pipecat-venv"
RATE = 16000
FRAME_BYTES = 640
END_SILENCE_FRAMES = 30  # 600 ms
SPEECH_FRAMES = 60  # 1.2 s
REPLY = "We are open from noon to ten in the evening."
TRANSCRIPTS = ["what are your opening hours", "where are you located"]


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    ok = (
        python.exists()
        and subprocess.run([str(python), "-c", "import pipecat"], capture_output=True).returncode
        == 0
    )
    if not ok:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PIPECAT], check=True)
    return python


async def _point(n: int, duration: float, seed: int) -> dict[str, object]:
    import asyncio
    import random
    import resource

    from loguru import logger

    # INFO, as the engine logs: Pipecat's DEBUG default writes lines per frame batch.
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    from pipecat.frames.frames import (
        Frame,
        InputAudioRawFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    zeros = bytes(FRAME_BYTES)
    reply_audio = [bytes(RATE * 2 // 10)] * 10  # 1 s in 100 ms frames, ready-made

    class Turn:
        def __init__(self) -> None:
            self.eot_at = 0.0
            self.first_audio_at = 0.0
            self.done = asyncio.Event()

    class SignalVadStt(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.value = 0
            self.silent = 0

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if not isinstance(frame, InputAudioRawFrame):
                await self.push_frame(frame, direction)
                return
            if frame.audio != zeros:
                self.value = self.value or next(
                    abs(s) for s in memoryview(frame.audio).cast("h") if s
                )
                self.silent = 0
            elif self.value:
                self.silent += 1
                if self.silent >= END_SILENCE_FRAMES:
                    text = TRANSCRIPTS[(self.value - 1) % len(TRANSCRIPTS)]
                    self.value = 0
                    await self.push_frame(TranscriptionFrame(text, "caller", ""))

    class FixedLlm(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if not isinstance(frame, TranscriptionFrame):
                await self.push_frame(frame, direction)
                return
            await self.push_frame(LLMFullResponseStartFrame())
            for word in re.findall(r"\S+\s*", REPLY):
                await self.push_frame(LLMTextFrame(word))
            await self.push_frame(LLMFullResponseEndFrame())

    class FixedTts(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.text = ""

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMTextFrame):
                self.text += frame.text
                if self.text.rstrip().endswith((".", "?", "!")):
                    self.text = ""
                    for chunk in reply_audio:
                        await self.push_frame(TTSAudioRawFrame(chunk, RATE, 1))
                return
            if isinstance(frame, LLMFullResponseEndFrame):
                await self.push_frame(TTSStoppedFrame())
                return
            await self.push_frame(frame, direction)

    class Sink(FrameProcessor):
        def __init__(self, session: dict[str, Turn | None]) -> None:
            super().__init__()
            self.session = session

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            turn = self.session["turn"]
            if turn is not None and isinstance(frame, TTSAudioRawFrame):
                if not turn.first_audio_at:
                    turn.first_audio_at = time.perf_counter()
            elif turn is not None and isinstance(frame, TTSStoppedFrame):
                turn.done.set()
            await self.push_frame(frame, direction)

    loop = asyncio.get_running_loop()
    overheads: list[float] = []
    late = [0, 0]

    async def session(rng: random.Random, start_at: float, stop_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        state: dict[str, Turn | None] = {"turn": None}
        worker = PipelineWorker(
            Pipeline([SignalVadStt(), FixedLlm(), FixedTts(), Sink(state)]),
            idle_timeout_secs=None, enable_rtvi=False, check_dangling_tasks=False,
        )  # fmt: skip
        runner = asyncio.create_task(WorkerRunner(handle_sigint=False).run(worker))
        next_at = loop.time()

        async def send(audio: bytes) -> None:
            nonlocal next_at
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.010:
                late[0] += 1
            late[1] += 1
            await worker.queue_frame(InputAudioRawFrame(audio=audio, sample_rate=RATE,
                                                        num_channels=1))  # fmt: skip
            next_at += 0.020

        q = 0
        while loop.time() < stop_at:
            for _ in range(int(rng.uniform(1.0, 4.0) / 0.02)):
                await send(zeros)
            turn = Turn()
            state["turn"] = turn
            speech = (q % len(TRANSCRIPTS) + 1).to_bytes(2, "little", signed=True) * 320
            for _ in range(SPEECH_FRAMES):
                await send(speech)
            for i in range(END_SILENCE_FRAMES):
                await send(zeros)
                if i == END_SILENCE_FRAMES - 1:
                    turn.eot_at = time.perf_counter()
            deadline = loop.time() + 10
            while not turn.done.is_set() and loop.time() < deadline:
                await send(zeros)
            for _ in range(50):  # the reply's 1 s of audio is "played"
                await send(zeros)
            if turn.first_audio_at:
                overheads.append((turn.first_audio_at - turn.eot_at) * 1000)
            q += 1
        await worker.cancel()
        await asyncio.wait_for(runner, 10)

    rng = random.Random(seed)
    t0 = loop.time()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    starts = [t0 + rng.uniform(0, 3.0) for _ in range(n)]
    await asyncio.gather(*(session(random.Random(rng.random()), s, t0 + 3.0 + duration)
                           for s in starts))  # fmt: skip
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "n": n,
        "overheads": overheads,
        "cpu_pct": 100 * cpu / (loop.time() - t0),
        "rss_mib": usage1.ru_maxrss / 1024,
        "late_pct": 100 * late[0] / max(1, late[1]),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(q / 100 * len(ordered) + 0.999) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", default="1,5,10,15,20,30,40,60")
    parser.add_argument("--cpus", default="0")
    parser.add_argument("--duration-sec", type=float, default=20.0)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--max-sec", type=float, default=900.0)
    parser.add_argument("--nice", type=int, default=0, help="niceness of each point's process")
    parser.add_argument("--inside", type=int, help=argparse.SUPPRESS)  # one point, in the venv
    args = parser.parse_args()
    if args.inside is not None:
        import asyncio

        # This file is named like the package: drop its folder so `import pipecat` finds Pipecat.
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]

        print(json.dumps(asyncio.run(_point(args.inside, args.duration_sec, args.inside))))
        return 0
    python = _venv_python()
    version = subprocess.run([str(python), "-c", "import pipecat; print(pipecat.__version__)"],
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    print(f"# benchmarks/peers/pipecat.py {' '.join(sys.argv[1:])}: pipecat-ai {version}, "
          f"load average {os.getloadavg()[0]:.2f} at start")  # fmt: skip
    print("| pipelines | process CPU (feeder incl.) | pipelines per core at this load | RSS MiB "
          "| turn overhead p50 / p95 / p99 ms | turns | feeder late |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = None
    deadline = time.monotonic() + args.max_sec
    rss_one = None
    for n in [int(x) for x in args.sweep.split(",") if x.strip()]:
        if time.monotonic() > deadline:
            break
        cmd = [str(python), str(Path(__file__).resolve()), "--inside", str(n),
               "--duration-sec", str(args.duration_sec)]  # fmt: skip
        if args.cpus:
            cmd = ["taskset", "-c", args.cpus, *cmd]
        if args.nice:
            cmd = ["nice", "-n", str(args.nice), *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration_sec + 120)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(f"# point {n} failed: {out.stderr[-1500:]}")
            break
        point = json.loads(lines[-1])
        values = point["overheads"]
        cpu = point["cpu_pct"]
        rss_one = rss_one if rss_one is not None else point["rss_mib"]
        per_extra = (point["rss_mib"] - rss_one) / max(1, n - 1) if n > 1 else 0.0
        print(f"| {n} | {cpu:.0f}% | {n / max(1e-9, cpu / 100):.0f} | {point['rss_mib']:.0f} "
              f"({per_extra:.2f}/extra) | {_pct(values, 50):.1f} / {_pct(values, 95):.1f} / "
              f"{_pct(values, 99):.1f} | {len(values)} | {point['late_pct']:.1f}% |",
              flush=True)  # fmt: skip
        p95 = _pct(values, 95)
        if base is None:
            base = p95
        elif p95 > base + args.budget_ms or cpu > 95:
            print("# over budget (p95 or a saturated core): stop")
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
