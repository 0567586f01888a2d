"""The tables of benchmarks/turn_taking.py: heard right, wrong answers, unsure replies, cut-offs.

Per mode, calls per core, pacing and group (complete questions, paused sentences): voice to
voice p50/p95 (calls with one final), heard right (the first final is the sentence, word for
word), wrong answered (not heard right and answered: not the unsure reply), unsure replies
(to any final: a listed phrase the fallback got right is asked again too) and the share of
the misheard answered with it, cut off (more than one final), Whisper fallbacks, errors,
engine CPU per call; then every miss with its finals and, with ``--turn-log``, the engine's
turn decisions.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks.loadkit import percentile

if TYPE_CHECKING:
    from benchmarks.turn_taking import Outcome

Group = tuple[str, int, str, str]  # mode, calls per core, pacing, complete | paused


def _words(text: str) -> str:
    return " ".join(text.lower().replace("?", "").replace(".", "").replace(",", "").split())


@dataclass
class Tally:
    calls: int = 0
    right: int = 0
    wrong_answered: int = 0
    unsure: int = 0  # unsure replies, to misheard finals and to right ones alike
    misheard_unsure: int = 0  # unsure replies to misheard finals
    cut_off: int = 0
    fallbacks: int = 0
    errors: int = 0
    v2v: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def tally(outcomes: list[Outcome], unsure_reply: str) -> dict[Group, Tally]:
    """The outcomes counted per group."""
    table: dict[Group, Tally] = {}
    for o in outcomes:
        group = "paused" if o.call.kind.startswith("paused") else "complete"
        t = table.setdefault((o.call.mode, o.load, o.call.pacing, group), Tally())
        t.calls += 1
        if o.error or not o.finals:
            t.errors += 1
            continue
        right = _words(o.finals[0][0]) == _words(o.call.text)
        unsure = bool(o.replies) and o.replies[0] == unsure_reply
        t.right += right
        t.unsure += unsure
        t.misheard_unsure += not right and unsure
        t.wrong_answered += not right and not unsure
        t.cut_off += len(o.finals) > 1
        t.fallbacks += sum(f[1] == "grammar_fallback" for f in o.finals)
        t.cpu.append(o.cpu_sec)
        if o.voice_to_voice_ms is not None and len(o.finals) == 1:
            t.v2v.append(o.voice_to_voice_ms)
    return table


def report(outcomes: list[Outcome], unsure_reply: str) -> None:
    """The table (markdown), then the misses."""
    print(
        "\n| mode | calls/core | pacing | calls | v2v p50 | v2v p95 | heard right | wrong answered "
        "| unsure | unsure of the misheard | cut off | fallbacks | errors | engine CPU s/call |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (mode, load, pacing, group), t in sorted(tally(outcomes, unsure_reply).items()):
        v2v = (
            (f"{percentile(t.v2v, 50):.0f}", f"{percentile(t.v2v, 95):.0f}") if t.v2v else ("", "")
        )
        cpu = f"{statistics.mean(t.cpu):.2f}" if t.cpu else ""
        misheard = t.misheard_unsure + t.wrong_answered
        print(
            f"| {mode} | {load or ''} | {pacing} {group} | {t.calls} | {v2v[0]} | {v2v[1]} | "
            f"{t.right}/{t.calls} | {t.wrong_answered} | {t.unsure} | "
            f"{t.misheard_unsure}/{misheard} | {t.cut_off} | {t.fallbacks} | {t.errors} | {cpu} |"
        )
    print(
        "\nMisheard or cut (mode, calls per core, pacing, kind, voice, line: expected -> "
        "finals [source conf]):"
    )
    for o in outcomes:
        if (
            o.error
            or not o.finals
            or _words(o.finals[0][0]) != _words(o.call.text)
            or len(o.finals) > 1
        ):
            finals = "; ".join(f"{t!r} [{s} {c}]" for t, s, c in o.finals) or o.error
            print(
                f"- {o.call.mode} {o.load or ''} {o.call.pacing} {o.call.kind} {o.call.voice} "
                f"{o.call.line}: "
                f"{o.call.text!r} -> {finals}"
            )
            for line in o.turn_log:
                print(f"    {line}")
