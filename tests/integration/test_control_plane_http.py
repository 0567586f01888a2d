"""HttpControlPlane against the reference backend on 127.0.0.1 (real SQLite, no mocks)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.control_plane.backend import HttpControlPlane
from adapters.control_plane.factory import build_control_plane, choose_control_plane
from adapters.control_plane.null import NullControlPlane
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    ControlPlaneUnavailable,
    PermanentWriteError,
    TranscriptEntry,
    TransientWriteError,
)
from engine.settings import Settings, SettingsError
from tests.helpers.refbackend import RefBackend, running_refbackend

ASSISTANT: dict[str, Any] = {
    "id": "support",
    "name": "Support desk",
    "greeting": "Hello, how can I help?",
    "llm": {"provider": "scripted", "fallback": "Sorry?"},
}
CALL_ID = "6f1c2a4e-0000-4000-8000-000000000001"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        await ref.put_assistant(ASSISTANT)
        await ref.reset()  # the PUT above should not count in the tests' stats
        yield ref


def make_plane(url: str, **overrides: Any) -> HttpControlPlane:
    options: dict[str, Any] = {"timeout_sec": 0.5, "config_cache_ttl_sec": 60.0}
    options.update(overrides)
    return HttpControlPlane(url, **options)


@pytest.fixture
async def plane(backend: RefBackend) -> AsyncIterator[HttpControlPlane]:
    adapter = make_plane(backend.url)
    yield adapter
    await adapter.close()


def entry(sequence: int, text: str = "hello") -> TranscriptEntry:
    return TranscriptEntry(CALL_ID, sequence, "user", text, 1000.0 + sequence, 1000.5 + sequence)


def call_record() -> CallRecord:
    return CallRecord(CALL_ID, "support", "session-1", 1000.0, {"caller": "+15550100"})


# Adapter choice: BACKEND_MODE x BACKEND_URL ----------------------------------------

URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, NullControlPlane),
        ({"BACKEND_URL": URL}, HttpControlPlane),
        ({"BACKEND_MODE": "auto", "BACKEND_URL": URL}, HttpControlPlane),
        ({"BACKEND_MODE": "http", "BACKEND_URL": URL}, HttpControlPlane),
        ({"BACKEND_MODE": "http"}, NullControlPlane),
        ({"BACKEND_MODE": "disabled"}, NullControlPlane),
        ({"BACKEND_MODE": "disabled", "BACKEND_URL": URL}, NullControlPlane),
    ],
)
async def test_backend_mode_and_url_choose_the_adapter(
    env: dict[str, str], expected: type[object]
) -> None:
    plane = build_control_plane(Settings.from_env(env))
    try:
        assert type(plane) is expected
    finally:
        await plane.close()


def test_http_mode_without_url_warns_and_runs_engine_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert choose_control_plane(Settings.from_env({"BACKEND_MODE": "http"})) == "null"
    assert "BACKEND_URL is not set" in caplog.text


@pytest.mark.parametrize("mode", ["auto", "http", "disabled"])
async def test_history_disabled_turns_writes_off_in_every_mode(mode: str) -> None:
    env = {"BACKEND_MODE": mode, "BACKEND_URL": URL, "HISTORY_ENABLED": "false"}
    plane = build_control_plane(Settings.from_env(env))
    try:
        assert plane.history_enabled is False
    finally:
        await plane.close()


async def test_history_disabled_writes_send_nothing(backend: RefBackend) -> None:
    plane = make_plane(backend.url, history_enabled=False)
    try:
        await plane.create_call(call_record())
        await plane.append_transcript(entry(1))
        await plane.finalize_call(CallSummary(CALL_ID, 1010.0, 10.0, 1, "hangup"))
    finally:
        await plane.close()
    assert (await backend.stats()).get("total", 0) == 0


# Fetching assistants -----------------------------------------------------------------


async def test_fetch_returns_the_backend_document(plane: HttpControlPlane) -> None:
    fetched = await plane.fetch_assistant("support")
    assert fetched.source == "backend"
    assert fetched.config.name == "Support desk"


async def test_unknown_assistant_is_not_found(plane: HttpControlPlane) -> None:
    with pytest.raises(AssistantNotFound):
        await plane.fetch_assistant("nobody")


async def test_fetch_retries_server_errors_within_the_budget(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(fail_next=2, status=500)
    started = time.monotonic()
    fetched = await plane.fetch_assistant("support")
    assert time.monotonic() - started < 1.0  # the default fetch_retry_budget_sec
    assert fetched.source == "backend"
    assert (await backend.stats())["GET /v1/assistants/{assistant_id}"] == 3


async def test_backend_slower_than_the_timeout_is_unavailable(backend: RefBackend) -> None:
    await backend.faults(delay_sec=0.4)
    plane = make_plane(backend.url, timeout_sec=0.1, fetch_retry_budget_sec=0.2)
    try:
        with pytest.raises(ControlPlaneUnavailable, match="did not answer"):
            await plane.fetch_assistant("support")
    finally:
        await plane.close()
        await backend.reset()


async def test_malformed_answer_is_unavailable_and_named(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(malformed_next=1)
    with pytest.raises(ControlPlaneUnavailable, match="not JSON"):
        await plane.fetch_assistant("support")


async def test_malformed_answer_falls_back_to_the_last_good_copy(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await plane.fetch_assistant("support")
    await backend.faults(malformed_next=1)
    assert (await plane.fetch_assistant("support")).source == "backend_cached"


async def test_backend_down_serves_the_cached_copy(tmp_path: Path) -> None:
    async with running_refbackend(tmp_path / "b.sqlite3") as ref:
        await ref.put_assistant(ASSISTANT)
        plane = make_plane(ref.url)
        assert (await plane.fetch_assistant("support")).source == "backend"
    try:  # the server is gone now: connections are refused
        fetched = await plane.fetch_assistant("support")
        assert fetched.source == "backend_cached"
        assert fetched.config.name == "Support desk"
    finally:
        await plane.close()


async def test_backend_down_with_an_expired_cache_is_unavailable(tmp_path: Path) -> None:
    async with running_refbackend(tmp_path / "b.sqlite3") as ref:
        await ref.put_assistant(ASSISTANT)
        plane = make_plane(ref.url, config_cache_ttl_sec=0.0, fetch_retry_budget_sec=0.1)
        await plane.fetch_assistant("support")
    try:
        with pytest.raises(ControlPlaneUnavailable, match="unreachable"):
            await plane.fetch_assistant("support")
    finally:
        await plane.close()


@pytest.mark.parametrize(
    "assistant_id", ["../etc/passwd", "a/b", "..", "", "%2e%2e", "a?b=c", "x" * 65]
)
async def test_unsafe_ids_never_reach_the_backend(
    backend: RefBackend, plane: HttpControlPlane, assistant_id: str
) -> None:
    with pytest.raises(AssistantNotFound):
        await plane.fetch_assistant(assistant_id)
    assert (await backend.stats()).get("total", 0) == 0


# Writes --------------------------------------------------------------------------------


async def test_repeated_writes_store_one_row_each(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await plane.create_call(call_record())
    await plane.create_call(call_record())
    await plane.append_transcript(entry(1))
    await plane.append_transcript(entry(1))
    await plane.append_transcript(entry(2, "bye"))
    summary = CallSummary(CALL_ID, 1010.0, 10.0, 2, "hangup")
    await plane.finalize_call(summary)
    await plane.finalize_call(summary)
    stored = await backend.get_call(CALL_ID)
    assert stored["call"]["metadata"] == {"caller": "+15550100"}
    assert [e["sequence"] for e in stored["transcripts"]] == [1, 2]
    assert stored["summary"]["end_reason"] == "hangup"


async def test_server_error_on_write_is_transient(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(fail_next=1, status=500)
    with pytest.raises(TransientWriteError):
        await plane.create_call(call_record())


async def test_dropped_connection_on_write_is_transient(
    backend: RefBackend, plane: HttpControlPlane
) -> None:
    await backend.faults(drop_next=1)
    with pytest.raises(TransientWriteError, match="unreachable"):
        await plane.create_call(call_record())


async def test_write_slower_than_the_timeout_is_transient(backend: RefBackend) -> None:
    await backend.faults(delay_sec=0.3)
    plane = make_plane(backend.url, timeout_sec=0.1)
    try:
        with pytest.raises(TransientWriteError, match="did not answer"):
            await plane.create_call(call_record())
    finally:
        await plane.close()
        await backend.reset()


async def test_rate_limit_carries_retry_after(backend: RefBackend, plane: HttpControlPlane) -> None:
    await backend.faults(fail_next=1, status=429, retry_after=7)
    with pytest.raises(TransientWriteError) as caught:
        await plane.create_call(call_record())
    assert caught.value.retry_after_sec == 7.0


async def test_rejected_body_is_permanent_with_status_and_reason(
    plane: HttpControlPlane,
) -> None:
    await plane.create_call(call_record())
    with pytest.raises(PermanentWriteError, match=r"400 Bad Request.*sequence must be >= 1"):
        await plane.append_transcript(entry(0))


async def test_transcript_for_an_unknown_call_is_permanent(plane: HttpControlPlane) -> None:
    with pytest.raises(PermanentWriteError, match="404"):
        await plane.append_transcript(entry(1))


# Bearer auth ---------------------------------------------------------------------------


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "s.sqlite3", api_key="s3cret") as ref:
        await ref.put_assistant(ASSISTANT)
        yield ref


async def test_bearer_token_is_sent(secured: RefBackend) -> None:
    plane = make_plane(secured.url, api_key="s3cret")
    try:
        assert (await plane.fetch_assistant("support")).source == "backend"
        await plane.create_call(call_record())
    finally:
        await plane.close()


async def test_wrong_token_is_refused_not_retried(secured: RefBackend) -> None:
    plane = make_plane(secured.url, api_key="wrong")
    try:
        with pytest.raises(ControlPlaneUnavailable, match="401"):
            await plane.fetch_assistant("support")
        with pytest.raises(PermanentWriteError, match="401"):
            await plane.create_call(call_record())
    finally:
        await plane.close()
    assert (await secured.stats())["GET /v1/assistants/{assistant_id}"] == 1


async def test_url_credentials_with_an_api_key_are_refused_before_any_request(
    tmp_path: Path,
) -> None:
    async with running_refbackend(tmp_path / "backend.sqlite3", api_key="devkey") as backend:
        url = backend.url.replace("http://", "http://operator:s3cret@")
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"BACKEND_URL": url, "BACKEND_API_KEY": "devkey"})
        message = str(refused.value)
        assert "BACKEND_URL" in message and "BACKEND_API_KEY" in message
        assert "s3cret" not in message
        with pytest.raises(ValueError, match="BACKEND_API_KEY"):
            make_plane(url, api_key="devkey")
        assert (await backend.stats()).get("total", 0) == 0


async def test_url_credentials_go_out_as_basic_and_the_key_as_bearer(tmp_path: Path) -> None:
    async with running_refbackend(tmp_path / "backend.sqlite3", api_key="devkey") as backend:
        await backend.put_assistant(ASSISTANT)
        with_key = make_plane(backend.url, api_key="devkey")
        with_url_credentials = make_plane(backend.url.replace("http://", "http://devkey:x@"))
        try:
            assert (await with_key.fetch_assistant("support")).source == "backend"
            with pytest.raises(ControlPlaneUnavailable, match="401"):
                await with_url_credentials.fetch_assistant("support")  # Basic, not the bearer
        finally:
            await with_key.close()
            await with_url_credentials.close()


def test_a_bad_backend_url_is_named_without_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"BACKEND_URL": "ftp://operator:s3cret@backend.example"})
    assert "BACKEND_URL" in str(refused.value) and "s3cret" not in str(refused.value)
