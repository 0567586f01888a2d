"""Helpers of the integration tests; ``start_server`` and ``target_of`` are in tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import StartServer, target_of
from tests.helpers.fake_openai import FakeOpenAI, running_fake_openai

__all__ = ["StartServer", "talker_agents", "target_of"]


def talker_agents(tmp_path: Path, reply: str) -> Path:
    """An assistants directory with ``talker``, whose every answer is ``reply``."""
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "talker.yaml").write_text(
        f"id: talker\nname: Talker\nllm:\n  provider: scripted\n  fallback: {reply}\n"
    )
    return agents


@pytest.fixture
async def llm_server() -> AsyncIterator[FakeOpenAI]:
    """An OpenAI-compatible chat server on loopback, scripted by the test."""
    async with running_fake_openai() as fake:
        yield fake
