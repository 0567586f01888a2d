"""The CPUs this process may use (for sizing worker processes and thread pools)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["usable_cpus"]


def usable_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity (``taskset``, cpusets), capped by a
    cgroup v2 CPU quota (a container limited to 2 CPUs on a 32-core node gets 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))  # ceil
    except (OSError, ValueError):
        pass
    return max(1, cpus)
