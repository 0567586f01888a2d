"""Shared pieces of the capacity benchmarks (load.py, echo_baseline.py, peers/): CPU pinning,
process-tree CPU and memory from /proc, client processes that report JSON, percentiles.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


NICE = 0  # set by --nice: a negative value (root) shields a run from a busy machine


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` under ``taskset -c cpus`` (unchanged when cpus is empty or taskset missing),
    at the niceness ``NICE`` when it is not 0."""
    out = list(cmd)
    if cpus and shutil.which("taskset"):
        out = ["taskset", "-c", cpus, *out]
    if NICE:
        out = ["nice", "-n", str(NICE), *out]
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_sec(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (live ones)."""
    total = 0
    for proc in descendants(pid):
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def tree_run_wait_sec(pid: int) -> float:
    """Seconds the tree's threads spent runnable but waiting for a CPU (/proc/*/schedstat).

    On a shared machine this is the disturbance: time the engine wanted a core that other
    processes had.
    """
    total_ns = 0
    for proc in descendants(pid):
        for task in Path(f"/proc/{proc}/task").glob("*/schedstat"):
            try:
                total_ns += int(task.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total_ns / 1e9


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MiB (shared pages counted per process)."""
    total_kib = 0
    for proc in descendants(pid):
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total_kib += int(match.group(1))
    return total_kib / 1024


@dataclass
class CpuMeter:
    """CPU share of a process tree between ``start()`` and ``stop()``."""

    pid: int
    _cpu0: float = 0.0
    _t0: float = 0.0
    _wait0: float = 0.0
    wait_pct: float = 0.0  # after stop(): runnable-but-waiting time, % of the wall time

    def start(self) -> None:
        self._cpu0, self._t0 = tree_cpu_sec(self.pid), time.monotonic()
        self._wait0 = tree_run_wait_sec(self.pid)

    def stop(self) -> tuple[float, float]:
        """(CPU seconds used, percent of one core)."""
        used = tree_cpu_sec(self.pid) - self._cpu0
        wall = max(1e-9, time.monotonic() - self._t0)
        self.wait_pct = 100.0 * (tree_run_wait_sec(self.pid) - self._wait0) / wall
        return used, 100.0 * used / wall


def run_clients(commands: Sequence[list[str]], timeout_sec: float) -> list[dict[str, Any]]:
    """Run client processes at once; each prints one JSON object as its last stdout line."""
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_sec
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results.append({"error": "client timed out", "stderr": err[-2000:]})
            continue
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            results.append({"error": f"client exited {proc.returncode}", "stderr": err[-2000:]})
            continue
        results.append(json.loads(lines[-1]))
    return results


def background_calls(
    target: str, calls: int, cpus: str | None, *, seed: int, duration_sec: float, log: Path
) -> subprocess.Popen[bytes]:
    """``calls`` callers of the default assistant in the issue-12 pattern (benchmarks/load.py:
    20 ms LINEAR16 16 kHz frames in real time, a listed question of about 1.2 s, the reply,
    a random pause of 1-4 s, again), in one client process of its own session (stop it
    with ``os.killpg``; its output goes to ``log``, to say why if it stops early)."""
    cmd = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "load.py"), "client", "--target", target,
        "--sessions", str(calls), "--providers", "embedded", "--assistant", "default",
        "--duration-sec", str(duration_sec), "--ramp-sec", "3", "--seed", str(seed),
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            pinned(cmd, cpus), stdout=out, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip


def wait_for_line(log_path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes],
                  timeout_sec: float) -> re.Match[str]:  # fmt: skip
    """Poll a log file until ``pattern`` matches a line (bounded); raise if the process died."""
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        match = pattern.search(text)
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"no {pattern.pattern!r} in {log_path} within {timeout_sec} s")


def machine() -> str:
    """One line about the machine, for the report."""
    model = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}, "
        f"load average {load[0]:.2f} at start"
    )
