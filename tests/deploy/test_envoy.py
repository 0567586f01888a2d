"""Engines behind the real Envoy (deploy/envoy/envoy.yaml), a caller on ONE channel to it.

How we know where a call went: the assistant greets with its engine's name (each engine has
its own assistant directory), and Envoy's admin /clusters counts active requests per engine;
the two are compared where it matters. Health-check intervals are 0.5 s here (the shipped
config says 5 s); nothing else differs from the shipped file.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from tests.deploy.envoy_process import EnvoyProcess, running_envoy
from tests.deploy.fleet import (
    NOT_SERVING,
    SERVING,
    Call,
    Fleet,
    FleetEngine,
    open_call,
    share,
)
from tests.helpers.engine_process import free_port

HEALTH_INTERVAL = 0.5
# "Within the health-check interval", with room for a loaded 2-core machine: polls below
# are bounded by this many intervals, never asserted as timings.
HC_DEADLINE = 20 * HEALTH_INTERVAL


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path / "engines")
    try:
        yield fleet
    finally:
        await fleet.close()


@asynccontextmanager
async def envoy_for(fleet: Fleet, tmp_path: Path) -> AsyncIterator[EnvoyProcess]:
    """Envoy in front of the fleet's engines, once it sees all of them healthy."""
    async with running_envoy(
        tmp_path / "envoy",
        engine_ports=[e.port for e in fleet.engines],
        health_interval_sec=HEALTH_INTERVAL,
    ) as envoy:
        await envoy.wait_hosts({e.port for e in fleet.engines}, set(), timeout=HC_DEADLINE)
        yield envoy


async def test_thirty_calls_on_one_connection_spread_over_three_engines(
    fleet: Fleet, tmp_path: Path
) -> None:
    engines = await fleet.start(3)
    async with (
        envoy_for(fleet, tmp_path) as envoy,
        grpc.aio.insecure_channel(envoy.target) as channel,
    ):
        calls = [await open_call(channel) for _ in range(30)]
        by_greeting = share(calls)
        hosts = await envoy.hosts()

        # Least request balances each stream: with all 30 calls live, every engine holds
        # about a third (an L4 balancer would pin the one connection, so all 30, to one engine).
        assert sum(by_greeting.values()) == 30
        assert set(by_greeting) == {e.name for e in engines}
        assert min(by_greeting.values()) >= 7, by_greeting
        # Envoy's view agrees with what the callers heard.
        assert {e.name: hosts[e.port].rq_active for e in engines} == dict(by_greeting)
        # ...and it all came over one client connection.
        assert await envoy.counter("http.grpc_ingress.downstream_cx_total") == 1

        for call in calls:
            ended = await call.hang_up()
            assert ended.reason == pb.END_REASON_CLIENT_ENDED


