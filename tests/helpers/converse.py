"""A test client for the Converse stream: send requests, await events with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT = 20.0


class ConverseClient:
    """One Converse call driven by a test."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        self._stub = pb_grpc.VoiceEngineServiceStub(channel)
        self.call = self._stub.Converse(self._request_stream())
        self.received: list[pb.ConverseResponse] = []

    async def _request_stream(self) -> AsyncIterator[pb.ConverseRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, request: pb.ConverseRequest | None = None, **fields: Any) -> None:
        """Queue one request (or keyword fields of a ConverseRequest)."""
        self._requests.put_nowait(request if request is not None else pb.ConverseRequest(**fields))

    def start(self, assistant_id: str = "default", **start_fields: Any) -> None:
        """Queue a `start`."""
        self.send(start=pb.StartSession(assistant_id=assistant_id, **start_fields))

    def close_requests(self) -> None:
        """Half-close the request stream."""
        self._requests.put_nowait(None)

    async def next(self, timeout: float = DEFAULT_TIMEOUT) -> pb.ConverseResponse:
        """The next event; raises StopAsyncIteration at the end of the stream."""
        message = await asyncio.wait_for(self.call.read(), timeout)
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        assert isinstance(message, pb.ConverseResponse)
        self.received.append(message)
        return message

    async def until(self, kind: str, timeout: float = DEFAULT_TIMEOUT) -> pb.ConverseResponse:
        """Read events until one of ``kind`` arrives; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.next(max(0.01, deadline - loop.time()))
            if message.WhichOneof("event") == kind:
                return message

    async def drain(self, timeout: float = DEFAULT_TIMEOUT) -> list[pb.ConverseResponse]:
        """Read everything up to the end of the stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out: list[pb.ConverseResponse] = []
        while True:
            try:
                out.append(await self.next(max(0.01, deadline - loop.time())))
            except StopAsyncIteration:
                return out

    async def status(self) -> grpc.StatusCode:
        """The RPC's final status code."""
        code = await self.call.code()
        assert isinstance(code, grpc.StatusCode)
        return code

    def of_kind(self, kind: str) -> list[pb.ConverseResponse]:
        """Received events of one kind."""
        return [m for m in self.received if m.WhichOneof("event") == kind]


async def expect_rpc_error(
    client: ConverseClient, timeout: float = DEFAULT_TIMEOUT
) -> grpc.aio.AioRpcError:
    """Drain the call and return the error it ended with (fails if it ended OK)."""
    try:
        await client.drain(timeout)
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError(f"the call ended without an error (status {await client.status()})")
