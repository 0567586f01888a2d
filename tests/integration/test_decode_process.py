"""pocketsphinx's decoder process runs turn ends before live slices, and survives errors."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future

from adapters.asr.decode_process import DecodeProcess, JobControl


class Host:
    """The child's state for these jobs: the number of jobs run so far."""

    def __init__(self, control: JobControl) -> None:
        self.control = control
        self.jobs = 0


def pid(host: Host) -> int:
    host.jobs += 1
    return os.getpid()


def sleep(host: Host, seconds: float) -> None:
    host.jobs += 1
    time.sleep(seconds)  # the child is busy with something else


def parse(host: Host, text: str) -> int:
    host.jobs += 1
    return int(text)


def jobs_run(host: Host) -> int:
    return host.jobs


def test_turn_ends_overtake_live_slices_queued_before_them() -> None:
    process = DecodeProcess(Host)
    try:
        process.start().result(timeout=60)
        order: list[str] = []

        def record(name: str) -> object:
            return lambda _: order.append(name)

        busy = process.submit(sleep, 0.5)
        live: Future[int] = process.submit(pid, live=True)
        live.add_done_callback(record("live slice"))
        final: Future[int] = process.submit(pid)
        final.add_done_callback(record("final pass"))
        for job in (busy, live, final):
            job.result(timeout=30)
        assert order == ["final pass", "live slice"]
    finally:
        process.close()


def test_jobs_share_the_state_of_the_childs_host() -> None:
    process = DecodeProcess(Host)
    try:
        assert process.submit(pid).result(timeout=60) != os.getpid()
        process.post(pid)
        assert process.submit(jobs_run).result(timeout=30) == 2
    finally:
        process.close()


def test_a_failing_job_reports_its_error_and_the_process_goes_on() -> None:
    process = DecodeProcess(Host)
    try:
        failed = process.submit(parse, "not a number")
        assert isinstance(failed.exception(timeout=60), ValueError)
        assert process.submit(parse, "42").result(timeout=30) == 42
        assert process.restarts == 0
    finally:
        process.close()
