"""The history spool keeps what a process wrote before SIGKILL (a child process is killed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from adapters.history.spool import HistorySpool


def test_rows_survive_a_sigkill_of_the_writing_process(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal
        from adapters.history.spool import HistorySpool
        from engine.runtime.ports.control_plane import CallRecord, TranscriptEntry
        spool = HistorySpool({str(path)!r})
        spool.add(CallRecord("a", "support", "s", 1000.0), replay=False, now=1.0)
        for n in range(1, 51):
            spool.add(TranscriptEntry("a", n, "user", "x", 1.0, 2.0), replay=False, now=1.0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=30, check=False)
    assert done.returncode == -9
    spool = HistorySpool(path)  # the kernel released the lock with the process
    try:
        assert spool.pending_count() == 51
        assert [o.turn_count for o in spool.orphaned_calls()] == [50]
    finally:
        spool.close()
