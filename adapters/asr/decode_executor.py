"""The thread that runs pocketsphinx decoding jobs of every session, finals first.

pocketsphinx holds the GIL while it decodes, so threads give no parallelism; what
matters is order. On the loop's default executor a turn's final pass queued behind the
live 100 ms slices of every other caller (and behind unrelated blocking work), so end of
speech -> transcript grew with the number of callers speaking. Here jobs carry a
priority: the end of an utterance (its last slice, second pass and release) runs before
live slices, which only feed interim transcripts and can wait a few milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["FINAL", "LIVE", "PriorityDecodeExecutor", "decode_executor"]

_T = TypeVar("_T")

FINAL = 0  # the end of a turn: someone is waiting for this transcript
LIVE = 1  # streaming slices: interim transcripts only


class PriorityDecodeExecutor:
    """A few daemon threads running jobs lowest priority number first, FIFO within one."""

    def __init__(self, threads: int = 2) -> None:
        # Two threads, not one: building a decoder (10-400 ms) for a new utterance should
        # not stop everyone else's decoding; more would only contend for the GIL.
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._tickets = itertools.count(1)
        self._threads = [
            threading.Thread(target=self._work, name=f"asr-decode-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, job: Callable[[], _T], *, ticket: int = 0) -> Future[_T]:
        """Queue ``job``; within a priority, lower ``ticket`` first, then FIFO.

        A finishing utterance takes a ticket (:meth:`ticket`) so all of its final jobs
        run before those of utterances that finished after it: with many turns ending
        together, the first is done first instead of all being done last.
        """
        future: Future[_T] = Future()
        with self._cond:
            heapq.heappush(self._heap, (priority, ticket, next(self._order), job, future))
            self._cond.notify()
        return future

    def ticket(self) -> int:
        """A ticket for the final jobs of one utterance (increasing: first come, first served)."""
        return next(self._tickets)

    def queued(self) -> int:
        """Jobs waiting for a thread now."""
        with self._cond:
            return len(self._heap)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                _, _, _, job, future = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


_SHARED: PriorityDecodeExecutor | None = None
_SHARED_LOCK = threading.Lock()


def decode_executor() -> PriorityDecodeExecutor:
    """The process's decoding threads (started on first use)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PriorityDecodeExecutor()
        return _SHARED
