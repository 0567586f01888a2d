"""The engine's own time per tool round trip: everything but the backend's answer.

    .venv/bin/python benchmarks/tools.py [--rounds N] [--sessions S] [--spool] [--backend URL]

One text-only session per ``--sessions`` runs ``--rounds`` turns; in each the model calls
``book_table`` once and answers once its result is back. Measured per round trip: from the
moment the model's generation with the call is over to the moment the model is asked
again with the result, minus the time spent inside ``execute_tool`` (the backend's answer;
with ``--backend`` that includes the HTTP adapter and the reference backend). What is
left is the runtime's work: arguments parsed and checked against the JSON Schema, the
task, the ``tool_started``/``tool_finished`` events, the history entry (through the real
history bridge; ``--spool`` puts it in SQLite first, as production does), the context.
Also printed: the process's CPU time over the same span (robust to a busy machine taking
the core away; with ``--backend`` it includes the HTTP client's work).
Bounded: ``--rounds`` x ``--sessions`` round trips, each session capped by ``--max-sec``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.history.spool import HistorySpool
from engine.runtime import events as ev
from engine.runtime.assistant import parse_assistant
from engine.runtime.history import HistoryBridge
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    FetchedAssistant,
    ToolInvocation,
    TranscriptEntry,
)
from engine.runtime.ports.providers import ChatMessage, ProviderSpec, ToolCallRequest, ToolSpec
from engine.runtime.session import SessionManager, SessionRequest

ASSISTANT = {
    "id": "bench",
    "name": "Bench",
    "tools": [
        {
            "name": "book_table",
            "parameters": {
                "type": "object",
                "properties": {
                    "party_size": {"type": "integer", "minimum": 1, "maximum": 20},
                    "date": {"type": "string"},
                    "time": {"type": "string"},
                },
                "required": ["party_size", "date", "time"],
            },
        }
    ],
}
ARGUMENTS = '{"party_size": 4, "date": "tomorrow", "time": "seven"}'


class Clock:
    """Timestamps of one round trip, and the samples taken so far (ms)."""

    def __init__(self) -> None:
        self.generation_over = 0.0
        self.cpu_at_generation_over = 0.0
        self.in_backend = 0.0
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []  # CPU time of the process over the same span

    def over(self) -> None:
        self.generation_over = time.perf_counter()
        self.cpu_at_generation_over = time.process_time()

    def asked_again(self) -> None:
        total = time.perf_counter() - self.generation_over
        self.samples.append((total - self.in_backend) * 1000)
        self.cpu_samples.append((time.process_time() - self.cpu_at_generation_over) * 1000)
        self.in_backend = 0.0


class BookingModel:
    """Calls book_table, then answers with the result (the clock marks both edges)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._n = 0

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        if messages[-1].role == "tool":
            self._clock.asked_again()
            yield "Booked."
            return
        self._n += 1
        yield ToolCallRequest(f"c{self._n}", "book_table", ARGUMENTS)
        self._clock.over()


class Models:
    """A ProviderFactory with only the model (sessions are text-only)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def language_model(self, spec: ProviderSpec) -> BookingModel:
        return BookingModel(self._clock)

    def synthesizer(self, spec: ProviderSpec) -> Any:
        raise NotImplementedError

    def recognizer(self, spec: ProviderSpec) -> Any:
        raise NotImplementedError

    def vad(self, spec: ProviderSpec) -> Any:
        raise NotImplementedError


class InProcessBackend:
    """A ControlPlane that answers every tool at once and takes every write."""

    def __init__(self, clock: Clock, http: Any = None) -> None:
        self._clock = clock
        self._http = http

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        if assistant_id != "bench":
            raise AssistantNotFound(assistant_id)
        return FetchedAssistant(parse_assistant(ASSISTANT), "local")

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        t0 = time.perf_counter()
        try:
            if self._http is not None:
                return await self._http.execute_tool(invocation, timeout_sec=timeout_sec)
            await asyncio.sleep(0)  # a real adapter yields to the loop at least once
            return {"booking_id": "B0001", "party_size": 4}
        finally:
            self._clock.in_backend += time.perf_counter() - t0

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        await asyncio.sleep(0)

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        await asyncio.sleep(0)

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def one_session(manager: SessionManager, rounds: int, max_sec: float) -> None:
    session = await manager.open(SessionRequest("bench", text_only=True))
    events = session.events()
    await session.start()
    async with asyncio.timeout(max_sec):
        for i in range(rounds):
            await session.send_text(f"book a table, turn {i}")
            async for event in events:
                if isinstance(event, ev.ResponseDone):
                    break
    await session.end(ev.EndReason.CLIENT_ENDED)
    async for _ in events:
        pass
    manager.release(session)


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


async def main(args: argparse.Namespace) -> None:
    clock = Clock()
    http = None
    if args.backend:
        from adapters.control_plane.backend import HttpControlPlane

        http = HttpControlPlane(args.backend, timeout_sec=5.0, config_cache_ttl_sec=0.0)
    backend = InProcessBackend(clock, http)
    with tempfile.TemporaryDirectory() as tmp:
        spool = HistorySpool(Path(tmp) / "spool.sqlite3") if args.spool else None
        bridge = HistoryBridge(
            backend,
            queue_max_size=100_000,
            retry_max_attempts=3,
            retry_backoff_sec=0.1,
            finalize_drain_timeout_sec=5.0,
            spool=spool,
            workers=4,
        )
        await bridge.start()
        manager = SessionManager(backend, Models(clock), bridge, max_sessions=args.sessions)
        for _ in range(args.sessions):  # one after another: the figure is per round trip
            await one_session(manager, args.rounds, args.max_sec)
        await bridge.close()
    await backend.close()
    samples = clock.samples
    where = f"HTTP backend {args.backend}" if args.backend else "in-process backend"
    print(f"{len(samples)} tool round trips ({where}, spool {'on' if args.spool else 'off'})")
    print(
        f"engine's own time per round trip: p50 {percentile(samples, 50):.3f} ms"
        f"  p99 {percentile(samples, 99):.3f} ms  max {max(samples):.3f} ms"
    )
    cpu = clock.cpu_samples
    print(
        f"process CPU time over the same span: p50 {percentile(cpu, 50):.3f} ms"
        f"  p99 {percentile(cpu, 99):.3f} ms (the backend's share included)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="tool round trips per session")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--spool", action="store_true", help="history through the SQLite spool")
    parser.add_argument("--backend", default="", help="reference backend URL (HTTP adapter)")
    parser.add_argument("--max-sec", type=float, default=120.0, help="cap per session")
    asyncio.run(main(parser.parse_args()))
