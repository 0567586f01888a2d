"""The half-close recipe in both example clients: send everything, half-close, read to the end.

Half-close means "no more input" (docs/protocol.md): the engine ends the open utterance,
answers it, streams the reply to the end, then sends `ended` (INPUT_CLOSED) and status OK.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.audio.formats import AudioEncoding, AudioFormat
from tests.helpers.client_cli import CLIENT_NAMES, ClientRun, read_wav, run_client, write_wav
from tests.helpers.speech import spoken

pytestmark = pytest.mark.parametrize("client", CLIENT_NAMES)

HOURS = "We are open from noon to ten in the evening"
PCM_16K = AudioFormat(AudioEncoding.LINEAR16, 16000)


def _assert_answered_then_ended(run: ClientRun, answer_starts: str) -> dict[str, object]:
    """The reply is complete, `ended` (INPUT_CLOSED) is the last event, the status is OK."""
    assert run.returncode == 0, run.describe()
    assert run.status["name"] == "OK"
    assert run.kinds()[-1] == "ended"
    assert run.of_kind("ended")[0]["reason"] == "END_REASON_INPUT_CLOSED"
    answers = [d for d in run.of_kind("response_done") if d["text"].startswith(answer_starts)]
    assert len(answers) == 1, run.describe()
    answer = answers[0]
    assert answer["status"] == "RESPONSE_STATUS_COMPLETED"
    assert answer["heard_text"] == answer["text"]
    audio = [a for a in run.of_kind("audio") if a["response_id"] == answer["response_id"]]
    assert audio and sum(a["duration_ms"] for a in audio) == pytest.approx(
        answer["audio_ms"], abs=len(audio)
    )
    return answer


async def test_a_typed_turn_then_half_close_gets_the_whole_reply(
    client: str, engine: str, tmp_path: Path
) -> None:
    out = tmp_path / "reply.wav"
    run = await run_client(
        client, engine, "--half-close", "--text", "what are your opening hours", "--out", str(out)
    )
    _assert_answered_then_ended(run, HOURS)
    assert read_wav(out).data


async def test_speech_then_half_close_answers_the_open_utterance(
    client: str, engine: str, tmp_path: Path
) -> None:
    question = tmp_path / "question.wav"
    # No trailing silence: the utterance is still open when the client half-closes.
    write_wav(question, await spoken("what are your opening hours", PCM_16K, tail_ms=0), PCM_16K)
    run = await run_client(client, engine, "--half-close", "--wav", str(question))
    finals = [t["text"] for t in run.of_kind("transcript") if t["is_final"]]
    # One final for the open utterance (the recognizer's exact words are tested elsewhere).
    assert len(finals) == 1 and "opening hours" in finals[0]
    _assert_answered_then_ended(run, HOURS)
