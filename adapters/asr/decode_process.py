"""The decoder process: a child process of the engine that runs pocketsphinx jobs
(engine event loop side: DecodeProcess; the child's loop: _child_main).

``Decoder.process_raw`` holds the GIL for the whole call. On a thread beside the event
loop that is a GIL convoy: the loop waits for the switch interval and the C call on each
wake-up and reads its calls' input slower than real time while the core is half idle. In
a process of its own a decoding job holds no lock the loop needs, and the kernel, not the
GIL, shares the core (measurements: docs/benchmarks/recognition.md).

The protocol is two pipes and no thread of ours on the way in. A job (a function, its
arguments: the audio of one utterance, ~60 KB) is written to the job pipe by whoever
submits it; in the child a reader thread drains that pipe into a local queue at once, so
the decoder never waits for the engine to hand it the next job (a
``ProcessPoolExecutor``'s hand-over threads need the engine's busy GIL). Results come
back on the result pipe to one reader thread here. A job not yet started is withdrawn by
a cancel message; a running one is told to stop too (``JobControl.stopped``).

The child holds one *host* object, built there by the factory given to
``DecodeProcess``: the state its jobs share (for pocketsphinx,
``adapters.asr.decoder_jobs.DecoderJobs``). A job ``fn(host, *args)`` runs on it. The
recognizer runtime owns one DecodeProcess per engine process (a second decoder process
would only contend for the core); it is started on first use or by ``start()``, and
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

__all__ = ["DecodeProcess", "DecoderProcessDied", "JobControl"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), absent from older Pythons' fcntl
_PIPE_BYTES = 1 << 20  # room for ~16 queued utterances: a submit never waits on the child


class DecoderProcessDied(RuntimeError):
    """The decoder process ended with this job unfinished."""


# -- the child ---------------------------------------------------------------------------


class JobControl:
    """What a running job may ask of the child's loop (decoder process)."""

    def __init__(self) -> None:
        self._current: threading.Event | None = None

    def stopped(self) -> bool:
        """True once the engine withdrew the running job (check between slices, give up)."""
        current = self._current
        return current is not None and current.is_set()

    def begin(self, stop: threading.Event) -> None:
        """The child's loop starts a job: ``stop`` is set when the engine withdraws it."""
        self._current = stop


_Job = tuple[int, Callable[..., Any], tuple[Any, ...]]


def _child_main(
    host_factory: Callable[[JobControl], object], jobs: Connection, results: Connection
) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the engine stops this
    # process itself (EOF on the job pipe), so it must not die first with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = JobControl()
    host = host_factory(control)
    # Two queues: turn ends (final jobs) before live slices (audio decoded as it comes).
    queues: tuple[collections.deque[_Job], collections.deque[_Job]] = (
        collections.deque(),
        collections.deque(),
    )
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
    while True:
        with arrived:
            while not queues[0] and not queues[1]:
                arrived.wait()
            job_id, fn, args = (queues[0] or queues[1]).popleft()
            if job_id in cancelled:
                cancelled.discard(job_id)
                continue
            stop = running[job_id] = threading.Event()
            control.begin(stop)
        try:
            outcome: tuple[str, Any] = ("ok", fn(host, *args))
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

    def __init__(self, host_factory: Callable[[JobControl], object]) -> None:
        context = multiprocessing.get_context("spawn")  # the engine has threads: no fork
        job_read, self.job_write = context.Pipe(duplex=False)
        self.result_read, result_write = context.Pipe(duplex=False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.job_write.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self.process = context.Process(
            target=_child_main,
            args=(host_factory, job_read, result_write),
            name="asr-decoder",
            daemon=True,
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
    """Runs jobs in one decoder process; starts it when needed, again after a crash.

    ``host_factory`` (picklable: a class or module-level function) builds the child's
    host object, the state its jobs share; a job is ``fn(host, *args)``.
    """

    def __init__(self, host_factory: Callable[[JobControl], object]) -> None:
        self._host_factory = host_factory
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._ids = itertools.count(1)
        self._restarts = 0

    def submit(self, fn: Callable[..., _T], *args: Any, live: bool = False) -> Future[_T]:
        """Queue ``fn(host, *args)`` (a module-level function or method) in the decoder process.

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
        """Queue ``fn(host, *args)`` with no answer wanted (job 0: the child sends none back)."""
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
            child = self._child = _Child(self._host_factory)
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


def _ready(_host: object) -> int:
    import pocketsphinx  # noqa: F401  (the import is most of the start-up)

    return os.getpid()
