"""The serve-path settings: worker count and event loop."""

from __future__ import annotations

import pytest

from engine.settings import Settings, SettingsError


def test_workers_and_event_loop_default_to_one_per_cpu_and_asyncio() -> None:
    settings = Settings.from_env({})
    assert (settings.workers, settings.event_loop) == (0, "asyncio")


def test_workers_and_event_loop_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"ENGINE_WORKERS": "3", "ENGINE_EVENT_LOOP": "uvloop"})
    assert (settings.workers, settings.event_loop) == (3, "uvloop")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ENGINE_WORKERS": "-1"}, "ENGINE_WORKERS='-1' is invalid"),
        ({"ENGINE_WORKERS": "many"}, "ENGINE_WORKERS='many' is invalid"),
        ({"ENGINE_EVENT_LOOP": "trio"}, "ENGINE_EVENT_LOOP='trio' is invalid: allowed values"),
    ],
)
def test_bad_serve_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle.replace("(", r"\(")):
        Settings.from_env(env)
