"""Tool metrics scraped from the real server: per-tool latency and failures by outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.security import metric, scrape
from tests.integration.conftest import StartServer, target_of

ChannelTo = Callable[[str], grpc.aio.Channel]


async def test_each_tool_call_is_timed_and_failures_are_counted_by_outcome(
    start_server: StartServer, channel_to: ChannelTo
) -> None:
    server = await start_server()
    client = ConverseClient(channel_to(target_of(server)))
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("response_done")  # the greeting
    # Nothing was booked in this call, so there is nothing to cancel: the tool fails.
    client.send(text=pb.TextInput(text="please cancel my booking"))
    finished = (await client.until("tool_finished")).tool_finished
    assert finished.name == "cancel_booking" and finished.outcome != pb.TOOL_OUTCOME_OK
    assert (await client.until("error")).error.code == "tool_failed"
    await client.until("metrics")
    client.send(end=pb.EndSession())
    await client.drain()

    assert server.metrics_port is not None
    samples = await asyncio.to_thread(scrape, server.metrics_port)
    count = metric(
        samples,
        "voiceengine_tool_latency_seconds_count",
        executor="backend",  # the exposition sorts labels by name
        tool="cancel_booking",
    )
    assert count == 1
    outcome = pb.ToolOutcome.Name(finished.outcome).removeprefix("TOOL_OUTCOME_").lower()
    failures = metric(
        samples, "voiceengine_tool_failures_total", outcome=outcome, tool="cancel_booking"
    )
    assert failures == 1
    waited = 'voiceengine_turn_latency_seconds_count{stage="tool_wait"}'
    assert samples[waited] == 1
