"""Every environment variable the engine reads, parsed and validated in one place.

Nothing else in the code base reads ``os.environ``. A bad value stops start-up with
one line that names the variable and says what is allowed (``SettingsError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

BackendMode = Literal["auto", "http", "disabled"]
LogFormat = Literal["text", "json"]
_LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_BACKEND_MODES: tuple[BackendMode, ...] = ("auto", "http", "disabled")
_T = TypeVar("_T")
EventLoop = Literal["asyncio", "uvloop"]
_EVENT_LOOPS: tuple[EventLoop, ...] = ("asyncio", "uvloop")

DEFAULT_AGENTS_DIR = Path(__file__).resolve().parent / "config" / "agents"


class SettingsError(ValueError):
    """An environment variable has a value the engine cannot use."""


# A request carries one Authorization header: the URL's user:pass@ (Basic) would replace
# the bearer token, so the backend would never see the key.
CREDENTIALS_TWICE = (
    "BACKEND_URL carries credentials (user:pass@) and BACKEND_API_KEY is set: a request has "
    "one Authorization header, so the key would not be sent. Set only one of them "
    "(BACKEND_API_KEY is sent as 'Authorization: Bearer', URL credentials as Basic)"
)


def url_has_credentials(url: str) -> bool:
    """True when ``url`` carries a user name or password (``user:pass@host``)."""
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


@dataclass(frozen=True, slots=True)
class Settings:
    """The engine's configuration, read once at start-up."""

    host: str = "127.0.0.1"
    port: int = 50051
    shutdown_grace_sec: float = 10.0
    max_sessions: int = 200
    max_message_bytes: int = 256 * 1024
    log_level: str = "INFO"
    output_audio_lead_ms: int = 500
    idle_timeout_sec: float = 300.0

    backend_mode: BackendMode = "auto"
    backend_url: str | None = None
    backend_api_key: str | None = None
    backend_timeout_sec: float = 5.0
    assistant_local_config_dir: Path = DEFAULT_AGENTS_DIR
    assistant_config_cache_ttl_sec: float = 300.0

    history_enabled: bool = True
    history_queue_max_size: int = 1000
    history_retry_max_attempts: int = 5
    history_retry_backoff_sec: float = 0.5
    history_finalize_drain_timeout_sec: float = 2.0
    history_spool_path: Path | None = None
    history_workers: int = 4
    llm_api_key: str | None = None
    half_close_timeout_sec: float = 30.0

    # Security and operations; docs/operations.md explains each one.
    api_keys: tuple[str, ...] = ()
    api_keys_file: Path | None = None
    reflection_enabled: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_sessions_per_key: int = 0
    start_timeout_sec: float = 10.0
    max_session_sec: float = 4 * 3600.0
    max_utterance_ms: int = 60_000
    input_rate_allowance_ms: int = 30_000
    max_queued_events: int = 500
    max_context_messages: int = 50
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: LogFormat = "text"
    log_http_requests: bool = False
    llm_allowed_base_urls: tuple[str, ...] = ()
    workers: int = 0  # engine processes for `serve`; 0 = one per CPU (engine/workers.py)
    event_loop: EventLoop = "asyncio"
    # Operations (history under a slow backend, gRPC keepalive); docs/operations.md.
    history_max_write_timeout_sec: float = 0.0  # 0: 8x BACKEND_TIMEOUT_SEC
    keepalive_time_sec: float = 60.0
    keepalive_timeout_sec: float = 20.0
    keepalive_min_ping_interval_sec: float = 5.0
    keepalive_max_ping_strikes: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        r = _Reader(env)
        mode = r.get("BACKEND_MODE", "auto", _choice(_BACKEND_MODES))
        backend_url = r.get("BACKEND_URL", "", _url) or None
        backend_api_key = r.get("BACKEND_API_KEY", "", str) or None
        if backend_url and backend_api_key and url_has_credentials(backend_url):
            raise SettingsError(CREDENTIALS_TWICE)
        spool = r.get("HISTORY_SPOOL_PATH", str(_default_state_dir(env) / "history.sqlite3"), str)
        return cls(
            host=r.get("ENGINE_HOST", "127.0.0.1", _non_empty),
            port=r.get("ENGINE_PORT", "50051", _int_range(0, 65535)),
            shutdown_grace_sec=r.get("ENGINE_SHUTDOWN_GRACE_SEC", "10", _float_range(0, 3600)),
            max_sessions=r.get("ENGINE_MAX_SESSIONS", "200", _int_range(1, 100_000)),
            max_message_bytes=r.get(
                "ENGINE_MAX_MESSAGE_BYTES", str(256 * 1024), _int_range(4096, 64 * 1024 * 1024)
            ),
            log_level=r.get("ENGINE_LOG_LEVEL", "INFO", _log_level),
            idle_timeout_sec=r.get("ENGINE_IDLE_TIMEOUT_SEC", "300", _float_range(1, 86400)),
            output_audio_lead_ms=r.get(
                "ENGINE_OUTPUT_AUDIO_LEAD_MS", "500", _int_range(0, 3_600_000)
            ),
            half_close_timeout_sec=r.get(
                "ENGINE_HALF_CLOSE_TIMEOUT_SEC", "30", _float_range(0, 3600)
            ),
            backend_mode=mode,
            backend_url=backend_url,
            backend_api_key=backend_api_key,
            backend_timeout_sec=r.get("BACKEND_TIMEOUT_SEC", "5", _float_range(0.05, 300)),
            assistant_local_config_dir=Path(
                r.get("ASSISTANT_LOCAL_CONFIG_DIR", str(DEFAULT_AGENTS_DIR), _non_empty)
            ),
            assistant_config_cache_ttl_sec=r.get(
                "ASSISTANT_CONFIG_CACHE_TTL_SEC", "300", _float_range(0, 7 * 86400)
            ),
            history_enabled=r.get("HISTORY_ENABLED", "true", _bool),
            history_queue_max_size=r.get("HISTORY_QUEUE_MAX_SIZE", "1000", _int_range(1, 10**7)),
            history_retry_max_attempts=r.get("HISTORY_RETRY_MAX_ATTEMPTS", "5", _int_range(1, 100)),
            history_retry_backoff_sec=r.get(
                "HISTORY_RETRY_BACKOFF_SEC", "0.5", _float_range(0, 600)
            ),
            history_finalize_drain_timeout_sec=r.get(
                "HISTORY_FINALIZE_DRAIN_TIMEOUT_SEC", "2", _float_range(0, 600)
            ),
            history_spool_path=Path(spool) if spool else None,
            history_workers=r.get("HISTORY_WORKERS", "4", _int_range(1, 64)),
            llm_api_key=r.get("LLM_API_KEY", "", str) or None,
            **_security_settings(r),
            workers=r.get("ENGINE_WORKERS", "0", _int_range(0, 1024)),
            event_loop=r.get("ENGINE_EVENT_LOOP", "asyncio", _choice(_EVENT_LOOPS)),
            **_ops_settings(r),
        )


