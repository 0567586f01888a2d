"""Helpers for the security tests: error details, metrics scrapes, test-time certificates."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from tests.helpers.converse import ConverseClient


class KeyedClient(ConverseClient):
    """A Converse call that sends ``authorization`` metadata."""

    def __init__(self, channel: grpc.aio.Channel, authorization: str | None) -> None:
        self._requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        stub = pb_grpc.VoiceEngineServiceStub(channel)
        metadata = (("authorization", authorization),) if authorization is not None else None
        self.call = stub.Converse(self._request_stream(), metadata=metadata)
        self.received: list[pb.ConverseResponse] = []


def error_reason(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(domain, reason) of the google.rpc.ErrorInfo the status carries."""
    trailers = error.trailing_metadata() or ()
    raw = next(value for key, value in trailers if key == "grpc-status-details-bin")
    status = rpc_status.status_pb2.Status.FromString(raw)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.domain, info.reason
    raise AssertionError("no ErrorInfo in the status details")


def scrape(port: int) -> dict[str, float]:
    """The engine's /metrics as {'name{labels}': value} (comments dropped)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent); labels must match exactly."""
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        name = f"{name}{{{inner}}}"
    return samples.get(name, 0.0)


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(directory: Path, *, ca_name: str = "test CA") -> Pki:
    """Certificates made now, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    server_cert, server_key = leaf("localhost", True)
    client_cert, client_key = leaf("test client", False)
    (directory / "server.pem").write_bytes(server_cert.public_bytes(pem))
    _write_key(server_key, directory / "server.key")
    (directory / "client.pem").write_bytes(client_cert.public_bytes(pem))
    _write_key(client_key, directory / "client.key")
    return Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
