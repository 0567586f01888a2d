"""The audio clock: when the caller reaches a point of audio that may arrive early or late."""

from __future__ import annotations

from engine.runtime.audio_clock import AudioClock


class _Now:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_audio_sent_at_once_is_live_later() -> None:
    now = _Now()
    clock = AudioClock(now)
    clock.received(20)
    clock.received(3000)  # a file: the rest arrived in the same instant
    assert clock.live_at(3000) == 100.0 - 0.02 + 3.0
    assert clock.ahead_sec(3000) > 2.9


def test_audio_in_real_time_is_live_when_it_arrives() -> None:
    now = _Now()
    clock = AudioClock(now)
    for offset in range(20, 1001, 20):
        now.t = 100.0 + offset / 1000
        clock.received(offset)
    assert clock.live_at(1000) == now.t
    assert clock.ahead_sec(1000) == 0.0


def test_a_pause_in_the_input_moves_the_stream_on() -> None:
    now = _Now()
    clock = AudioClock(now)
    clock.received(1000)
    now.t += 5.0  # the client stopped sending for a while
    clock.received(1020)
    assert clock.live_at(1020) == now.t
