"""Settings parsing and the assistant schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.runtime.assistant import AssistantConfigError, parse_assistant
from engine.settings import DEFAULT_AGENTS_DIR, Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.port == 50051
    assert settings.backend_mode == "auto" and settings.backend_url is None
    assert settings.assistant_local_config_dir == DEFAULT_AGENTS_DIR
    assert settings.history_spool_path is not None


def test_an_empty_spool_path_disables_the_spool() -> None:
    assert Settings.from_env({"HISTORY_SPOOL_PATH": ""}).history_spool_path is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BACKEND_MODE": "sometimes"},
            "BACKEND_MODE='sometimes' is invalid: allowed values are auto, http, disabled",
        ),
        (
            {"ENGINE_PORT": "abc"},
            "ENGINE_PORT='abc' is invalid: expected an integer from 0 to 65535",
        ),
        ({"ENGINE_PORT": "70000"}, "ENGINE_PORT='70000' is invalid"),
        (
            {"HISTORY_ENABLED": "maybe"},
            "HISTORY_ENABLED='maybe' is invalid: expected true or false",
        ),
        (
            {"BACKEND_URL": "ftp://x"},
            "BACKEND_URL is invalid: expected an http:// or https:// URL",
        ),
        ({"BACKEND_TIMEOUT_SEC": "-1"}, "BACKEND_TIMEOUT_SEC='-1' is invalid"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith(message)


def test_the_bundled_assistants_are_valid() -> None:
    for path in DEFAULT_AGENTS_DIR.glob("*.yaml"):
        config = parse_assistant(yaml.safe_load(path.read_text()), expected_id=path.stem)
        assert config.name


def test_the_demo_assistant_ends_turns_with_the_turn_detector() -> None:
    document = yaml.safe_load((DEFAULT_AGENTS_DIR / "default.yaml").read_text())
    config = parse_assistant(document, expected_id="default")
    assert config.turn.detector == "smart_turn"
    assert config.turn.check_after_ms < config.vad.end_silence_ms < config.turn.max_silence_ms
    assert parse_assistant({"id": "a"}).turn.detector == "none"  # off unless asked for


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"id": "a", "colour": "red"}, "colour"),
        ({"id": "a", "vad": {"aggressiveness": 7}}, "vad.aggressiveness"),
        ({"id": "a", "vad": {"end_silence_ms": "long"}}, "vad.end_silence_ms"),
        ({"id": "a", "vad": {"speed": 1}}, "vad.speed"),
        ({"id": "a", "interruption": {"enabled": "yes"}}, "interruption.enabled"),
        ({"id": "a", "greeting": 5}, "greeting"),
        ({"id": "b"}, "id"),
        ({"id": "a", "llm": {"provider": ""}}, "llm.provider"),
        ({"id": "a", "turn": {"detector": ""}}, "turn.detector"),
        ({"id": "a", "turn": {"complete_threshold": 2}}, "turn.complete_threshold"),
        ({"id": "a", "turn": {"wait": 1}}, "turn.wait"),
        ({"id": "a", "turn": {"unfinished_words": [""]}}, "turn.unfinished_words"),
        ({"id": "a", "turn": {"detector": "smart_turn", "max_silence_ms": 300}}, "turn"),
        ({"id": "a", "unsure_confidence": "low"}, "unsure_confidence"),
    ],
)
def test_schema_errors_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(AssistantConfigError) as error:
        parse_assistant(document, expected_id="a", origin=str(Path("agents/a.yaml")))
    assert error.value.field_path == field
    assert str(error.value).startswith(f"agents/a.yaml: {field}: ")
