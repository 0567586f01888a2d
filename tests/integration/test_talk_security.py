"""`voice-engine talk --tls --ca FILE` with an API key from the environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import StartEngine
from tests.helpers.security import make_pki


async def run_talk(*args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "talk", *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return await proc.wait(), out.decode()


async def test_talk_over_tls_with_an_api_key(start_engine: StartEngine, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    target = await start_engine(
        ENGINE_TLS_CERT=str(pki.server_cert),
        ENGINE_TLS_KEY=str(pki.server_key),
        ENGINE_API_KEYS="talk-key",
    )
    base = ("--assistant", "default", "--target", target, "--text", "when are you open")
    code, out = await run_talk(*base, "--tls", "--ca", str(pki.ca), "--api-key", "talk-key")
    assert code == 0, out
    assert "We are open from noon" in out
    code, out = await run_talk(*base, "--ca", str(pki.ca), VOICE_ENGINE_API_KEY="talk-key")
    assert code == 0, out
    code, out = await run_talk(*base, "--tls", "--ca", str(pki.ca))
    assert code == 1 and "UNAUTHENTICATED" in out
