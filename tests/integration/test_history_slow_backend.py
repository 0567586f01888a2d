"""A backend slower than BACKEND_TIMEOUT_SEC still gets every history write, once.

The reference backend answers every request after 1.5 s while the adapter's timeout is
0.5 s: without a growing write timeout every attempt times out and the history never
arrives. The bridge doubles the timeout on repeated timeouts (up to its cap) and says so
in a WARNING.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from adapters.control_plane.backend import HttpControlPlane
from adapters.history.spool import HistorySpool
from engine.runtime.history.bridge import HistoryBridge
from engine.runtime.ports.control_plane import CallRecord
from tests.helpers.refbackend import running_refbackend

CALLS = 3
ENTRIES = 4


async def test_a_backend_slower_than_the_timeout_gets_every_write_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_refbackend(tmp_path / "backend.sqlite3") as backend:
        await backend.faults(delay_sec=1.5)
        plane = HttpControlPlane(backend.url, timeout_sec=0.5, config_cache_ttl_sec=0)
        bridge = HistoryBridge(
            plane,
            queue_max_size=100,
            retry_max_attempts=3,
            retry_backoff_sec=0.05,
            finalize_drain_timeout_sec=0.5,
            spool=HistorySpool(tmp_path / "spool.sqlite3"),
            workers=2,
        )
        await bridge.start()
        try:
            ids = [f"slow-{n}" for n in range(CALLS)]
            finalizing = []
            for call_id in ids:
                call = bridge.open_call(CallRecord(call_id, "default", "s-" + call_id, 1000.0))
                for n in range(ENTRIES):
                    call.record(
                        "user" if n % 2 == 0 else "assistant",
                        f"turn {n}",
                        started_at=1000.0 + n,
                        ended_at=1000.5 + n,
                    )
                finalizing.append(asyncio.create_task(call.finalize("client_ended")))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            stored: dict[str, dict[str, object]] = {}
            while len(stored) < CALLS:
                assert loop.time() < deadline, f"history never arrived: {bridge.counters()}"
                for call_id in ids:
                    try:
                        got = await backend.get_call(call_id)
                    except Exception:  # 404 until the call is created
                        continue
                    if got["summary"] is not None:
                        stored[call_id] = got
                await asyncio.sleep(0.2)
            await asyncio.gather(*finalizing)
        finally:
            await bridge.close()
            await plane.close()

    for call_id, got in stored.items():
        transcripts = got["transcripts"]
        assert isinstance(transcripts, list)
        assert [entry["sequence"] for entry in transcripts] == list(range(1, ENTRIES + 1))
        summary = got["summary"]
        assert isinstance(summary, dict) and summary["turn_count"] == ENTRIES, call_id
        assert summary["pending_entries"] == 0, call_id  # every entry arrived before it
    assert bridge.write_timeout_sec is not None and bridge.write_timeout_sec >= 1.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("backend is slower than the write timeout" in w for w in warnings), warnings
