"""ENGINE_MAX_CONTEXT_MESSAGES: the model sees the system prompt and the latest turns only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.conftest import StartEngine
from tests.helpers.converse import ConverseClient
from tests.helpers.fake_openai import running_fake_openai

ChannelTo = Callable[[str], grpc.aio.Channel]


async def test_the_context_keeps_the_system_prompt_and_the_latest_messages(
    start_engine: StartEngine, channel_to: ChannelTo, tmp_path: Path
) -> None:
    async with running_fake_openai() as llm:
        agents = tmp_path / "agents"
        agents.mkdir()
        (agents / "bot.yaml").write_text(
            "id: bot\nname: Bot\nsystem_prompt: Be brief.\n"
            f"llm:\n  provider: openai\n  base_url: {llm.base_url}\n  model: m\n"
        )
        target = await start_engine(
            ASSISTANT_LOCAL_CONFIG_DIR=str(agents), ENGINE_MAX_CONTEXT_MESSAGES="4"
        )
        client = ConverseClient(channel_to(target))
        client.start("bot", options=pb.SessionOptions(text_only=True))
        await client.until("started")
        for turn in range(5):
            llm.reply([f"Answer {turn}."])
            client.send(text=pb.TextInput(text=f"Question {turn}?"))
            await client.until("response_done")
        sent = llm.requests[-1].body["messages"]
        contents = [m["content"] for m in sent]
        assert contents == ["Be brief.", "Question 3?", "Answer 3.", "Question 4?"]
        assert len(llm.requests[0].body["messages"]) == 2
