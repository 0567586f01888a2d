"""pocketsphinx's final passes in a process of their own, beside the event loop's.

``Decoder.process_raw`` holds the GIL for the whole call (a 100 ms slice is 3-4 ms of
CPU with a domain model). On a thread beside the event loop that is a GIL convoy: each
time the loop wakes it waits for the interpreter's switch interval (5 ms) and then for
the C call to return, once per loop turn, so the loop reads its calls' input slower than
real time while the core is half idle. Measured (docs/BENCHMARKS.md): 40 calls on one
core with the final passes on decode threads fell 26 frames (0.5 s) behind their input
at 57% CPU, p95 +308 ms; with a 0.5 ms switch interval 4 frames, +112 ms. In a process
of their own the passes hold no lock the loop needs, and the kernel, not the GIL, shares
the core: a loop that wakes preempts the decoder within its scheduling granularity.

One process per engine process (a worker is pinned to its core or shares it; a second
decoder process would only contend), started on first use, warmed per phrase set, and
replaced if it dies: the turn that saw it die is decoded again in the new one, other
turns never notice. Jobs are plain functions of picklable arguments (the audio of one
utterance, ~60 KB); a job not yet started can be withdrawn, a running one finishes
(~50 ms of CPU at most for a question).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["DecodeProcess", "decode_process"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


_PARENT_CHECK_SEC = 0.5


def _child_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the engine drains and stops
    # this process itself, so the child must not die first with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # An engine killed outright (SIGKILL, OOM) runs no shutdown code, and the job queue's
    # pipe never reports EOF here (this process holds both of its ends): without this an
    # orphan would live on, holding the engine's stderr open.
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_SEC)
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def _ready() -> int:
    import pocketsphinx  # noqa: F401  (the import is most of the start-up)

    return os.getpid()


class DecodeProcess:
    """A one-process pool for decoding jobs; it restarts itself after a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._broken_seen = 0

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``fn(*args)`` in the decoder process (started or restarted as needed)."""
        with self._lock:
            for attempt in (1, 2):
                executor = self._executor
                if executor is None:
                    # spawn, not fork: the engine has gRPC's and the decoders' threads.
                    context = multiprocessing.get_context("spawn")
                    executor = ProcessPoolExecutor(1, context, initializer=_child_init)
                    self._executor = executor
                try:
                    return executor.submit(fn, *args)
                except BrokenProcessPool:
                    if attempt == 2:
                        raise
                    self._replace(executor)
        raise AssertionError("unreachable")

    def start(self) -> Future[int]:
        """Start the process now (it imports pocketsphinx); the future gives its pid."""
        return self.submit(_ready)

    def replace_if_broken(self, exc: BaseException) -> bool:
        """After a job failed with ``exc``: True if the process had died (now replaced)."""
        if not isinstance(exc, BrokenProcessPool):
            return False
        with self._lock:
            if self._executor is not None:
                self._replace(self._executor)
        return True

    def _replace(self, executor: ProcessPoolExecutor) -> None:
        if self._executor is executor:
            self._executor = None
            self._broken_seen += 1
            _log.warning("asr: the decoder process died; starting a new one")
        executor.shutdown(wait=False, cancel_futures=True)

    @property
    def restarts(self) -> int:
        """How many times the process was found dead and replaced."""
        return self._broken_seen

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_SHARED: DecodeProcess | None = None
_SHARED_LOCK = threading.Lock()


def decode_process() -> DecodeProcess:
    """This engine process's decoder process (started by its first job)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = DecodeProcess()
        return _SHARED