def _security_settings(r: _Reader) -> dict[str, Any]:
    """Authentication, TLS, limits, metrics and logging."""
    tls_cert = r.get("ENGINE_TLS_CERT", "", _optional_file)
    tls_key = r.get("ENGINE_TLS_KEY", "", _optional_file)
    tls_client_ca = r.get("ENGINE_TLS_CLIENT_CA", "", _optional_file)
    if (tls_cert is None) != (tls_key is None):
        raise SettingsError("ENGINE_TLS_CERT and ENGINE_TLS_KEY must be set together")
    if tls_client_ca is not None and tls_cert is None:
        raise SettingsError("ENGINE_TLS_CLIENT_CA (mTLS) needs ENGINE_TLS_CERT and ENGINE_TLS_KEY")
    allowed_llm = r.get("LLM_ALLOWED_BASE_URLS", "", _url_list)
    if r.get("LLM_API_KEY", "", str) and not allowed_llm:
        raise SettingsError(
            "LLM_API_KEY needs LLM_ALLOWED_BASE_URLS: the comma-separated base URLs the key "
            "may be sent to (an assistant naming any other base URL is refused)"
        )
    return {
        "api_keys": r.get("ENGINE_API_KEYS", "", _csv),
        "api_keys_file": r.get("ENGINE_API_KEYS_FILE", "", _optional_file),
        "reflection_enabled": r.get("ENGINE_REFLECTION", "true", _bool),
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_client_ca": tls_client_ca,
        "max_sessions_per_key": r.get("ENGINE_MAX_SESSIONS_PER_KEY", "0", _int_range(0, 100_000)),
        "start_timeout_sec": r.get("ENGINE_START_TIMEOUT_SEC", "10", _float_range(0.1, 600)),
        "max_session_sec": r.get("ENGINE_MAX_SESSION_SEC", "14400", _float_range(1, 7 * 86400)),
        "max_utterance_ms": r.get("ENGINE_MAX_UTTERANCE_MS", "60000", _int_range(1000, 3_600_000)),
        "input_rate_allowance_ms": r.get(
            "ENGINE_INPUT_RATE_ALLOWANCE_MS", "30000", _int_range(0, 3_600_000)
        ),
        "max_queued_events": r.get("ENGINE_MAX_QUEUED_EVENTS", "500", _int_range(10, 10**6)),
        "max_context_messages": r.get("ENGINE_MAX_CONTEXT_MESSAGES", "50", _int_range(2, 10_000)),
        "metrics_port": r.get("ENGINE_METRICS_PORT", "", _optional_port),
        "metrics_host": r.get("ENGINE_METRICS_HOST", "127.0.0.1", _non_empty),
        "log_format": r.get("ENGINE_LOG_FORMAT", "text", _choice(_LOG_FORMATS)),
        "log_http_requests": r.get("ENGINE_LOG_HTTP_REQUESTS", "false", _bool),
        "llm_allowed_base_urls": allowed_llm,
    }


