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

The protocol is two pipes and no thread of ours on the way in. A job (a module-level
function and its arguments: the audio of one utterance, ~60 KB) is written to the job
pipe by whoever submits it; in the child a reader thread drains that pipe into a local
queue at once, so the decoder never waits for the engine to hand it the next job (with
``concurrent.futures.ProcessPoolExecutor`` it did: its hand-over threads need the
engine's busy GIL, and at 60 calls the decoder sat idle between jobs while they queued).
Results come back on the result pipe to one reader thread here. A job not yet started is
withdrawn by a cancel message; a running one is told to stop too (the pass checks a
token between slices).

One process per engine process (a worker is pinned to its core or shares it; a second
decoder process would only contend), started on first use or by ``start()``, and
replaced if it dies: the jobs it held fail with :class:`DecoderProcessDied` and the
caller submits them again to the new one. It exits when the engine does (its job pipe
reports EOF), even after a SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any, TypeVar

__all__ = ["DecodeProcess", "DecoderProcessDied", "current_job_stopped", "decode_process"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), absent from older Pythons' fcntl
_PIPE_BYTES = 1 << 20  # room for ~16 queued utterances: a submit never waits on the child


class DecoderProcessDied(RuntimeError):
    """The decoder process ended with this job unfinished."""


# -- the child ---------------------------------------------------------------------------

_stop_flags: dict[int, threading.Event] = {}


def current_job_stopped() -> bool:
    """In a job: True once the engine withdrew it (check between slices and give up)."""
    flag = _stop_flags.get(threading.get_ident())
    return flag is not None and flag.is_set()


def _child_main(jobs: Connection, results: Connection) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the engine stops this
    # process itself (EOF on the job pipe), so it must not die first with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Two queues: turn ends (final jobs) before live slices (audio decoded as it comes).
    queues: tuple[
        collections.deque[tuple[int, Callable[..., Any], tuple[Any, ...]]],
        collections.deque[tuple[int, Callable[..., Any], tuple[Any, ...]]],
    ] = (collections.deque(), collections.deque())
    cancelled: set[int] = set()
    running: dict[int, threading.Event] = {}
    arrived = threading.Condition()

    def read_jobs() -> None:
        while True:
            try:
                message = jobs.recv_bytes()
            except (EOFError, OSError):
                os._exit(0)  # the engine is gone (even a SIGKILL closes its end)
            kind, job_id, payload = pickle.loads(message)
            with arrived:
                if kind == "cancel":
                    cancelled.add(job_id)
                    if job_id in running:
                        running[job_id].set()
                else:
                    fn, args, live = payload
                    queues[1 if live else 0].append((job_id, fn, args))
                    arrived.notify()

    threading.Thread(target=read_jobs, name="decode-jobs", daemon=True).start()
    me = threading.get_ident()
    while True:
        with arrived:
            while not queues[0] and not queues[1]:
                arrived.wait()
            job_id, fn, args = (queues[0] or queues[1]).popleft()
            if job_id in cancelled:
                cancelled.discard(job_id)
                continue
            stop = running[job_id] = _stop_flags[me] = threading.Event()
        try:
            outcome: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:
            outcome = ("error", exc)
        with arrived:
            running.pop(job_id, None)
            cancelled.discard(job_id)
        if job_id == 0:
            continue  # posted: nobody waits for it
        if stop.is_set():
            outcome = ("cancelled", None)
        try:
            data = pickle.dumps((job_id, *outcome))
        except Exception as exc:  # an unpicklable exception
            data = pickle.dumps((job_id, "error", RuntimeError(repr(exc))))
        results.send_bytes(data)


# -- the engine's side -------------------------------------------------------------------


class _Child:
    """One decoder process and the futures of the jobs it holds."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # the engine has threads: no fork
        job_read, self.job_write = context.Pipe(duplex=False)
        self.result_read, result_write = context.Pipe(duplex=False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.job_write.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self.process = context.Process(
            target=_child_main, args=(job_read, result_write), name="asr-decoder", daemon=True
        )
        self.process.start()
        job_read.close()  # only the child reads jobs; its end closes when it dies
        result_write.close()
        self.pending: dict[int, Future[Any]] = {}
        self.lock = threading.Lock()
        self.dead = False
        self.reader = threading.Thread(
            target=self._read_results, name="decode-results", daemon=True
        )
        self.reader.start()

    def _read_results(self) -> None:
        while True:
            try:
                job_id, kind, value = pickle.loads(self.result_read.recv_bytes())
            except (EOFError, OSError):
                break
            with self.lock:
                future = self.pending.pop(job_id, None)
            if future is None or future.done():
                continue
            if kind == "ok":
                future.set_result(value)
            elif kind == "error":
                future.set_exception(value)
            elif not future.cancel():
                future.set_exception(DecoderProcessDied("withdrawn"))
        with self.lock:
            self.dead = True
            orphans, self.pending = list(self.pending.values()), {}
        for future in orphans:
            if not future.done():
                future.set_exception(DecoderProcessDied("the decoder process died"))

    def send(self, message: tuple[str, int, Any]) -> None:
        self.job_write.send_bytes(pickle.dumps(message))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.job_write.close()  # EOF: the child exits
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.reader.join(5)


class DecodeProcess:
    """Runs jobs in one decoder process; starts it when needed, again after a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._ids = itertools.count(1)
        self._restarts = 0

    def submit(self, fn: Callable[..., _T], *args: Any, live: bool = False) -> Future[_T]:
        """Queue ``fn(*args)`` (a module-level function) in the decoder process.

        ``live``: audio decoded as it comes (a live pass), run only when no turn's final waits.
        """
        future: Future[_T] = Future()
        job_id = next(self._ids)
        with self._lock:
            child = self._running_child()
            with child.lock:
                child.pending[job_id] = future
            try:
                child.send(("job", job_id, (fn, args, live)))
            except OSError as exc:  # it died just now
                with child.lock:
                    child.pending.pop(job_id, None)
                future.set_exception(DecoderProcessDied(str(exc)))
                return future
        future.add_done_callback(lambda f: self._withdraw(child, job_id) if f.cancelled() else None)
        return future

    def post(self, fn: Callable[..., object], *args: Any, live: bool = False) -> None:
        """Queue ``fn(*args)`` with no answer wanted (job 0: the child sends none back)."""
        with self._lock:
            child = self._running_child()
            with contextlib.suppress(OSError):  # it died: the next submit finds out
                child.send(("job", 0, (fn, args, live)))

    def start(self) -> Future[int]:
        """Start the process now (it imports pocketsphinx); the future gives its pid."""
        return self.submit(_ready)

    def _running_child(self) -> _Child:
        child = self._child
        if child is not None and (child.dead or not child.process.is_alive()):
            self._restarts += 1
            _log.warning("asr: the decoder process died; starting a new one")
            child.close()
            child = None
        if child is None:
            child = self._child = _Child()
        return child

    def _withdraw(self, child: _Child, job_id: int) -> None:
        with child.lock:
            child.pending.pop(job_id, None)
        with contextlib.suppress(OSError), self._lock:
            if self._child is child:
                child.send(("cancel", job_id, None))

    @property
    def restarts(self) -> int:
        """How many times the process was found dead and replaced."""
        return self._restarts

    def close(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.close()


def _ready() -> int:
    import pocketsphinx  # noqa: F401  (the import is most of the start-up)

    return os.getpid()


_SHARED: DecodeProcess | None = None
_SHARED_LOCK = threading.Lock()


def decode_process() -> DecodeProcess:
    """This engine process's decoder process (started by its first job)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = DecodeProcess()
        return _SHARED
