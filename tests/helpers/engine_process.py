"""`python -m engine serve` in a child process, for tests that must kill or restart it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")

# History retried quickly, so tests with a failing backend stay short.
FAST_HISTORY = {
    "HISTORY_RETRY_BACKOFF_SEC": "0.05",
    "HISTORY_RETRY_MAX_ATTEMPTS": "3",
    "HISTORY_FINALIZE_DRAIN_TIMEOUT_SEC": "0.5",
}


def http_backend_env(url: str, spool: Path | None = None, **extra: str) -> dict[str, str]:
    """Engine settings for a backend over HTTP at ``url``, history retried fast.

    ``spool``: the history spool's file, for an engine whose successor (after a kill or a
    shutdown) must find what it left.
    """
    spooled = {"HISTORY_SPOOL_PATH": str(spool)} if spool is not None else {}
    return {"BACKEND_MODE": "http", "BACKEND_URL": url, **spooled, **FAST_HISTORY, **extra}


class EngineProcess:
    """A running engine subprocess on a free loopback port; its stderr is kept in ``log``."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: list[str]) -> None:
        self.proc = proc
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.log = log
        self._reader: asyncio.Task[None] | None = None

    def _keep_reading(self) -> None:
        # The pipe must be drained, or a chatty engine (retry warnings) blocks on stderr.
        async def read() -> None:
            assert self.proc.stderr is not None
            while line := await self.proc.stderr.readline():
                self.log.append(line.decode(errors="replace"))

        self._reader = asyncio.create_task(read(), name=f"engine-{self.proc.pid}-stderr")

    async def kill(self) -> int:
        """SIGKILL: no shutdown code runs, exactly like a crash or an OOM kill."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._stop_reading()
        return code

    async def stop(self, timeout_sec: float = 15) -> None:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it takes too long."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_sec)
            except TimeoutError:
                await self.kill()
        await self._stop_reading()

    async def _stop_reading(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def engine_test_env(**overrides: str) -> dict[str, str]:
    """The settings every test engine starts from, in-process or as a child process.

    Loopback and any free port, engine-only mode, an unlimited audio lead (tests do not
    wait for replies to play in real time), and one process unless a test asks for
    `serve --workers N` (the default is one per CPU).
    """
    return {
        "ENGINE_HOST": "127.0.0.1",
        "ENGINE_PORT": "0",
        "BACKEND_MODE": "disabled",
        "ENGINE_OUTPUT_AUDIO_LEAD_MS": "3600000",
        "ENGINE_WORKERS": "1",
        **overrides,
    }


async def spawn_engine(cwd: Path, *, cpus: str = "", **env: str) -> EngineProcess:
    """Start an engine subprocess (``engine_test_env``) and wait until it listens.

    ``cpus``: a taskset list the engine is pinned to (benchmarks; "" for none).
    """
    full_env = {**os.environ, **engine_test_env(**env)}
    pin = ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []
    proc = await asyncio.create_subprocess_exec(
        *pin, sys.executable, "-m", "engine", "serve",
        env=full_env, stderr=asyncio.subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    assert proc.stderr is not None
    log: list[str] = []
    try:
        async with asyncio.timeout(30):
            while raw := await proc.stderr.readline():
                line = raw.decode(errors="replace")
                log.append(line)
                if match := _LISTENING.search(line):
                    process = EngineProcess(proc, int(match.group(1)), log)
                    process._keep_reading()
                    return process
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise
    await proc.wait()
    raise AssertionError("the engine exited before listening:\n" + "".join(log))


@asynccontextmanager
async def engine_processes(cwd: Path) -> AsyncIterator[list[EngineProcess]]:
    """Collects spawned engines; any still running at the end are killed."""
    spawned: list[EngineProcess] = []
    try:
        yield spawned
    finally:
        for process in spawned:
            await process.kill()
