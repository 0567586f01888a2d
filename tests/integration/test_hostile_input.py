"""Property test: random request sequences and raw bytes against the real server.

Every stream ends with a defined status (OK or a documented error carrying an ErrorInfo),
nothing is logged as a traceback, a well-behaved session running alongside completes
untouched, and tasks and memory come back to their baseline afterwards.

Hypothesis runs in a worker thread; each example's stream runs in the test's event loop,
where the engine serves, so examples share one real server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voiceengine.v1 import converse_pb2 as pb

from tests.helpers.converse import ConverseClient
from tests.helpers.security import error_reason
from tests.integration.conftest import StartServer, target_of

CONVERSE = "/voiceengine.v1.VoiceEngineService/Converse"
EXAMPLES = 250
DEFINED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

formats = st.builds(
    pb.AudioFormat,
    encoding=st.integers(0, 3),
    sample_rate_hz=st.sampled_from([0, 8000, 16000, 44100, 48000]),
)
starts = st.builds(
    lambda assistant, fin, fout, text_only, meta: pb.ConverseRequest(
        start=pb.StartSession(
            assistant_id=assistant,
            input_audio=fin,
            output_audio=fout,
            options=pb.SessionOptions(text_only=text_only),
            metadata=meta,
        )
    ),
    st.sampled_from(["default", "default", "", "nope", "../etc/passwd", "x" * 70]),
    formats,
    formats,
    st.booleans(),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
requests = st.one_of(
    starts,
    st.builds(lambda b: pb.ConverseRequest(audio=pb.AudioInput(data=b)), st.binary(max_size=6400)),
    st.builds(lambda t: pb.ConverseRequest(text=pb.TextInput(text=t)), st.text(max_size=40)),
    st.builds(
        lambda r, ms: pb.ConverseRequest(playback=pb.PlaybackProgress(response_id=r, played_ms=ms)),
        st.text(max_size=8),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        lambda a: pb.ConverseRequest(control=pb.Control(action=a)),  # type: ignore[arg-type]
        st.integers(0, 5),
    ),
    st.builds(lambda r: pb.ConverseRequest(end=pb.EndSession(reason=r)), st.text(max_size=8)),
    st.just(pb.ConverseRequest()),
)
messages = st.one_of(requests.map(lambda r: r.SerializeToString()), st.binary(max_size=48))
VALID_START = pb.ConverseRequest(start=pb.StartSession(assistant_id="default")).SerializeToString()
streams = st.tuples(
    # Most streams open a real session first, so the hostile part reaches a live session.
    st.lists(messages, max_size=10).flatmap(
        lambda rest: st.sampled_from([[VALID_START, *rest], [VALID_START, *rest], rest])
    ),
    st.sampled_from(["half-close", "half-close", "cancel"]),
)


async def run_stream(channel: grpc.aio.Channel, sent: list[bytes], ending: str) -> str:
    """Send ``sent``; return the status name ('local' for the client's own write race)."""

    async def out() -> AsyncIterator[bytes]:
        for message in sent:
            yield message

    call = channel.stream_stream(CONVERSE)(out())
    try:
        async with asyncio.timeout(30):
            async for _ in call:
                if ending == "cancel":
                    call.cancel()
                    return "CANCELLED"
    except asyncio.CancelledError:
        return "CANCELLED"
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.INTERNAL and "execute_batch" in (
            exc.debug_error_string() or ""
        ):
            return "local"  # our write raced the server's close: the client's own error
        assert exc.code() in DEFINED, (exc.code(), exc.details())
        assert error_reason(exc)[0] == "voiceengine.v1"
        return exc.code().name
    return "OK"


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def good_session(channel: grpc.aio.Channel, stop: asyncio.Event) -> int:
    client = ConverseClient(channel)
    client.start("default", options=pb.SessionOptions(text_only=True))
    await client.until("started")
    await client.until("response_done")  # the greeting
    turns = 0
    while not stop.is_set() and turns < 500:  # bounded
        client.send(text=pb.TextInput(text="what are your opening hours"))
        done = (await client.until("response_done", timeout=60)).response_done
        assert done.status == pb.RESPONSE_STATUS_COMPLETED
        assert "noon" in done.text
        turns += 1
    client.send(end=pb.EndSession())
    client.close_requests()  # the client's own request task ends too
    ended = (await client.until("ended")).ended
    assert ended.reason == pb.END_REASON_CLIENT_ENDED
    await client.drain()
    assert await client.status() == grpc.StatusCode.OK
    return turns


async def settle(server_live: Callable[[], int], baseline_tasks: int | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while server_live() or (
        baseline_tasks is not None and len(asyncio.all_tasks()) > baseline_tasks
    ):
        assert loop.time() < deadline, (
            server_live(),
            baseline_tasks,
            sorted(t.get_name() + repr(t.get_coro()) for t in asyncio.all_tasks()),
        )
        await asyncio.sleep(0.05)


async def test_hostile_streams_end_cleanly(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(ENGINE_START_TIMEOUT_SEC="2", ENGINE_IDLE_TIMEOUT_SEC="5")
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(target_of(server)) as channel:
        live = lambda: server.engine.sessions.live_sessions  # noqa: E731
        outcomes: dict[str, int] = {}

        def hostile(examples: int) -> Callable[[], None]:
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(stream=streams)
            def check(stream: tuple[list[bytes], str]) -> None:
                sent, ending = stream
                future = asyncio.run_coroutine_threadsafe(run_stream(channel, sent, ending), loop)
                outcome = future.result(timeout=60)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

            return check

        # Warm-up: the first audio sessions load the recognizer; measure after them.
        check_warm = hostile(30)
        await asyncio.to_thread(check_warm)
        await settle(live)
        gc.collect()
        baseline_tasks = len(asyncio.all_tasks())
        baseline_rss = rss_kb()
        caplog.clear()

        stop = asyncio.Event()
        good = asyncio.create_task(good_session(channel, stop))
        await asyncio.to_thread(hostile(EXAMPLES))
        stop.set()
        assert await good >= 1
        await settle(live, baseline_tasks)
        gc.collect()
        grown_mb = (rss_kb() - baseline_rss) / 1024

    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    assert sum(outcomes.values()) >= EXAMPLES
    print(f"outcomes {outcomes}; RSS grew {grown_mb:.1f} MB")
    assert grown_mb < 40, f"RSS grew {grown_mb:.1f} MB over {EXAMPLES} hostile streams"
