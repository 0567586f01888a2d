"""TLS and mTLS on the real server with certificates made at test time."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceengine.v1 import converse_pb2 as pb

from engine.settings import Settings, SettingsError
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.security import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def converse_once(channel: grpc.aio.Channel) -> grpc.StatusCode:
    client = ConverseClient(channel)
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    client.send(end=pb.EndSession())
    await client.drain()
    return await client.status()


async def check_health(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_tls_handshake_and_a_session(start_engine: StartEngine, pki: Pki) -> None:
    target = await start_engine(
        ENGINE_TLS_CERT=str(pki.server_cert), ENGINE_TLS_KEY=str(pki.server_key)
    )
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    async with grpc.aio.secure_channel(target, credentials) as channel:
        assert await converse_once(channel) == grpc.StatusCode.OK
    # Plaintext is not spoken on a TLS port.
    async with grpc.aio.insecure_channel(target) as channel:
        assert await check_health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    start_engine: StartEngine, pki: Pki, tmp_path: Path
) -> None:
    target = await start_engine(
        ENGINE_TLS_CERT=str(pki.server_cert), ENGINE_TLS_KEY=str(pki.server_key)
    )
    stranger = make_pki(tmp_path / "other", ca_name="another CA")
    credentials = grpc.ssl_channel_credentials(stranger.ca.read_bytes())
    async with grpc.aio.secure_channel(target, credentials) as channel:
        assert await check_health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate_from_the_client_ca(
    start_engine: StartEngine, pki: Pki, tmp_path: Path
) -> None:
    target = await start_engine(
        ENGINE_TLS_CERT=str(pki.server_cert),
        ENGINE_TLS_KEY=str(pki.server_key),
        ENGINE_TLS_CLIENT_CA=str(pki.ca),
    )
    with_cert = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
    )
    async with grpc.aio.secure_channel(target, with_cert) as channel:
        assert await converse_once(channel) == grpc.StatusCode.OK
    without_cert = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    async with grpc.aio.secure_channel(target, without_cert) as channel:
        assert await check_health(channel) == grpc.StatusCode.UNAVAILABLE
    stranger = make_pki(tmp_path / "other", ca_name="another CA")
    foreign_cert = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), stranger.client_key.read_bytes(), stranger.client_cert.read_bytes()
    )
    async with grpc.aio.secure_channel(target, foreign_cert) as channel:
        assert await check_health(channel) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_without_its_key_is_a_configuration_error(pki: Pki) -> None:
    with pytest.raises(SettingsError, match="ENGINE_TLS_KEY"):
        Settings.from_env({"ENGINE_TLS_CERT": str(pki.server_cert)})
