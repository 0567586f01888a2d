"""Helpers of the integration tests; ``start_server`` and ``target_of`` are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import StartServer, target_of

__all__ = ["StartServer", "talker_agents", "target_of"]


def talker_agents(tmp_path: Path, reply: str) -> Path:
    """An assistants directory with ``talker``, whose every answer is ``reply``."""
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "talker.yaml").write_text(
        f"id: talker\nname: Talker\nllm:\n  provider: scripted\n  fallback: {reply}\n"
    )
    return agents
