"""The pocketsphinx decode executor runs the end of a turn before live slices."""

from __future__ import annotations

import threading

from adapters.asr.decode_executor import FINAL, LIVE, PriorityDecodeExecutor


def _blocked_executor() -> tuple[PriorityDecodeExecutor, threading.Event]:
    executor = PriorityDecodeExecutor(threads=1)
    release, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(timeout=30)

    executor.submit(LIVE, block)
    assert started.wait(timeout=30)
    return executor, release


def test_final_jobs_overtake_live_slices_queued_before_them() -> None:
    executor, release = _blocked_executor()
    order: list[str] = []
    live = executor.submit(LIVE, lambda: order.append("live slice"))
    final = executor.submit(FINAL, lambda: order.append("final pass"))
    release.set()
    live.result(timeout=30)
    final.result(timeout=30)
    assert order == ["final pass", "live slice"]


def test_the_utterance_that_finished_first_is_finalized_first() -> None:
    executor, release = _blocked_executor()
    first, second = executor.ticket(), executor.ticket()
    order: list[str] = []
    jobs = [
        executor.submit(FINAL, lambda: order.append("second a"), ticket=second),
        executor.submit(FINAL, lambda: order.append("first a"), ticket=first),
        executor.submit(FINAL, lambda: order.append("second b"), ticket=second),
        executor.submit(FINAL, lambda: order.append("first b"), ticket=first),
    ]
    release.set()
    for job in jobs:
        job.result(timeout=30)
    assert order == ["first a", "first b", "second a", "second b"]


def test_a_failing_job_reports_its_error_and_the_thread_goes_on() -> None:
    executor = PriorityDecodeExecutor(threads=1)

    def fail() -> None:
        raise RuntimeError("decoder broke")

    failed = executor.submit(FINAL, fail)
    assert isinstance(failed.exception(timeout=30), RuntimeError)
    assert executor.submit(LIVE, lambda: 42).result(timeout=30) == 42
