"""The Node.js and Go example clients hold real conversations with the real server.

Each test starts the engine on loopback and runs a client binary as a user would (built
by scripts/clients.sh); the client prints every event as a JSON line and its final status.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.llm.scripted import ScriptedLanguageModel
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime.assistant import parse_assistant
from engine.settings import DEFAULT_AGENTS_DIR
from tests.conftest import StartEngine
from tests.helpers.client_cli import CLIENT_NAMES, read_wav, run_client, write_wav
from tests.helpers.speech import spoken

pytestmark = pytest.mark.parametrize("client", CLIENT_NAMES)

MULAW_8K = AudioFormat(AudioEncoding.MULAW, 8000)
PCM_16K = AudioFormat(AudioEncoding.LINEAR16, 16000)


def _reply_for(question: str) -> str:
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    config = parse_assistant(document, expected_id="default")
    return ScriptedLanguageModel.from_options(config.llm.options).reply_for(question)


def _response_texts(run_events: list[dict[str, object]]) -> dict[str, str]:
    """response id -> the text its assistant_text deltas add up to."""
    texts: dict[str, str] = {}
    for event in run_events:
        if event["event"] == "assistant_text":
            data = event["data"]
            assert isinstance(data, dict)
            texts[data["response_id"]] = texts.get(data["response_id"], "") + data["delta"]
    return texts


async def test_a_typed_conversation_with_reply_audio_in_the_requested_format(
    client: str, engine: str, tmp_path: Path
) -> None:
    questions = ["what are your opening hours", "I would like to book a table"]
    out = tmp_path / "reply.wav"
    run = await run_client(
        client, engine,
        "--text", questions[0], "--text", questions[1],
        "--output-format", "linear16:24000", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    assert run.status["code"] == 0 and run.status["name"] == "OK"
    assert run.kinds()[0] == "started" and run.kinds()[-1] == "ended"
    assert run.of_kind("ended")[0]["reason"] == "END_REASON_CLIENT_ENDED"

    greeting, *answers = run.of_kind("response_done")
    assert greeting["text"].startswith("Hello, thank you for calling Bella Vista")
    assert [t["text"] for t in run.of_kind("transcript")] == questions
    assert [a["text"].strip() for a in answers] == [_reply_for(q) for q in questions]
    assert all(d["status"] == "RESPONSE_STATUS_COMPLETED" for d in [greeting, *answers])
    texts = _response_texts(run.events)
    assert all(texts[d["response_id"]] == d["text"] for d in [greeting, *answers])

    wav = read_wav(out)
    assert wav.header() == (1, 1, 24000, 16)  # PCM, mono
    assert len(wav.data) == sum(a["bytes"] for a in run.of_kind("audio"))
    seconds = len(wav.data) / 2 / 24000
    spoken_ms = sum(d["audio_ms"] for d in [greeting, *answers])
    assert seconds == pytest.approx(spoken_ms / 1000, abs=0.15)
    assert seconds > 6  # three spoken sentences or more, not silence


async def test_a_spoken_question_from_a_wav_gets_its_transcript_and_spoken_answer(
    client: str, engine: str, tmp_path: Path
) -> None:
    question = tmp_path / "question.wav"
    write_wav(question, await spoken("what are your opening hours", MULAW_8K), MULAW_8K)
    out = tmp_path / "reply.wav"
    run = await run_client(
        client, engine, "--wav", str(question), "--output-format", "mulaw:8000", "--out", str(out)
    )
    assert run.returncode == 0, run.describe()
    started = run.of_kind("started")[0]
    assert started["input_audio"] == {"encoding": "AUDIO_ENCODING_MULAW", "sample_rate_hz": 8000}
    assert started["output_audio"] == started["input_audio"]
    finals = [t for t in run.of_kind("transcript") if t["is_final"]]
    assert [t["text"] for t in finals] == ["what are your opening hours"]
    assert run.of_kind("speech_started") and run.of_kind("speech_stopped")
    answer = run.of_kind("response_done")[-1]
    assert answer["status"] == "RESPONSE_STATUS_COMPLETED"
    assert answer["text"].strip() == _reply_for("what are your opening hours")

    wav = read_wav(out)  # mu-law at 8 kHz: one byte a sample
    assert wav.header() == (7, 1, 8000, 8)
    answer_bytes = sum(
        a["bytes"] for a in run.of_kind("audio") if a["response_id"] == answer["response_id"]
    )
    assert answer_bytes / 8 == pytest.approx(answer["audio_ms"], abs=50)
    assert len(wav.data) == sum(a["bytes"] for a in run.of_kind("audio"))


async def test_the_caller_barges_in_on_the_greeting(
    client: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    target = await start_engine(ENGINE_OUTPUT_AUDIO_LEAD_MS="300")  # greeting paced in real time
    question = tmp_path / "where.wav"
    write_wav(question, await spoken("where are you located", PCM_16K, lead_ms=200), PCM_16K)
    run = await run_client(client, target, "--barge-in", str(question))
    assert run.returncode == 0, run.describe()

    greeting_id = run.of_kind("audio")[0]["response_id"]
    interrupted = run.of_kind("interrupted")
    assert [i["response_id"] for i in interrupted] == [greeting_id]
    cut, answer = run.of_kind("response_done")
    assert cut["response_id"] == greeting_id and cut["status"] == "RESPONSE_STATUS_INTERRUPTED"
    assert cut["text"].startswith(cut["heard_text"]) and len(cut["heard_text"]) < len(cut["text"])
    after = run.events[run.kinds().index("interrupted") :]
    late = [e for e in after if e["event"] == "audio" and e["data"]["response_id"] == greeting_id]
    assert not late
    finals = [t["text"] for t in run.of_kind("transcript") if t["is_final"]]
    assert finals == ["where are you located"]
    assert answer["status"] == "RESPONSE_STATUS_COMPLETED"
    assert answer["text"].strip() == _reply_for("where are you located")


@pytest.mark.parametrize(
    ("args", "code", "name", "says"),
    [
        (["--assistant", "no-such-assistant"], 5, "NOT_FOUND", "no-such-assistant"),
        (["--assistant", "../etc/passwd"], 3, "INVALID_ARGUMENT", "assistant_id"),
        (["--output-format", "mulaw:16000"], 3, "INVALID_ARGUMENT", "output_audio"),
        (["--input-format", "linear16:11025"], 3, "INVALID_ARGUMENT", "input_audio"),
    ],
)
async def test_a_bad_start_ends_with_its_status_and_no_events(
    client: str, engine: str, args: list[str], code: int, name: str, says: str
) -> None:
    run = await run_client(client, engine, "--text", "hello", *args)
    assert run.returncode == 1, run.describe()
    assert (run.status["code"], run.status["name"]) == (code, name)
    assert says in run.status["details"]
    assert run.events == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--assistant", "no-such-assistant"], "ASSISTANT_NOT_FOUND"),
        (["--output-format", "mulaw:16000"], "INVALID_REQUEST"),
    ],
)
async def test_a_bad_start_names_its_machine_readable_reason(
    client: str, engine: str, args: list[str], reason: str
) -> None:
    run = await run_client(client, engine, "--text", "hello", *args)
    assert run.returncode == 1, run.describe()
    assert run.status.get("reason") == reason
