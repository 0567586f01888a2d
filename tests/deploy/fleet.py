"""A fleet of engine processes for the Envoy tests, and calls that say which engine took them.

Each engine is a real `python -m engine serve` child (tests/helpers/engine_process) with its
own port, its own history spool and its own assistant directory. In engine-only mode the
assistant `desk` greets with the engine's name, so a caller can tell from the greeting
alone which engine took the call: an observation independent of Envoy's own statistics.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.engine_process import EngineProcess, spawn_engine

DESK = "desk"
SERVICE = "voiceengine.v1.VoiceEngineService"
_GREETING = re.compile(r"This is (engine-\d+)\.")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FleetEngine:
    """One engine process of the fleet (restartable on the same port and spool)."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.workdir = workdir
        self.env = env
        self.process: EngineProcess | None = None
        self.port = 0

    @property
    def proc(self) -> EngineProcess:
        assert self.process is not None
        return self.process

    async def start(self) -> None:
        env = {**self.env, "ENGINE_PORT": str(self.port)}
        self.process = await spawn_engine(self.workdir, **env)
        self.port = self.process.port

    async def health(self, service: str = SERVICE) -> int:
        """The engine's own answer to grpc.health.v1 Check (asked directly, not via Envoy)."""
        async with grpc.aio.insecure_channel(self.proc.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return int(response.status)


class Fleet:
    """N engines; every one still running at the end is killed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.engines: list[FleetEngine] = []

    async def start(self, count: int, **env: str) -> list[FleetEngine]:
        added = [self.add(**env) for _ in range(count)]
        await asyncio.gather(*(engine.start() for engine in added))
        return added

    def add(self, **env: str) -> FleetEngine:
        """A new engine of the fleet, not started yet."""
        name = f"engine-{len(self.engines) + 1}"
        workdir = self.root / name
        agents = workdir / "agents"
        agents.mkdir(parents=True)
        (agents / f"{DESK}.yaml").write_text(yaml.safe_dump(desk_assistant(name)))
        base = {
            "HISTORY_SPOOL_PATH": str(workdir / "spool.sqlite3"),
            "ASSISTANT_LOCAL_CONFIG_DIR": str(agents),
            "ENGINE_SHUTDOWN_GRACE_SEC": "1",
        }
        engine = FleetEngine(name, workdir, {**base, **env})
        self.engines.append(engine)
        return engine

    def by_name(self, name: str) -> FleetEngine:
        (engine,) = [e for e in self.engines if e.name == name]
        return engine

    async def close(self) -> None:
        for engine in self.engines:
            if engine.process is not None:
                await engine.process.kill()


def desk_assistant(engine_name: str) -> dict[str, object]:
    return {
        "id": DESK,
        "name": "Desk",
        "greeting": f"This is {engine_name}.",
        "llm": {
            "provider": "scripted",
            "rules": [{"patterns": [r"\bhours\b"], "reply": "We are open from nine to five."}],
            "fallback": "Sorry, I only know our opening hours.",
        },
    }


class Call:
    """One text call through some channel, knowing which engine greeted it."""

    def __init__(self, client: ConverseClient, started: pb.SessionStarted, greeting: str) -> None:
        self.client = client
        self.started = started
        self.greeting = greeting

    @property
    def engine(self) -> str:
        match = _GREETING.search(self.greeting)
        assert match, f"not a fleet greeting: {self.greeting!r}"
        return match.group(1)

    async def ask(self, text: str = "what are your hours") -> str:
        self.client.send(text=pb.TextInput(text=text))
        done = (await self.client.until("response_done")).response_done
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        return done.text

    async def hang_up(self) -> pb.SessionEnded:
        self.client.send(end=pb.EndSession(reason="caller hung up"))
        ended = (await self.client.until("ended")).ended
        assert await self.client.status() == grpc.StatusCode.OK
        return ended


async def open_call(channel: grpc.aio.Channel, assistant_id: str = DESK) -> Call:
    """Start a text-only call and wait for its greeting (it says which engine answered)."""
    client = ConverseClient(channel)
    client.start(assistant_id, options=pb.SessionOptions(text_only=True))
    started = (await client.until("started")).started
    done = (await client.until("response_done")).response_done
    return Call(client, started, done.text)


def share(calls: list[Call]) -> Counter[str]:
    """How many of the calls each engine took, by greeting."""
    return Counter(call.engine for call in calls)
