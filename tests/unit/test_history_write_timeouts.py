"""The history write timeout grows on timeouts, once per level, up to its cap."""

from __future__ import annotations

import logging

import pytest

from engine.runtime.history.retry import WriteTimeouts
from engine.runtime.ports.control_plane import WriteTimeout


def timeout(sec: float) -> WriteTimeout:
    return WriteTimeout(f"no answer within {sec:g} s", timeout_sec=sec)


def test_doubles_once_per_level_up_to_eight_times_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    timeouts = WriteTimeouts()
    assert timeouts.current is None
    timeouts.timed_out(timeout(0.5))
    timeouts.timed_out(timeout(0.5))  # a concurrent write at the same limit
    assert timeouts.current == 1.0
    for used in (1.0, 2.0, 4.0, 4.0):
        timeouts.timed_out(timeout(used))
    assert timeouts.current == 4.0 == timeouts.cap()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("slower than the write timeout" in m for m in messages) == 3
    assert sum("largest write timeout" in m for m in messages) == 1  # rate-limited


def test_an_explicit_cap_and_shrinking_back() -> None:
    timeouts = WriteTimeouts(max_timeout_sec=1.5)
    timeouts.timed_out(timeout(0.5))
    timeouts.timed_out(timeout(1.0))
    assert timeouts.current == 1.5
    timeouts.succeeded(1.2)  # needed most of it: kept
    assert timeouts.current == 1.5
    timeouts.succeeded(0.1)
    assert timeouts.current == 0.75
    timeouts.succeeded(0.1)
    assert timeouts.current is None
