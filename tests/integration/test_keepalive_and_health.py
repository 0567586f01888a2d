"""HTTP/2 keepalive pings from balancers (Envoy, gateways) are accepted, also on an idle
connection, instead of being answered with GOAWAY "too_many_pings".

(Liveness vs readiness during a drain: tests/integration/test_server_lifecycle.py.)
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.conftest import StartServer, target_of

IDLE_SEC = 4.0  # several 1 s pings with no call in flight
PINGING_CLIENT = [
    # Like Envoy's connection_keepalive, only faster: a ping every second, also idle.
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
READY = grpc.ChannelConnectivity.READY


async def check(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(response.status)


async def left_ready_while_idle(target: str) -> bool:
    """Connect, stay idle while the client pings; True when the connection was lost."""
    async with grpc.aio.insecure_channel(target, options=PINGING_CLIENT) as channel:
        assert await check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert channel.get_state() == READY
        try:
            await asyncio.wait_for(channel.wait_for_state_change(READY), IDLE_SEC)
        except TimeoutError:
            lost = False
        else:
            lost = True
        # Either way the channel still works (after a reconnect when it was lost).
        assert await check(channel) == health_pb2.HealthCheckResponse.SERVING
        return lost


async def test_idle_keepalive_pings_keep_the_connection(start_server: StartServer) -> None:
    server = await start_server(ENGINE_KEEPALIVE_MIN_PING_INTERVAL_SEC="0.5")
    assert not await left_ready_while_idle(target_of(server))


async def test_grpc_default_ping_policy_would_drop_the_connection(
    start_server: StartServer,
) -> None:
    # The control: with gRPC's own floor (5 minutes) the same client is sent GOAWAY
    # "too_many_pings" after a few strikes, as Envoy's upstream keepalive would be.
    server = await start_server(ENGINE_KEEPALIVE_MIN_PING_INTERVAL_SEC="300")
    assert await left_ready_while_idle(target_of(server))