async def test_an_engine_that_starts_after_envoy_gets_calls_within_a_few_checks(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Envoy checks a cluster that has seen no traffic yet only every 60 s by default: an
    # engine not ready at Envoy's first check then stayed failed for a minute. The shipped
    # no_traffic_interval (scaled here like every interval) must bring it in at once.
    (early,) = await fleet.start(1)
    late = fleet.add()
    late.port = free_port()
    async with running_envoy(
        tmp_path / "envoy",
        engine_ports=[early.port, late.port],
        health_interval_sec=HEALTH_INTERVAL,
    ) as envoy:
        await envoy.wait_hosts({early.port}, {late.port}, timeout=HC_DEADLINE)
        await late.start()
        await envoy.wait_hosts({early.port, late.port}, set(), timeout=HC_DEADLINE)
        async with grpc.aio.insecure_channel(envoy.target) as channel:
            # Power of two choices draws its two engines with replacement: with two engines
            # a call goes to the busier one with p = 1/4, so four calls all land on one
            # engine about once in 64 runs. Calls are opened until both engines have one.
            calls = [await open_call(channel)]
            while set(share(calls)) != {early.name, late.name} and len(calls) < 12:
                calls.append(await open_call(channel))
            assert set(share(calls)) == {early.name, late.name}
            for call in calls:
                await call.hang_up()


async def test_sigterm_drains_one_engine_while_envoy_sends_new_calls_elsewhere(
    fleet: Fleet, tmp_path: Path
) -> None:
    # A grace long enough for the checks below; the drain is cut short by nothing else.
    first, second = await fleet.start(2, ENGINE_SHUTDOWN_GRACE_SEC="15")
    async with (
        envoy_for(fleet, tmp_path) as envoy,
        grpc.aio.insecure_channel(envoy.target) as channel,
    ):
        # Live calls on both engines (least request with random choices may, rarely, put
        # the first few on one engine: keep calling, boundedly, until both hold two).
        live = [await open_call(channel) for _ in range(4)]
        while min(share(live)[e.name] for e in (first, second)) < 2:
            assert len(live) < 20, share(live)
            live.append(await open_call(channel))
        draining = [c for c in live if c.engine == first.name]

        first.proc.proc.send_signal(signal.SIGTERM)
        await _until_health(first, NOT_SERVING)  # the engine itself says it is draining
        # New calls right away, before and after Envoy has seen the drain: none fails
        # (an UNAVAILABLE "shutting down" is retried on another engine), none stays on
        # the draining engine.
        during = [await open_call(channel) for _ in range(5)]
        await envoy.wait_hosts({second.port}, {first.port}, timeout=HC_DEADLINE)
        after = [await open_call(channel) for _ in range(5)]
        assert share(during + after) == {second.name: 10}

        # The draining engine's live calls go on within the grace period...
        for call in draining:
            assert "nine to five" in await call.ask()
        # ...then end cleanly, with a reason that says why.
        for call in draining:
            ended = (await call.client.until("ended", timeout=30)).ended
            assert ended.reason == pb.END_REASON_SERVER_SHUTDOWN
            assert await call.client.status() == grpc.StatusCode.OK
        assert await asyncio.wait_for(first.proc.proc.wait(), 30) == 0

        # The other engine's calls never noticed.
        for call in [c for c in live if c.engine == second.name] + during + after:
            assert "nine to five" in await call.ask()
            assert (await call.hang_up()).reason == pb.END_REASON_CLIENT_ENDED


async def test_two_of_three_engines_draining_is_no_reason_to_panic(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Below 50% healthy engines Envoy would by default "panic" and balance over all of
    # them, draining ones included. The config turns that off: calls go to the one left.
    a, b, c = await fleet.start(3, ENGINE_SHUTDOWN_GRACE_SEC="30")
    async with envoy_for(fleet, tmp_path) as envoy:
        held = []
        for engine in (a, b):  # a live call keeps each draining engine up for its grace
            channel = grpc.aio.insecure_channel(engine.proc.target)
            held.append((channel, await open_call(channel)))
            engine.proc.proc.send_signal(signal.SIGTERM)
            await _until_health(engine, NOT_SERVING)
        await envoy.wait_hosts({c.port}, {a.port, b.port}, timeout=HC_DEADLINE)
        async with grpc.aio.insecure_channel(envoy.target) as gateway:
            # Envoy's workers act on a health change a moment after its admin API shows it
            # (measured: up to ~2 intervals); refused attempts in that moment are retried.
            # In panic, attempts would keep going to the draining engines: poll (bounded)
            # until ten calls in a row reached no draining engine at all.
            calls = await _calls_avoiding(envoy, gateway, {a.port, b.port}, in_a_row=10)
            assert share(calls) == {c.name: len(calls)}  # and none failed
            for call in calls:
                await call.hang_up()
        for channel, call in held:
            await call.hang_up()
            await channel.close()


async def test_a_full_engine_gets_no_new_calls(fleet: Fleet, tmp_path: Path) -> None:
    (small,) = await fleet.start(1, ENGINE_MAX_SESSIONS="2")
    (roomy,) = await fleet.start(1)
    # Another gateway fills `small` directly, past Envoy.
    async with (
        envoy_for(fleet, tmp_path) as envoy,
        grpc.aio.insecure_channel(small.proc.target) as direct,
    ):
        held = [await open_call(direct) for _ in range(2)]
        assert share(held) == {small.name: 2}
        # Readiness says "full"; liveness is a separate question.
        await _until_health(small, NOT_SERVING)
        await envoy.wait_hosts({roomy.port}, {small.port}, timeout=HC_DEADLINE)

        async with grpc.aio.insecure_channel(envoy.target) as channel:
            fresh = [await open_call(channel) for _ in range(3)]
            assert share(fresh) == {roomy.name: 3}
            for call in fresh:
                await call.hang_up()

        # A slot frees: ready again, and Envoy sends it calls again.
        await held[0].hang_up()
        await _until_health(small, SERVING)
        await envoy.wait_hosts({small.port, roomy.port}, set(), timeout=HC_DEADLINE)
        await held[1].hang_up()


async def _until_health(engine: FleetEngine, status: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HC_DEADLINE
    while await engine.health() != status:
        assert loop.time() < deadline, f"{engine.name} never answered {status}"
        await asyncio.sleep(0.02)


async def _calls_avoiding(
    envoy: EnvoyProcess, channel: grpc.aio.Channel, ports: set[int], in_a_row: int
) -> list[Call]:
    """Open calls until ``in_a_row`` consecutive ones sent no attempt to ``ports``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HC_DEADLINE
    calls: list[Call] = []
    clean = 0
    while clean < in_a_row:
        assert loop.time() < deadline, f"Envoy keeps sending calls to {sorted(ports)}"
        before = await envoy.hosts()
        calls.append(await open_call(channel))
        after = await envoy.hosts()
        touched = any(after[p].rq_total > before[p].rq_total for p in ports)
        clean = 0 if touched else clean + 1
        await asyncio.sleep(HEALTH_INTERVAL / 5)
    return calls
