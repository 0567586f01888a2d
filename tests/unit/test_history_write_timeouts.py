"""The history write timeout grows on timeouts, once per level, up to its cap (the same cap
for a live bridge and an adopted spool)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.history.spool import HistorySpool
from engine.runtime.history import HistoryBridge
from engine.runtime.history.retry import WriteTimeouts
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    FetchedAssistant,
    ToolFailed,
    ToolInvocation,
    TranscriptEntry,
    WriteTimeout,
)
from engine.settings import Settings
from engine.workers import adopt_spool


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


class TimesOutOnce:
    """ControlPlane fake: the first write times out at 1 s; records each write's limit."""

    def __init__(self) -> None:
        self.limits: list[float | None] = []

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        raise AssistantNotFound(assistant_id)

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        self._write(timeout_sec)

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        self._write(timeout_sec)

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        self._write(timeout_sec)

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        raise ToolFailed(f"tool {invocation.name!r}: not offered here", "unavailable")

    async def close(self) -> None:
        pass

    def _write(self, timeout_sec: float | None) -> None:
        self.limits.append(timeout_sec)
        if len(self.limits) == 1:
            raise WriteTimeout("no answer within 1 s", timeout_sec=1.0)


async def test_an_adopted_spool_grows_the_write_timeout_as_a_live_bridge_does(
    tmp_path: Path,
) -> None:
    settings = Settings(history_max_write_timeout_sec=1.5, history_retry_backoff_sec=0.0)
    record = CallRecord("call-1", "support", "session-1", started_at=1000.0)
    live_plane = TimesOutOnce()
    live = HistoryBridge.from_settings(live_plane, settings, store=None, enabled=True)
    await live.start()
    await live.open_call(record).finalize("hangup")
    await live.close()

    spool_path = tmp_path / "history-worker-1.sqlite3"
    spool = HistorySpool(spool_path)
    spool.add(record, replay=False, now=1000.0)  # a former worker's open call
    spool.close()
    adopted_plane = TimesOutOnce()
    assert await adopt_spool(spool_path, adopted_plane, settings)

    # the timed-out write is sent again with the limit grown to HISTORY_MAX_WRITE_TIMEOUT_SEC
    assert live_plane.limits[:2] == adopted_plane.limits[:2] == [None, 1.5]
