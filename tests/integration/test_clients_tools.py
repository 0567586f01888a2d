"""The Node.js and Go example clients run a client-executed tool: they answer the engine's
`tool_call` with a `tool_result`, and the assistant speaks what the tool returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartEngine
from tests.helpers.client_cli import CLIENT_NAMES, run_client

pytestmark = pytest.mark.parametrize("client", CLIENT_NAMES)

CONCIERGE = """\
id: concierge
name: Concierge
tools:
  - name: crm_lookup
    executor: client
    timeout_ms: 10000
llm:
  provider: scripted
  rules:
    - patterns: ['\\bwho am i\\b']
      tool: crm_lookup
      reply: You are {result.name}, a {result.tier} member.
      error_reply: I could not look you up.
"""


async def _engine(start_engine: StartEngine, tmp_path: Path) -> str:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "concierge.yaml").write_text(CONCIERGE)
    return await start_engine(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))


async def test_the_client_answers_tool_call_and_the_reply_uses_its_result(
    client: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    target = await _engine(start_engine, tmp_path)
    run = await run_client(
        client, target, "--assistant", "concierge", "--text-only", "--json",
        "--text", "who am I", "--tool-result", 'crm_lookup={"name": "Ada", "tier": "gold"}',
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    [call] = run.of_kind("tool_call")
    assert call["name"] == "crm_lookup" and call["deadline_ms"] == 10000
    [finished] = run.of_kind("tool_finished")
    assert finished["outcome"] == "TOOL_OUTCOME_OK" and finished["executor"] == "client"
    said = "".join(str(e["delta"]) for e in run.of_kind("assistant_text"))
    assert said.strip() == "You are Ada, a gold member."


async def test_a_tool_the_client_does_not_run_is_answered_with_an_error(
    client: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    target = await _engine(start_engine, tmp_path)
    run = await run_client(
        client, target, "--assistant", "concierge", "--text-only", "--json", "--text", "who am I"
    )
    assert run.returncode == 0, run.describe()
    [finished] = run.of_kind("tool_finished")
    assert finished["outcome"] == "TOOL_OUTCOME_ERROR"
    said = "".join(str(e["delta"]) for e in run.of_kind("assistant_text"))
    assert said.strip() == "I could not look you up."
