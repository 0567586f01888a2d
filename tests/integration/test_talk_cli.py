"""`voice-engine talk` against a real engine: printed events, reply.wav, exit codes."""

from __future__ import annotations

import io
from pathlib import Path

from engine.audio.formats import AudioEncoding, AudioFormat
from engine.audio.wav import read_wav, write_wav
from engine.talk import TalkOptions, talk
from tests.conftest import StartEngine
from tests.helpers.speech import spoken


async def test_text_turns_print_the_conversation_and_write_the_reply_audio(
    engine: str, tmp_path: Path
) -> None:
    out = io.StringIO()
    reply = tmp_path / "reply.wav"
    options = TalkOptions(
        target=engine,
        assistant_id="default",
        texts=["what are your opening hours"],
        out=reply,
        output_rate_hz=24000,
    )
    assert await talk(options, out=out) == 0
    printed = out.getvalue()
    assert "assistant=default (Bella Vista front desk, config: local)" in printed
    assert "user: what are your opening hours" in printed
    assert "We are open from noon to ten in the evening" in printed
    assert "ended client_ended" in printed
    pcm, rate = read_wav(reply)
    assert rate == 24000
    assert len(pcm) / 2 / rate > 5.0  # the greeting and the answer


async def test_a_wav_question_is_transcribed_and_answered(engine: str, tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    fmt = AudioFormat(AudioEncoding.LINEAR16, 8000)
    write_wav(question, await spoken("where are you located", fmt), 8000)
    out = io.StringIO()
    options = TalkOptions(target=engine, assistant_id="default", wav=question)
    assert await talk(options, out=out) == 0
    printed = out.getvalue()
    assert "user: where are you located" in printed
    assert "twelve Harbour Street" in printed


async def test_an_error_prints_the_status_and_exits_non_zero(engine: str) -> None:
    out = io.StringIO()
    options = TalkOptions(target=engine, assistant_id="nobody", texts=["hi"])
    assert await talk(options, out=out) == 1
    assert "error: NOT_FOUND: assistant 'nobody' not found" in out.getvalue()


async def test_without_text_it_reads_turns_from_stdin(engine: str) -> None:
    lines = iter(["where are you located\n", "\n", "thank you\n", ""])
    out = io.StringIO()
    options = TalkOptions(target=engine, assistant_id="default")
    assert await talk(options, out=out, read_line=lambda: next(lines)) == 0
    printed = out.getvalue()
    assert "user: where are you located" in printed
    assert "user: thank you" in printed
    assert printed.count("response_done") == 3  # the greeting and two answers
    assert "ended client_ended" in printed


async def test_tool_calls_are_shown(engine: str) -> None:
    out = io.StringIO()
    options = TalkOptions(
        target=engine,
        assistant_id="default",
        texts=["a table for four tomorrow at seven", "I want to talk to a person"],
    )
    assert await talk(options, out=out) == 0
    printed = out.getvalue()
    assert "tool book_table started (backend)" in printed
    assert "tool book_table -> " in printed
    assert "transfer -> front-desk" in printed
    assert "tool_ms=" in printed


async def test_a_client_tool_is_answered_with_an_error_at_once(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "crm.yaml").write_text(
        "id: crm\ntools:\n  - {name: crm_lookup, executor: client, timeout_ms: 60000}\n"
        "llm:\n  provider: scripted\n  rules:\n"
        "    - {patterns: [who], tool: crm_lookup, reply: 'Hi {result.name}.',"
        " error_reply: I could not look you up.}\n"
    )
    target = await start_engine(ASSISTANT_LOCAL_CONFIG_DIR=str(agents))
    out = io.StringIO()
    options = TalkOptions(target=target, assistant_id="crm", texts=["who am I"])
    assert await talk(options, out=out) == 0
    printed = out.getvalue()
    assert "tool_call crm_lookup({}) id=" in printed
    assert "tool crm_lookup -> error" in printed
    assert "I could not look you up." in printed
