"""The interruption benchmark's own parts: the sounds it plays and the caller it simulates."""

from __future__ import annotations

import numpy as np

from benchmarks.interruption_sounds import LEAD_MS, RATE, noises, onset_ms, sounds
from benchmarks.interruptions import Outcome, Player


def test_the_noises_are_of_several_kinds_and_lengths_and_the_same_every_run() -> None:
    first, again = noises(), noises()
    assert len({name.split()[0] for name in first}) >= 4
    lengths = [signal.size * 1000 // RATE for signal in first.values()]
    assert min(lengths) <= 150 and max(lengths) >= 600
    assert all(np.array_equal(first[name], again[name]) for name in first)


async def test_every_sound_is_in_both_formats_with_its_onset_after_the_background() -> None:
    played = await sounds(["l16k", "mulaw8k"])
    kinds = {(s.kind, s.fmt) for s in played}
    assert kinds == {(k, f) for k in ("noise", "backchannel", "real") for f in ("l16k", "mulaw8k")}
    assert all(s.onset_ms >= LEAD_MS - 20 for s in played)
    l16k = next(s for s in played if s.fmt == "l16k")
    mulaw = next(s for s in played if s.fmt == "mulaw8k" and s.name == l16k.name)
    assert len(l16k.audio) == 4 * len(mulaw.audio)  # 2 bytes at 16 kHz vs 1 byte at 8 kHz


def test_the_onset_is_the_first_sample_above_the_background() -> None:
    pcm = np.zeros(RATE, dtype=np.int16)
    pcm[RATE // 4] = 3000
    assert onset_ms(pcm) == 250


def test_the_simulated_caller_hears_a_gap_only_when_its_buffer_runs_dry() -> None:
    player = Player()
    player.audio(0.0, 500)  # half a second buffered at once
    player.audio(0.4, 100)  # arrives while the buffer still plays: no gap
    player.drop(0.5)  # `interrupted`: the buffer is dropped
    player.audio(1.3, 100)  # the resumed reply: 800 ms of silence heard
    assert [round(gap) for gap in player.gaps_ms] == [800]


def test_a_reply_goes_on_when_spoken_to_the_end_with_one_gap_at_most() -> None:
    outcome = Outcome(sound=None, completed=True, gaps_ms=[700.0])  # type: ignore[arg-type]
    assert outcome.goes_on
    outcome.gaps_ms.append(300.0)
    assert not outcome.goes_on
