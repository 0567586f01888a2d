"""The turn detector without its model: a clear error telling the operator how to install it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from adapters.turn.smart_turn import SmartTurnDetector, installed_model_path
from engine.runtime.ports.turn import TurnDetectorError

REPO = Path(__file__).resolve().parents[2]


def fetch_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_turn_model", REPO / "scripts" / "fetch_turn_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missing_model_names_the_install_step(tmp_path: Path) -> None:
    with pytest.raises(TurnDetectorError, match=r"missing at .*fetch_turn_model\.py"):
        SmartTurnDetector(tmp_path / "smart-turn-v3.2-cpu.onnx")


def test_an_unreadable_model_names_the_install_step(tmp_path: Path) -> None:
    broken = tmp_path / "smart-turn-v3.2-cpu.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TurnDetectorError, match=r"did not load .*fetch_turn_model\.py"):
        SmartTurnDetector(broken)


def test_the_install_step_puts_the_model_where_the_detector_looks() -> None:
    script = fetch_script()
    assert installed_model_path() == script.MODEL_DIR / script.MODEL_FILE


def test_the_install_step_pins_the_wheel_by_hash() -> None:
    pinned = (REPO / "requirements" / "turn-model.txt").read_text()
    assert "pipecat-ai==1.14.0" in pinned and "--hash=sha256:" in pinned
    assert fetch_script().LICENSE_MEMBER.startswith("pipecat_ai-1.14.0.dist-info/")
