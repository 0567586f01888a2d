"""The server process: health, reflection for foreign clients, settings errors, shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient, expect_rpc_error
from tests.helpers.engine_process import EngineProcess, engine_processes, spawn_engine

REPO = Path(__file__).resolve().parents[2]
SERVICE = "voiceengine.v1.VoiceEngineService"


def _buf() -> str:
    local = REPO / ".tools" / "node_modules" / ".bin" / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("buf is missing: `bash scripts/test.sh` installs it")
        pytest.skip("buf is not installed (`bash scripts/test.sh` installs it)")
    return found


@pytest.fixture
async def engine_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[EngineProcess]]]:
    """Spawn `voice-engine serve` children (tests/helpers/engine_process); all end with the test."""
    async with engine_processes(tmp_path) as spawned:

        async def spawn(**env: str) -> EngineProcess:
            env.setdefault("HISTORY_SPOOL_PATH", str(tmp_path / "spool.sqlite3"))
            process = await spawn_engine(tmp_path, **env)
            spawned.append(process)
            return process

        yield spawn


READINESS = "voiceengine.v1.VoiceEngineService"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(target: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


async def test_health_reports_serving(engine: str) -> None:
    assert await _health(engine) == health_pb2.HealthCheckResponse.SERVING
    assert await _health(engine, SERVICE) == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service_to_a_client_that_is_not_ours(engine: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        _buf(), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
        "--list-methods", f"http://{engine}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert f"{SERVICE}/Converse" in out.decode().split()


async def test_a_foreign_client_can_hold_a_text_session(engine: str) -> None:
    # buf curl streams the messages, then half-closes: the engine answers (here: the
    # greeting), then ends the session as INPUT_CLOSED with OK.
    body = '{"start": {"assistantId": "default", "options": {"textOnly": true}}}'
    proc = await asyncio.create_subprocess_exec(
        _buf(), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", body,
        f"http://{engine}/{SERVICE}/Converse",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert '"started"' in text and '"assistantId"' not in text
    assert '"responseDone"' in text
    assert '"ended"' in text and "END_REASON_INPUT_CLOSED" in text


async def test_a_bad_setting_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    for env, needle in (
        ({"BACKEND_MODE": "sometimes"}, "BACKEND_MODE='sometimes' is invalid: allowed values"),
        ({"ENGINE_PORT": "abc"}, "ENGINE_PORT='abc' is invalid: expected an integer"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "serve",
            env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 2
        assert len(lines) == 1 and needle in lines[0]


async def test_sigterm_drains_live_sessions_then_exits_zero(engine_process) -> None:  # type: ignore[no-untyped-def]
    process = await engine_process(ENGINE_SHUTDOWN_GRACE_SEC="1")
    async with grpc.aio.insecure_channel(process.target) as channel:
        live = ConverseClient(channel)
        live.start("default", options=pb.SessionOptions(text_only=True))
        await live.until("response_done")

        process.proc.send_signal(signal.SIGTERM)
        # While draining: readiness NOT_SERVING, and new sessions are turned away...
        async with asyncio.timeout(10):
            while await _health(process.target, READINESS) != NOT_SERVING:
                await asyncio.sleep(0.05)
        # ...but liveness stays SERVING: the process is alive, a probe must not restart it.
        assert await _health(process.target) == health_pb2.HealthCheckResponse.SERVING
        late = ConverseClient(channel)
        late.start("default")
        error = await expect_rpc_error(late)
        assert error.code() == grpc.StatusCode.UNAVAILABLE

        # The live session may still talk during the grace period...
        live.send(text=pb.TextInput(text="what are your opening hours"))
        done = (await live.until("response_done")).response_done
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        # ...then it is ended with a reason that says so.
        ended = (await live.until("ended", timeout=15)).ended
        assert ended.reason == pb.END_REASON_SERVER_SHUTDOWN
        assert await live.status() == grpc.StatusCode.OK
    assert await asyncio.wait_for(process.proc.wait(), 30) == 0


async def test_a_second_engine_on_the_same_spool_stops_with_one_clear_line(
    engine_process, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The spool is opened when history goes to a backend (port 9: nothing listens).
    env = {
        "BACKEND_MODE": "http",
        "BACKEND_URL": "http://127.0.0.1:9",
        "HISTORY_SPOOL_PATH": str(tmp_path / "s.db"),
    }
    await engine_process(**env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve",
        env={**os.environ, "ENGINE_PORT": "0", **env},
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert "held by another process" in last and "its own HISTORY_SPOOL_PATH" in last
