"""Early reply on and off, voice to voice at the client, with a model of known first-token latency.

    .venv/bin/python benchmarks/early_reply.py [--first-token-ms 300] [--turns semantic,fixed]
        [--voices en-us+f3:160,en-us+m3:190] [--rounds 1] [--kinds listed,other] [--max-sec 900]

The demo assistant with its model replaced by an OpenAI-compatible server on loopback (the
tests' fake, in this process) that sends its first token ``--first-token-ms`` after the
request and then a word every 20 ms; one engine child process (``python -m engine serve``,
one worker). Complete questions of benchmarks/turn_taking.py (listed phrases and other
wordings, two voices, 16 kHz and 8 kHz mu-law; ``--kinds paused``: its sentences with a pause
mid-sentence, to count the early replies a caller who goes on costs), in real time, one call
at a time. For each end of turn (``semantic``: Smart Turn as shipped; ``fixed``: 600 ms of
silence) the early reply is on and off, alternated call by call on the same clips.

Per mode: voice to voice at the client (the chunk holding the last speech sample sent -> the
reply's first audio chunk received) p50 / p95 / mean over the calls the model answered (not
the unsure reply, which never asks it); the engine's early replies started, used and
discarded (``voiceengine_early_replies_total``, scraped around each call); engine CPU per
call. ``--log``: the engine's early-reply and turn lines under each call. Bounded: a fixed set of
calls, a per-call timeout (benchmarks/turn_taking.py), ``--max-sec`` for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks.loadkit import machine, percentile, tree_cpu_sec
from benchmarks.turn_taking import Call, calls, run_call
from engine.settings import DEFAULT_AGENTS_DIR
from tests.helpers.engine_process import free_port, spawn_engine
from tests.helpers.fake_openai import running_fake_openai
from tests.helpers.security import metric, scrape

REPO = Path(__file__).resolve().parents[1]
REPLY = "We are open from noon to ten in the evening. We are closed on Mondays."
WORD_GAP_SEC = 0.02
OUTCOMES = ("started", "used", "discarded")
TURNS = {"semantic": {"detector": "smart_turn"}, "fixed": {"detector": "none"}}


@dataclass
class Tally:
    calls: int = 0
    answered: int = 0  # by the model (its reply), not the unsure reply
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    errors: int = 0
    v2v: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def agents_dir(root: Path, llm_url: str) -> list[str]:
    """``<turn>-early`` and ``<turn>-late`` for each end of turn: the demo assistant with
    the loopback model; returns the mode names."""
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    modes = []
    for turn, settings in TURNS.items():
        for early in (True, False):
            mode = f"{turn}-{'early' if early else 'late'}"
            copy = {
                **document,
                "id": mode,
                "greeting": "Hi.",
                "llm": {"provider": "openai", "model": "fake-model", "base_url": llm_url},
                "turn": {**document.get("turn", {}), **settings, "early_reply": early},
            }
            (root / f"{mode}.yaml").write_text(yaml.safe_dump(copy))
            modes.append(mode)
    return modes


async def run(args: argparse.Namespace) -> dict[str, Tally]:
    voices = [(v.split(":")[0], int(v.split(":")[1])) for v in args.voices.split(",")]
    tallies: dict[str, Tally] = {}
    async with running_fake_openai() as llm:
        words = re.findall(r"\S+\s*", REPLY)
        llm.reply(words, gap_sec=WORD_GAP_SEC, first_token_sec=args.first_token_ms / 1000)
        with tempfile.TemporaryDirectory() as tmp:
            modes = [
                m for m in agents_dir(Path(tmp), llm.base_url) if m.split("-")[0] in args.turns
            ]
            planned = await calls(voices, modes, ["realtime"], args.kinds.split(","))
            planned *= args.rounds
            print(f"{machine()}\n{len(planned)} calls, modes {modes} alternated, one at a time")
            metrics_port = free_port()
            engine = await spawn_engine(
                REPO,
                ASSISTANT_LOCAL_CONFIG_DIR=tmp,
                HISTORY_SPOOL_PATH="",
                LLM_ALLOWED_BASE_URLS=llm.base_url,
                ENGINE_METRICS_PORT=str(metrics_port),
                **({"ENGINE_LOG_LEVEL": "DEBUG"} if args.log else {}),
            )
            try:
                deadline = time.monotonic() + args.max_sec
                for n, call in enumerate(planned):
                    if time.monotonic() > deadline:
                        print(f"--max-sec reached after {n} of {len(planned)} calls")
                        break
                    tally = tallies.setdefault(call.mode, Tally())
                    before = await _early_counts(metrics_port)
                    seen = len(engine.log)
                    await _one(engine.target, engine.proc.pid, call, tally)
                    after = await _early_counts(metrics_port)
                    for outcome in OUTCOMES:
                        tally.counts[outcome] += after[outcome] - before[outcome]
                    if args.log:
                        keep = ("early_reply", "speech_input", "hybrid")
                        lines = [ln for ln in engine.log[seen:] if any(k in ln for k in keep)]
                        print(call.mode, call.text, *(f"  {line.strip()}" for line in lines))
            finally:
                await engine.stop()
    return tallies


async def _early_counts(port: int) -> dict[str, int]:
    samples = await asyncio.to_thread(scrape, port)
    return {o: int(metric(samples, "voiceengine_early_replies_total", outcome=o)) for o in OUTCOMES}


async def _one(target: str, pid: int, call: Call, tally: Tally) -> None:
    outcome = await run_call(target, call, lambda: tree_cpu_sec(pid))
    tally.calls += 1
    tally.cpu.append(outcome.cpu_sec)
    if outcome.error:
        tally.errors += 1
        return
    answered = REPLY in outcome.replies
    if len(outcome.finals) != 1 or not answered or outcome.voice_to_voice_ms is None:
        return  # the unsure reply (the model was not asked for it), or a cut-off turn
    tally.answered += 1
    tally.v2v.append(outcome.voice_to_voice_ms)


def report(tallies: dict[str, Tally], first_token_ms: int) -> None:
    print(f"\nmodel: first token after {first_token_ms} ms, then a word every 20 ms")
    print(
        "mode            calls  answered  v2v p50 / p95 / mean ms   early replies"
        " started/used/discarded  cpu/call"
    )
    for mode, t in tallies.items():
        v2v = sorted(t.v2v)
        figures = (
            f"{percentile(v2v, 50):5.0f} / {percentile(v2v, 95):5.0f} / {statistics.mean(v2v):5.0f}"
            if v2v
            else "   -  /    -  /    - "
        )
        cpu = statistics.mean(t.cpu) if t.cpu else 0.0
        print(
            f"{mode:15s} {t.calls:5d} {t.answered:9d}  {figures}      "
            f"{'/'.join(str(t.counts[o]) for o in OUTCOMES):>12s}"
            f"  {cpu:6.2f} s" + (f"  errors {t.errors}" if t.errors else "")
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-token-ms", type=int, default=300)
    parser.add_argument("--turns", default="semantic,fixed")
    parser.add_argument("--voices", default="en-us+f3:160,en-us+m3:190")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--kinds", default="listed,other", help="add paused: mid-sentence pauses")
    parser.add_argument("--max-sec", type=float, default=900.0)
    parser.add_argument("--log", action="store_true", help="the engine's turn lines")
    arguments = parser.parse_args()
    report(asyncio.run(run(arguments)), arguments.first_token_ms)
