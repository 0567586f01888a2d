"""pocketsphinx's decoder process runs turn ends before live slices, and survives errors."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future

from adapters.asr.decode_process import DecodeProcess


def test_turn_ends_overtake_live_slices_queued_before_them() -> None:
    process = DecodeProcess()
    try:
        process.start().result(timeout=60)
        order: list[str] = []

        def record(name: str) -> object:
            return lambda _: order.append(name)

        busy = process.submit(time.sleep, 0.5)  # the child is decoding something else
        live: Future[int] = process.submit(os.getpid, live=True)
        live.add_done_callback(record("live slice"))
        final: Future[int] = process.submit(os.getpid)
        final.add_done_callback(record("final pass"))
        for job in (busy, live, final):
            job.result(timeout=30)
        assert order == ["final pass", "live slice"]
    finally:
        process.close()


def test_a_failing_job_reports_its_error_and_the_process_goes_on() -> None:
    process = DecodeProcess()
    try:
        failed = process.submit(int, "not a number")
        assert isinstance(failed.exception(timeout=60), ValueError)
        assert process.submit(abs, -42).result(timeout=30) == 42
        assert process.restarts == 0
    finally:
        process.close()
