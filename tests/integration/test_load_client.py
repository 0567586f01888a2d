"""benchmarks/load.py's Go caller (benchmarks/goload) holds real calls with the real server.

Built by scripts/clients.sh like the example clients; load.py runs it with --client go.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from benchmarks.load import GO_CLIENT, _write_questions
from tests.helpers.client_cli import RUN_TIMEOUT_SEC


async def test_the_go_load_client_asks_questions_and_reports_each_turn(
    engine: str, tmp_path: Path
) -> None:
    if not GO_CLIENT.exists():
        message = f"the Go load client is not built ({GO_CLIENT}): run scripts/clients.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    questions = tmp_path / "questions.json"
    await asyncio.to_thread(_write_questions, "testkit", questions)
    process = await asyncio.create_subprocess_exec(
        str(GO_CLIENT), "-target", engine, "-sessions", "2", "-assistant", "testkit",
        "-questions", str(questions), "-duration-sec", "8", "-ramp-sec", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SEC)
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["errors"] == []
    turns = report["turns"]
    assert len(turns) >= 2  # each call asks at least once in 8 s (pauses are 1-4 s)
    for turn in turns:
        assert turn["heard_right"] is True  # the test kit's ASR returns the question asked
        assert turn["server_ms"] is not None and turn["server_ms"] >= 600 - 20  # end silence
        assert turn["client_ms"] is not None and turn["overhead_ms"] is not None
        assert turn["nth"] >= 1
    assert {t["nth"] for t in turns} >= {1}
    assert report["frames"] > 2 * 8 * 1000 // 20 * 0.8  # real-time frames for 8 s, 2 calls
    assert report["cpu_sec"] > 0 and report["wall_sec"] >= 8
