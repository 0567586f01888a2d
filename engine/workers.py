"""`voice-engine serve --workers N`: N engine processes on one port, under one supervisor.

One Python process drives one core (the event loop and the GIL), so a machine with N
cores runs N engine processes. They all listen on the same port with ``SO_REUSEPORT``:
the kernel spreads new connections (calls) over the workers, and each worker is a whole,
independent engine (its own sessions, health, reflection and limits: ``ENGINE_MAX_SESSIONS``
is per worker, so a host carries N times it).

The supervisor (this module) serves nothing itself. It
- reserves the port first (a bound, non-listening ``SO_REUSEPORT`` socket; with
  ``ENGINE_PORT=0`` this is how every worker gets the same free port) and keeps it for
  its whole life, so a restarted worker gets the same port back;
- starts the workers (``python -m engine serve --workers 1`` with a hidden index and a
  ready pipe) and waits until each listens; a worker that fails before that (a bad
  setting, a spool held by another engine) stops the start-up with its exit code;
- restarts a worker that dies later (a crash, an OOM kill), with a backoff;
- on SIGTERM or SIGINT forwards SIGTERM to every worker (each drains its own sessions as
  a single engine does) and exits 0 once all have exited 0;
- dies together with its workers: each worker asks the kernel (``PR_SET_PDEATHSIG``)
  for SIGKILL if the supervisor dies, so a killed supervisor leaves no orphan listening.

History spools: the index of a worker is stable (0 .. N-1, a restarted worker keeps its
index), and worker i's spool is ``worker_spool_path(HISTORY_SPOOL_PATH, i)``: worker 0
uses the configured path itself (so ``--workers 1`` and a single engine use the same
file), worker i > 0 ``<stem>.worker<i><suffix>``. A restarted worker reopens its own
spool and replays it. Spools of indexes beyond the current count (an earlier run had more
workers) are adopted by the supervisor at start-up: it opens each with the history
bridge, finalizes its orphaned calls, replays it to the backend, and deletes the file
once it is empty (a spool holding dead letters is kept for an operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters.history.spool import HistorySpool
from engine.runtime.history.bridge import HistoryBridge
from engine.runtime.ports.control_plane import ControlPlane
from engine.runtime.ports.history_store import SpoolError
from engine.settings import Settings

log = logging.getLogger(__name__)

START_TIMEOUT_SEC = 120.0  # a worker must listen within this (cold imports on a busy host)
STOP_MARGIN_SEC = 30.0  # beyond the shutdown grace, before a worker is killed
RESTART_BACKOFF_SEC = (0.5, 30.0)  # first and largest delay between restarts
STABLE_AFTER_SEC = 60.0  # a worker that lived this long resets the backoff
ADOPT_POLL_SEC = 0.5
_PR_SET_PDEATHSIG = 1


def worker_spool_path(base: Path | None, index: int) -> Path | None:
    """Worker ``index``'s history spool: the configured path for 0, a sibling for others."""
    if base is None or index == 0:
        return base
    return base.with_name(f"{base.stem}.worker{index}{base.suffix}")