def _ops_settings(r: _Reader) -> dict[str, Any]:
    """History write-timeout growth and gRPC keepalive (docs/operations.md)."""
    return {
        "history_max_write_timeout_sec": r.get(
            "HISTORY_MAX_WRITE_TIMEOUT_SEC", "0", _float_range(0, 3600)
        ),
        "keepalive_time_sec": r.get("ENGINE_KEEPALIVE_TIME_SEC", "60", _float_range(1, 86400)),
        "keepalive_timeout_sec": r.get("ENGINE_KEEPALIVE_TIMEOUT_SEC", "20", _float_range(1, 3600)),
        "keepalive_min_ping_interval_sec": r.get(
            "ENGINE_KEEPALIVE_MIN_PING_INTERVAL_SEC", "5", _float_range(0.1, 86400)
        ),
        "keepalive_max_ping_strikes": r.get(
            "ENGINE_KEEPALIVE_MAX_PING_STRIKES", "2", _int_range(0, 1000)
        ),
    }


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _url_list(raw: str) -> tuple[str, ...]:
    urls = _csv(raw)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r}: expected http:// or https:// URLs, comma-separated")
    return tuple(url.rstrip("/") for url in urls)


def _optional_port(raw: str) -> int | None:
    return _int_range(0, 65535)(raw) if raw else None


def _optional_file(raw: str) -> Path | None:
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def client_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """`voice-engine talk`'s API key from VOICE_ENGINE_API_KEY (a client-side setting)."""
    env = os.environ if environ is None else environ
    return env.get("VOICE_ENGINE_API_KEY", "").strip() or None


def _default_state_dir(env: Mapping[str, str]) -> Path:
    # XDG-style state directory; an explicit HISTORY_SPOOL_PATH overrides it.
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "voice-engine"


_URL_VARIABLES = frozenset({"BACKEND_URL", "LLM_ALLOWED_BASE_URLS"})


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: str, parse: Callable[[str], _T]) -> _T:
        raw = self._env.get(name, default).strip()
        try:
            return parse(raw)
        except ValueError as exc:
            # A URL may carry a password: its value is not repeated.
            shown = name if name in _URL_VARIABLES else f"{name}={raw!r}"
            raise SettingsError(f"{shown} is invalid: {exc}") from None


def _non_empty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _choice(allowed: tuple[_T, ...]) -> Callable[[str], _T]:
    def parse(raw: str) -> _T:
        for option in allowed:
            if raw.lower() == option:
                return option
        raise ValueError(f"allowed values are {', '.join(map(str, allowed))}")

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number of seconds from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number of seconds from {lo:g} to {hi:g}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _url(raw: str) -> str:
    if raw and not raw.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("allowed values are DEBUG, INFO, WARNING, ERROR")
    return level
