"""Prometheus metrics of one engine, in a registry of its own (tests run several engines).

Served on ``ENGINE_METRICS_HOST:ENGINE_METRICS_PORT`` (loopback by default) when the port
is set. Names and labels are listed in docs/operations.md.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

# TurnMetrics field -> histogram name
TURN_LATENCIES = {
    "end_of_speech_to_final_transcript_ms": "end_of_speech_to_final_transcript",
    "end_of_speech_to_first_audio_ms": "end_of_speech_to_first_audio",
    "llm_first_token_ms": "llm_first_token",
    "tts_first_audio_ms": "tts_first_audio",
    "tool_ms": "tool_wait",
}
_TOOL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class _HistoryCollector(Collector):
    """History counters read at scrape time from the bridge's own ``counters()``."""

    def __init__(self, counters: Callable[[], object]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "voiceengine_history_writes", "History writes by outcome", labels=["outcome"]
        )
        counts = self._counters()
        values: Mapping[str, int] = (
            dataclasses.asdict(counts) if dataclasses.is_dataclass(counts) else {}  # type: ignore[arg-type]
        )
        for outcome, value in sorted(values.items()):
            family.add_metric([outcome], float(value))
        yield family


class _EarlyReplyCollector(Collector):
    """Early replies (speculations begun while the caller paused) by outcome, at scrape."""

    def __init__(self, counts: Callable[[], object]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "voiceengine_early_replies",
            "Replies begun while the caller paused: started, used, discarded",
            labels=["outcome"],
        )
        for outcome, value in sorted(_fields(self._counts()).items()):
            if isinstance(value, int):
                family.add_metric([outcome], float(value))
        yield family


# Fields of the Whisper pool's stats that are gauges (the rest are monotonic counters).
_POOL_GAUGES = ("workers", "max_pending", "pending")


def _fields(stats: object) -> dict[str, object]:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    return {}


class _RecognizerCollector(Collector):
    """The recognizer's counters (the provider factory's ``recognizer_stats()``), at scrape.

    Integer fields become ``voiceengine_asr_hybrid_total{event}`` (whisper finals, phrase
    chosen, the three fallbacks, restarted early passes); its ``pool`` (the shared
    Whisper pool, absent until first use) becomes ``voiceengine_whisper_pool_*``.
    """

    def __init__(self, stats: Callable[[], object]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        values = _fields(self._stats())
        events = CounterMetricFamily(
            "voiceengine_asr_hybrid",
            "Recognizer final transcripts by source, restarted Whisper passes, grammar passes",
            labels=["event"],
        )
        for name, value in sorted(values.items()):
            if isinstance(value, int):
                events.add_metric([name], float(value))
        yield events
        pool = _fields(values.get("pool"))
        if not pool:
            return
        requests = CounterMetricFamily(
            "voiceengine_whisper_pool_requests",
            "Whisper pool requests by outcome (submitted, completed, failed, refused, ...)",
            labels=["outcome"],
        )
        for name, value in sorted(pool.items()):
            if isinstance(value, int) and name not in _POOL_GAUGES and name != "batches":
                requests.add_metric([name], float(value))
        yield requests
        if isinstance(pool.get("batches"), int):
            yield CounterMetricFamily(
                "voiceengine_whisper_pool_batches",
                "Whisper model calls (completed + failed over batches = mean batch size)",
                value=float(pool["batches"]),  # type: ignore[arg-type]
            )
        for name in _POOL_GAUGES:
            value = pool.get(name)
            if isinstance(value, int):
                yield GaugeMetricFamily(
                    f"voiceengine_whisper_pool_{name}", f"Whisper pool {name}", value=float(value)
                )


class EngineMetrics:
    """Every metric the engine exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_sessions = Gauge(
            "voiceengine_active_sessions", "Converse streams open now", registry=r
        )
        self.sessions_ended = Counter(
            "voiceengine_sessions_ended", "Sessions by end reason", ["reason"], registry=r
        )
        self.turns = Counter(
            "voiceengine_turns", "Responses by how they ended", ["status"], registry=r
        )
        self.latency = Histogram(
            "voiceengine_turn_latency_seconds",
            "Per-turn latencies (stage label: see docs/operations.md)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "voiceengine_rpc_errors",
            "Fatal statuses by code and reason",
            ["code", "reason"],
            registry=r,
        )
        self.session_errors = Counter(
            "voiceengine_session_errors", "Non-fatal `error` events by code", ["code"], registry=r
        )
        self.auth_failures = Counter(
            "voiceengine_auth_failures", "Rejected credentials by reason", ["reason"], registry=r
        )
        self.limit_rejections = Counter(
            "voiceengine_limit_rejections",
            "Sessions refused or ended by a limit",
            ["limit"],
            registry=r,
        )
        self.malformed_requests = Counter(
            "voiceengine_malformed_requests", "Requests that did not parse", registry=r
        )
        # Tool names come from assistant definitions (a bounded set per deployment).
        self.tool_latency = Histogram(
            "voiceengine_tool_latency_seconds",
            "Tool calls from start to result, by tool and executor",
            ["tool", "executor"],
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self.tool_failures = Counter(
            "voiceengine_tool_failures",
            "Tool calls that did not end ok, by tool and outcome",
            ["tool", "outcome"],
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def watch_history(self, counters: Callable[[], object]) -> None:
        """Export the history bridge's counters."""
        self.registry.register(_HistoryCollector(counters))

    def watch_recognizer(self, stats: Callable[[], object]) -> None:
        """Export the hybrid recognizer's counters (read at scrape time)."""
        self.registry.register(_RecognizerCollector(stats))

    def watch_early_replies(self, counts: Callable[[], object]) -> None:
        """Export the sessions' early-reply counts (read at scrape time)."""
        self.registry.register(_EarlyReplyCollector(counts))

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics in a daemon thread; returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        bound: int = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop serving /metrics."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