def orphan_spools(base: Path | None, workers: int) -> list[Path]:
    """Spool files of worker indexes ``>= workers`` left by an earlier run, by index."""
    if base is None or not base.parent.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(base.stem)}\.worker(\d+){re.escape(base.suffix)}$")
    found: list[tuple[int, Path]] = []
    for path in base.parent.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1)) >= workers:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def die_with_parent(parent_pid: int) -> None:
    """In a worker: be SIGKILLed when the supervisor dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        os._exit(1)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a ``SO_REUSEPORT`` socket on host:port; the port stays ours."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0  # restarts in a row without a stable run
    ready: bool = False


@dataclass
class Supervisor:
    """Runs ``workers`` engine processes on one port until SIGTERM/SIGINT (see module doc)."""

    settings: Settings
    workers: int
    python: str = sys.executable
    extra_args: Sequence[str] = ()
    ready: Callable[[int], None] | None = None
    _pool: list[_Worker] = field(default_factory=list)
    _stopping: bool = False
    _port: int = 0

    async def run(self) -> int:
        """Start, supervise, drain; the exit status of the whole group."""
        settings = self.settings
        try:
            reservation = reserve_port(settings.host, settings.port)
        except OSError as exc:
            print(f"voice-engine: cannot bind {settings.host}:{settings.port}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
        stop = asyncio.Event()  # set by SIGTERM/SIGINT, also during start-up
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            with reservation:
                self._port = reservation.getsockname()[1]
                self._pool = [_Worker(i) for i in range(self.workers)]
                failed = await self._start_all()
                if failed is not None:
                    return failed
                log.info("voice-engine listening on %s:%d with %d workers",
                         settings.host, self._port, self.workers)  # fmt: skip
                if self.ready is not None:
                    self.ready(self._port)
                return await self._supervise(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    # -- start-up ------------------------------------------------------------------------

    async def _start_all(self) -> int | None:
        # Worker 0 first, alone: it holds the configured spool, the one a second engine
        # group would collide on, and its error line must then be the last one printed.
        first = await self._start(self._pool[0])
        results = [first]
        if first is None:
            results += await asyncio.gather(*(self._start(w) for w in self._pool[1:]))
        failed = [code for code in results if code is not None]
        if not failed:
            return None
        # The failing worker has said why on the shared stderr; stop the others quietly
        # (SIGKILL: they have served nothing yet) so that its line stays the last one.
        for worker in self._pool:
            if worker.proc is not None and worker.proc.returncode is None:
                worker.proc.kill()
        for worker in self._pool:
            if worker.proc is not None:
                await worker.proc.wait()
        return failed[0] or 1

    async def _start(self, worker: _Worker) -> int | None:
        """Spawn one worker and wait until it listens; None, or its exit status."""
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        spool = worker_spool_path(self.settings.history_spool_path, worker.index)
        if spool is not None:
            env["HISTORY_SPOOL_PATH"] = str(spool)
        parent = os.getpid()
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "engine", "serve", "--workers", "1",
                "--host", self.settings.host, "--port", str(self._port),
                "--worker-index", str(worker.index), "--ready-fd", str(write_fd),
                *self.extra_args,
                env=env, pass_fds=(write_fd,), preexec_fn=lambda: die_with_parent(parent),
            )  # fmt: skip
        finally:
            os.close(write_fd)
        worker.started_at = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
            # EOF (b"") when the worker exits before it listens: the only writer is gone.
            line = await asyncio.wait_for(
                loop.run_in_executor(None, os.read, read_fd, 64), START_TIMEOUT_SEC
            )
        except TimeoutError:
            line = b""
            worker.proc.kill()
        finally:
            os.close(read_fd)
        if line.strip():
            worker.ready = True
            return None
        code = await worker.proc.wait()
        return code if code else 1

    # -- running -------------------------------------------------------------------------

    async def _supervise(self, stop: asyncio.Event) -> int:
        adopter = asyncio.create_task(self._adopt_orphans(), name="adopt-orphan-spools")
        watchers = {asyncio.create_task(self._watch(w), name=f"watch-{w.index}")
                    for w in self._pool}  # fmt: skip
        await stop.wait()
        self._stopping = True
        log.info("shutting down: draining %d worker(s)", len(self._pool))
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        adopter.cancel()
        await asyncio.gather(adopter, return_exceptions=True)
        codes = await asyncio.gather(*(self._stop(w) for w in self._pool))
        bad = [c for c in codes if c != 0]
        if bad:
            log.error("workers exited with %s", bad)
        log.info("stopped")
        return 0 if not bad else 1

    async def _watch(self, worker: _Worker) -> None:
        """Restart ``worker`` whenever it exits, until shutdown."""
        while not self._stopping:
            assert worker.proc is not None
            code = await worker.proc.wait()
            if self._stopping:
                return
            lived = time.monotonic() - worker.started_at
            worker.failures = 0 if lived >= STABLE_AFTER_SEC else worker.failures + 1
            first, cap = RESTART_BACKOFF_SEC
            delay = min(cap, first * 2 ** max(0, worker.failures - 1))
            log.error("worker %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                      worker.index, worker.proc.pid, code, lived, delay)  # fmt: skip
            await asyncio.sleep(delay)
            failed = await self._start(worker)
            if failed is not None:
                log.error("worker %d failed to start again (exit %s)", worker.index, failed)
            else:
                log.info("worker %d restarted (pid %d)", worker.index, worker.proc.pid)

    async def _stop(self, worker: _Worker) -> int:
        proc = worker.proc
        if proc is None:
            return 0
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(
                proc.wait(), self.settings.shutdown_grace_sec + STOP_MARGIN_SEC
            )
            # Killed by our SIGTERM itself: a (re)starting worker without its handler yet,
            # which had no call to drain.
            return 0 if code == -signal.SIGTERM else code
        except TimeoutError:
            log.error("worker %d did not stop in time; killing it", worker.index)
            proc.kill()
            return await proc.wait()

    async def _adopt_orphans(self) -> None:
        await adopt_orphan_spools(self.settings, self.workers)


async def serve_single(settings: Settings, *, ready: Callable[[int], None] | None = None) -> None:
    """One engine process (``--workers 1``), adopting the spools of former workers too."""
    from engine.server import serve

    adopter = asyncio.create_task(adopt_orphan_spools(settings, 1), name="adopt-orphan-spools")
    try:
        await serve(settings, ready=ready)
    finally:
        adopter.cancel()
        await asyncio.gather(adopter, return_exceptions=True)


async def adopt_orphan_spools(settings: Settings, workers: int) -> None:
    """Replay and remove the spools of worker indexes ``>= workers`` (see the module doc)."""
    from adapters.control_plane.factory import build_control_plane, history_enabled

    orphans = orphan_spools(settings.history_spool_path, workers)
    if not orphans:
        return
    control_plane = build_control_plane(settings)
    try:
        if not history_enabled(settings):
            log.info("history is off: %d spool(s) of former workers left as they are",
                     len(orphans))  # fmt: skip
            return
        for path in orphans:
            await adopt_spool(path, control_plane, settings)
    finally:
        await control_plane.close()


async def adopt_spool(path: Path, control_plane: ControlPlane, settings: Settings) -> bool:
    """Replay one former worker's spool to the backend; delete it once empty. True if deleted."""
    try:
        spool = HistorySpool(path)
    except SpoolError as exc:
        log.warning("cannot adopt the spool %s: %s", path, exc)
        return False
    bridge = HistoryBridge.from_settings(control_plane, settings, store=spool, enabled=True)
    pending = spool.pending_count()
    log.info("adopting the spool %s of a former worker (%d pending writes)", path, pending)
    await bridge.start()
    try:
        while True:  # the bridge has no "spool empty" event: poll the file
            if not spool.pending_count() and not spool.orphaned_calls():
                break
            await asyncio.sleep(ADOPT_POLL_SEC)
        keep = bool(spool.dead_letters())
    finally:
        await bridge.close()  # closes the spool too; what is left stays in the file
    if keep:
        log.warning("the spool %s holds dead letters: kept for an operator", path)
        return False
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", ".lock"))):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    log.info("the spool %s was replayed and removed", path)
    return True
