"""Run the example clients (clients/node, clients/go) and the buf CLI as a user would.

scripts/clients.sh builds the clients and scripts/test.sh installs buf; both run in CI.
A test whose tool is missing skips locally but fails in CI (CI=true), so a broken build
cannot hide behind a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.audio.formats import AudioEncoding, AudioFormat

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node" / "converse.js"
GO_CLIENT = ROOT / ".tools" / "go" / "bin" / "voice-engine-converse"
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
CLIENT_NAMES = ["node", "go"]
RUN_TIMEOUT_SEC = 120.0


def _require(path: Path, what: str) -> None:
    if path.exists():
        return
    message = f"{what} is not built ({path}): run scripts/clients.sh (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def client_command(name: str) -> list[str]:
    """The command line that starts client ``name`` ("node" or "go")."""
    if name == "node":
        node = shutil.which("node")
        if node is None or not (ROOT / "clients" / "node" / "node_modules").is_dir():
            _require(ROOT / "clients" / "node" / "node_modules", "the Node.js client")
        return [node or "node", str(NODE_CLIENT)]
    _require(GO_CLIENT, "the Go client")
    return [str(GO_CLIENT)]


def buf_command() -> list[str]:
    """The buf CLI that scripts/test.sh installs."""
    _require(BUF, "buf")
    return [str(BUF)]


@dataclass
class ClientRun:
    """What one client run printed: its events (in order), its final status, its exit code."""

    returncode: int
    events: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The ``data`` of every event of one kind."""
        return [e["data"] for e in self.events if e["event"] == kind]

    def describe(self) -> str:
        return f"exit {self.returncode}, status {self.status}, events {self.kinds()}\n{self.stderr}"


async def run_client(name: str, target: str, *args: str) -> ClientRun:
    """Run client ``name`` against ``target`` with ``--json`` and collect what it printed."""
    proc = await asyncio.create_subprocess_exec(
        *client_command(name), "--target", target, "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_SEC)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    run = ClientRun(proc.returncode, stderr=err.decode(errors="replace"))
    for line in out.decode().splitlines():
        record = json.loads(line)
        if "status" in record:
            run.status = record["status"]
        else:
            run.events.append(record)
    return run


def write_wav(path: Path, data: bytes, fmt: AudioFormat) -> None:
    """Write wire-format audio as a WAV file: 16-bit PCM, or G.711 mu-law (format 7)."""
    if fmt.encoding is AudioEncoding.LINEAR16:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(fmt.sample_rate_hz)
            wav.writeframes(data)
        return
    pad = b"\0" if len(data) % 2 else b""
    fmt_chunk = struct.pack("<HHIIHHH", 7, 1, fmt.sample_rate_hz, fmt.sample_rate_hz, 1, 8, 0)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt_chunk))
        + fmt_chunk
        + b"data"
        + struct.pack("<I", len(data))
        + data
        + pad
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@dataclass(frozen=True)
class WavFile:
    """A WAV file's header facts and audio bytes."""

    format_tag: int  # 1 = PCM, 7 = mu-law
    channels: int
    sample_rate_hz: int
    bits_per_sample: int
    data: bytes

    def header(self) -> tuple[int, int, int, int]:
        """(format tag, channels, sample rate, bits per sample)."""
        return (self.format_tag, self.channels, self.sample_rate_hz, self.bits_per_sample)


def read_wav(path: Path) -> WavFile:
    """Parse a RIFF WAV file (any format tag) without converting its samples."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", "not a WAV file"
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8, "RIFF size does not match the file"
    pos, header, data = 12, None, None
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            header = struct.unpack("<HHIIHH", body[:16])
        elif chunk_id == b"data":
            data = body
        pos += 8 + size + size % 2
    assert header is not None and data is not None, "WAV without fmt or data"
    tag, channels, rate, _byte_rate, _align, bits = header
    return WavFile(tag, channels, rate, bits, data)
