"""HTTP control plane: the customer's backend over one pooled ``httpx.AsyncClient``.

The contract is documented in ``docs/control-plane.openapi.yaml``. Reads retry briefly
and fall back to the last good copy of an assistant; writes never retry here (the
history bridge above owns retries and the spool), they only classify the failure as
transient or permanent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from adapters.control_plane.http_answers import body_excerpt as _excerpt
from adapters.control_plane.http_answers import describe as _describe
from adapters.control_plane.http_answers import retry_after_sec as _retry_after
from adapters.control_plane.http_answers import status_text as _status_text
from adapters.control_plane.tool_http import execute_tool_over_http
from engine.runtime.assistant import (
    AssistantConfig,
    AssistantConfigError,
    is_valid_assistant_id,
    parse_assistant,
)
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    ControlPlaneUnavailable,
    FetchedAssistant,
    PermanentWriteError,
    ToolInvocation,
    TranscriptEntry,
    TransientWriteError,
    WriteTimeout,
)
from engine.runtime.ports.history_store import to_json
from engine.settings import CREDENTIALS_TWICE, url_has_credentials

logger = logging.getLogger(__name__)

_USER_AGENT = "voice-engine/0.1"


class _RetryableFetch(Exception):
    """The backend is down or overloaded right now; worth another try within the budget."""


class _UnusableAnswer(Exception):
    """The backend answered 200 with something that is not a valid assistant."""


class HttpControlPlane:
    """Control plane backed by the customer's HTTP API (see docs/control-plane.md).

    Fetch policy: 5xx, 429, timeouts and connection errors are retried with jittered
    exponential backoff; a new attempt starts only while ``fetch_retry_budget_sec`` has
    not run out, so the worst case is about budget + ``timeout_sec``. When the backend is
    still failing, or answered 200 with a body that is not a valid assistant (not JSON,
    not an object, schema error), the last good copy younger than
    ``config_cache_ttl_sec`` is served as ``backend_cached``: a call that can start with
    yesterday's prompt beats a call that cannot start. An explicit refusal (401, 403,
    other 4xx) is never masked by the cache, and a 404 evicts the cached copy.

    ``api_key`` goes out as ``Authorization: Bearer``; credentials in ``base_url`` as
    Basic. A request has one Authorization header, so both together are refused.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_sec: float,
        history_enabled: bool = True,
        config_cache_ttl_sec: float,
        fetch_retry_budget_sec: float = 1.0,
    ) -> None:
        if api_key and url_has_credentials(base_url):
            raise ValueError(CREDENTIALS_TWICE)
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._timeout_sec = timeout_sec
        self._history_enabled = history_enabled
        self._cache_ttl_sec = config_cache_ttl_sec
        self._retry_budget_sec = fetch_retry_budget_sec
        # id -> (document, monotonic time of the fetch); only ids that validated are stored.
        self._cache: dict[str, tuple[AssistantConfig, float]] = {}
        # One client for the life of the adapter: connection pooling and keep-alive.
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_sec),
        )

    @property
    def base_url(self) -> str:
        """The backend's base URL."""
        return str(self._client.base_url)

    @property
    def history_enabled(self) -> bool:
        """False when HISTORY_ENABLED=false: writes become no-ops."""
        return self._history_enabled

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        """GET /v1/assistants/{id}; see the class docstring for retries and the cache.

        Raises AssistantNotFound or ControlPlaneUnavailable.
        """
        # Validated before anything else: an invalid id never becomes part of a URL.
        if not is_valid_assistant_id(assistant_id):
            raise AssistantNotFound(f"invalid assistant id {assistant_id!r}")
        started = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_before_delay(self._retry_budget_sec),
            wait=wait_exponential(multiplier=0.05, min=0.05, max=0.4) + wait_random(0, 0.05),
            retry=retry_if_exception_type(_RetryableFetch),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    document = await self._fetch_once(assistant_id)
        except (_RetryableFetch, _UnusableAnswer) as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            problem = f"{exc} ({attempts} attempt(s) in {time.monotonic() - started:.2f} s)"
            return self._cached_or_raise(assistant_id, problem)
        self._cache[assistant_id] = (document, time.monotonic())
        return FetchedAssistant(document, source="backend")

    async def _fetch_once(self, assistant_id: str) -> AssistantConfig:
        path = f"/v1/assistants/{assistant_id}"
        try:
            # httpx timeouts are per phase; this bounds the whole exchange.
            async with asyncio.timeout(self._timeout_sec):
                response = await self._client.get(path)
        except (TimeoutError, httpx.TimeoutException):
            raise _RetryableFetch(
                f"backend did not answer GET {path} within {self._timeout_sec:g} s"
            ) from None
        except httpx.RequestError as exc:
            raise _RetryableFetch(f"backend unreachable for GET {path}: {_describe(exc)}") from None
        status = response.status_code
        if status == 404:
            self._cache.pop(assistant_id, None)
            raise AssistantNotFound(f"backend has no assistant {assistant_id!r}")
        if status == 429 or status >= 500:
            raise _RetryableFetch(f"backend answered {_status_text(response)} for GET {path}")
        if status in (401, 403):
            raise ControlPlaneUnavailable(
                f"backend refused GET {path} with {_status_text(response)}: check BACKEND_API_KEY"
            )
        if status != 200:
            raise ControlPlaneUnavailable(
                f"backend refused GET {path} with {_status_text(response)}: {_excerpt(response)}"
            )
        try:
            document = response.json()
        except ValueError:
            raise _UnusableAnswer(
                f"backend answered GET {path} with a body that is not JSON: {_excerpt(response)}"
            ) from None
        if not isinstance(document, dict):
            raise _UnusableAnswer(
                f"backend answered GET {path} with JSON that is not an object "
                f"({type(document).__name__})"
            )
        try:
            return parse_assistant(document, expected_id=assistant_id, origin="backend")
        except AssistantConfigError as exc:
            raise _UnusableAnswer(f"backend sent an invalid assistant: {exc}") from None

    def _cached_or_raise(self, assistant_id: str, problem: str) -> FetchedAssistant:
        cached = self._cache.get(assistant_id)
        if cached is not None:
            document, fetched_at = cached
            age = time.monotonic() - fetched_at
            if age < self._cache_ttl_sec:
                logger.warning(
                    "serving cached assistant %r (%.0f s old): %s", assistant_id, age, problem
                )
                return FetchedAssistant(document, source="backend_cached")
        raise ControlPlaneUnavailable(f"{problem}; no cached copy of {assistant_id!r}")

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        """POST /v1/calls with Idempotency-Key: <call_id>."""
        await self._write("/v1/calls", call.call_id, to_json(call), timeout_sec)

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        """POST /v1/calls/{call_id}/transcripts with Idempotency-Key: <call_id>:<sequence>."""
        path = f"/v1/calls/{quote(entry.call_id, safe='')}/transcripts"
        await self._write(path, f"{entry.call_id}:{entry.sequence}", to_json(entry), timeout_sec)

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        """POST /v1/calls/{call_id}/finalize with Idempotency-Key: <call_id>:finalize."""
        path = f"/v1/calls/{quote(summary.call_id, safe='')}/finalize"
        await self._write(path, f"{summary.call_id}:finalize", to_json(summary), timeout_sec)

    async def _write(
        self, path: str, idempotency_key: str, body: dict[str, Any], timeout_sec: float | None
    ) -> None:
        if not self._history_enabled:
            return
        limit = self._timeout_sec if timeout_sec is None else timeout_sec
        try:
            async with asyncio.timeout(limit):
                response = await self._client.post(
                    path,
                    json=body,
                    headers={"Idempotency-Key": idempotency_key},
                    timeout=httpx.Timeout(limit),
                )
        except (TimeoutError, httpx.TimeoutException):
            raise WriteTimeout(
                f"backend did not answer POST {path} within {limit:g} s", timeout_sec=limit
            ) from None
        except httpx.RequestError as exc:
            raise TransientWriteError(
                f"backend unreachable for POST {path}: {_describe(exc)}"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise TransientWriteError(
                f"backend answered {_status_text(response)} for POST {path}",
                retry_after_sec=_retry_after(response),
            )
        raise PermanentWriteError(
            f"backend refused POST {path} with {_status_text(response)}: {_excerpt(response)}"
        )

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        """POST /v1/calls/{call_id}/tools/{name} with Idempotency-Key: <call_id>:<tool_call_id>.

        Retried within ``timeout_sec``, each attempt also bounded by BACKEND_TIMEOUT_SEC
        (see ``execute_tool_over_http``). Raises ToolFailed.
        """
        return await execute_tool_over_http(
            self._client,
            invocation,
            timeout_sec=timeout_sec,
            attempt_timeout_sec=self._timeout_sec,
        )

    async def close(self) -> None:
        """Close the pooled client; the adapter is unusable afterwards."""
        await self._client.aclose()
