"""Secrets stay secret: the LLM key goes only to allowed base URLs; passwords in URLs,
backend answers and caller text stay out of logs above DEBUG and out of client errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from engine.settings import Settings, SettingsError
from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient, expect_rpc_error
from tests.helpers.engine_process import engine_processes, spawn_engine
from tests.helpers.fake_openai import running_fake_openai
from tests.helpers.refbackend import RefBackend, running_refbackend
from tests.helpers.security import error_reason

ChannelTo = Callable[[str], grpc.aio.Channel]
LLM_KEY = "sk-test-4f1d2c3b"
CARD = "4111 1111 1111 1111"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RefBackend]:
    async with running_refbackend(tmp_path / "backend.sqlite3") as ref:
        yield ref
        await ref.reset()


async def test_a_config_naming_another_llm_base_url_never_receives_the_key(
    backend: RefBackend, start_engine: StartEngine, channel_to: ChannelTo
) -> None:
    async with running_fake_openai() as allowed, running_fake_openai() as capture:
        allowed.reply(["Fine, thanks."])
        await backend.put_assistant(_llm_assistant("honest", allowed.base_url))
        await backend.put_assistant(_llm_assistant("thief", capture.base_url))
        target = await start_engine(
            BACKEND_MODE="http",
            BACKEND_URL=backend.url,
            LLM_API_KEY=LLM_KEY,
            LLM_ALLOWED_BASE_URLS=allowed.base_url,
        )
        thief = ConverseClient(channel_to(target))
        thief.start("thief", options=pb.SessionOptions(text_only=True))
        error = await expect_rpc_error(thief)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(error)[1] == "ASSISTANT_CONFIG_INVALID"
        assert "LLM_ALLOWED_BASE_URLS" in (error.details() or "")

        honest = ConverseClient(channel_to(target))
        honest.start("honest", options=pb.SessionOptions(text_only=True))
        await honest.until("started")
        honest.send(text=pb.TextInput(text="how are you"))
        await honest.until("response_done")
        assert allowed.requests[0].headers.get("Authorization") == f"Bearer {LLM_KEY}"
        assert capture.requests == []  # the disallowed server never saw a request


def _llm_assistant(assistant_id: str, base_url: str) -> dict[str, object]:
    return {
        "id": assistant_id,
        "name": assistant_id,
        "llm": {"provider": "openai", "base_url": base_url, "model": "m"},
    }


def test_an_llm_key_without_allowed_base_urls_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError, match="LLM_ALLOWED_BASE_URLS"):
        Settings.from_env({"LLM_API_KEY": LLM_KEY})


async def test_logs_hold_no_url_password_no_request_lines_and_no_caller_text(
    backend: RefBackend, tmp_path: Path, channel_to: ChannelTo
) -> None:
    await backend.put_assistant(
        {"id": "desk", "name": "Desk", "llm": {"provider": "scripted", "fallback": "Noted."}}
    )
    url_with_password = backend.url.replace("http://", "http://ops:hunter2@")
    async with engine_processes(tmp_path) as spawned:
        engine = await spawn_engine(
            tmp_path,
            BACKEND_MODE="http",
            BACKEND_URL=url_with_password,
            HISTORY_SPOOL_PATH=str(tmp_path / "spool.sqlite3"),
            HISTORY_RETRY_BACKOFF_SEC="0.01",
            HISTORY_FINALIZE_DRAIN_TIMEOUT_SEC="1",
        )
        spawned.append(engine)
        client = ConverseClient(channel_to(engine.target))
        client.start("desk", options=pb.SessionOptions(text_only=True))
        await client.until("started")
        # Every history write from now on is refused for good: dead-lettered and logged.
        await backend.faults(fail_next=50, status=422)
        client.send(text=pb.TextInput(text=f"my card number is {CARD}"))
        await client.until("response_done")
        client.send(end=pb.EndSession())
        await client.until("ended")
        await client.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20

        while not any("refused by the backend" in line for line in engine.log):
            assert loop.time() < deadline, "the refused write was never logged"
            await asyncio.sleep(0.05)
    text = "".join(engine.log)
    assert "hunter2" not in text
    assert "HTTP Request" not in text  # httpx request lines are off by default
    assert CARD not in text and "4111" not in text
    assert "***@127.0.0.1" in text  # the URL is logged, redacted
