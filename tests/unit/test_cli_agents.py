"""`voice-engine agents list | validate` on a directory of assistant files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

GOOD = "id: front\nname: Front desk\ngreeting: Hello.\n"


def test_validate_passes_on_the_bundled_assistants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "validate"]) == 0
    assert "0 invalid" in capsys.readouterr().out


def test_validate_names_file_and_field_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "front.yaml").write_text(GOOD)
    (tmp_path / "back.yaml").write_text("id: back\ninterruption:\n  min_speech_ms: -5\n")
    (tmp_path / "voice.yaml").write_text("id: voice\ntts:\n  provider: espeak\n  pitch: 500\n")
    assert main(["agents", "validate", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "back.yaml: interruption.min_speech_ms: must be an integer" in out.err
    assert "voice.yaml: tts.pitch: must be an integer from 0 to 100" in out.err
    assert "3 file(s) checked" in out.out and "2 invalid" in out.out


def test_list_shows_the_valid_ones_and_reports_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "front.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text("id: broken\nvad: [\n")
    assert main(["agents", "list", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.startswith("front\tFront desk\t")
    assert "broken.yaml" in out.err
