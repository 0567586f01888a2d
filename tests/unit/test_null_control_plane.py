"""NullControlPlane and the local assistant directory (``agents list`` / ``validate``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.control_plane.null import (
    LocalAssistantDirectory,
    NullControlPlane,
    list_assistants,
    validate_directory,
)
from engine.runtime.assistant import AssistantConfigError
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    TranscriptEntry,
)

GOOD = "name: Support desk\ngreeting: Hello\nllm:\n  provider: scripted\n"

# Files opened while a test records them; an audit hook sees every open() in the process.
_opened: list[str] = []
_recording: list[bool] = [False]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _recording[0]:
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    directory = tmp_path / "agents"
    directory.mkdir()
    (directory / "support.yaml").write_text(GOOD)
    return directory


async def test_fetch_reads_the_yaml_file(agents: Path) -> None:
    fetched = await NullControlPlane(agents).fetch_assistant("support")
    assert fetched.source == "local"
    assert fetched.config.name == "Support desk"
    assert fetched.config.id == "support"


async def test_yml_suffix_is_accepted(agents: Path) -> None:
    (agents / "sales.yml").write_text("name: Sales\n")
    fetched = await NullControlPlane(agents).fetch_assistant("sales")
    assert fetched.config.name == "Sales"


async def test_missing_file_is_not_found(agents: Path) -> None:
    with pytest.raises(AssistantNotFound):
        await NullControlPlane(agents).fetch_assistant("nobody")


@pytest.mark.parametrize("assistant_id", ["../secret", "../etc/passwd", "a/b", "..", "", "-x"])
async def test_unsafe_id_is_not_found_without_opening_a_file(
    agents: Path, assistant_id: str
) -> None:
    (agents.parent / "secret.yaml").write_text("name: outside\n")
    plane = NullControlPlane(agents)
    _opened.clear()
    _recording[0] = True
    try:
        with pytest.raises(AssistantNotFound):
            await plane.fetch_assistant(assistant_id)
    finally:
        _recording[0] = False
    assert _opened == []


async def test_symlink_out_of_the_directory_is_not_followed(agents: Path) -> None:
    outside = agents.parent / "elsewhere.yaml"
    outside.write_text("name: outside\n")
    (agents / "linked.yaml").symlink_to(outside)
    with pytest.raises(AssistantNotFound):
        await NullControlPlane(agents).fetch_assistant("linked")


async def test_yaml_syntax_error_names_the_file_and_line(agents: Path) -> None:
    bad = agents / "broken.yaml"
    bad.write_text("name: Broken\ngreeting: [unclosed\n")
    with pytest.raises(AssistantConfigError) as caught:
        await NullControlPlane(agents).fetch_assistant("broken")
    assert caught.value.origin == str(bad)
    assert caught.value.field_path.startswith("(yaml) line ")


async def test_schema_error_names_the_file_and_field(agents: Path) -> None:
    bad = agents / "noisy.yaml"
    bad.write_text("name: Noisy\nvad:\n  aggressiveness: 9\n")
    with pytest.raises(AssistantConfigError) as caught:
        await NullControlPlane(agents).fetch_assistant("noisy")
    assert caught.value.field_path == "vad.aggressiveness"
    assert str(caught.value).startswith(f"{bad}: vad.aggressiveness: ")


async def test_id_inside_the_file_must_match_the_file_name(agents: Path) -> None:
    (agents / "alpha.yaml").write_text("id: beta\n")
    with pytest.raises(AssistantConfigError, match="id: "):
        await NullControlPlane(agents).fetch_assistant("alpha")


async def test_history_is_off_and_writes_are_no_ops(agents: Path) -> None:
    plane = NullControlPlane(agents, history_enabled=True)
    assert plane.history_enabled is False
    await plane.create_call(CallRecord("c1", "support", "s1", 1.0))
    await plane.append_transcript(TranscriptEntry("c1", 1, "user", "hi", 1.0, 2.0))
    await plane.finalize_call(CallSummary("c1", 3.0, 2.0, 1, "hangup"))
    await plane.close()


def test_validate_directory_reports_one_error_per_bad_file(agents: Path) -> None:
    (agents / "broken.yaml").write_text("name: [\n")
    (agents / "noisy.yaml").write_text("vad:\n  aggressiveness: 9\n")
    (agents / "bad name.yaml").write_text(GOOD)
    (agents / "notes.txt").write_text("not an assistant")
    errors = validate_directory(agents)
    by_file = {Path(e.origin).name: str(e) for e in errors}
    assert sorted(by_file) == ["bad name.yaml", "broken.yaml", "noisy.yaml"]
    assert by_file["noisy.yaml"] == (
        f"{agents / 'noisy.yaml'}: vad.aggressiveness: must be an integer from 0 to 3"
    )
    assert "(yaml) line" in by_file["broken.yaml"]


def test_list_assistants_returns_the_valid_ones_sorted(agents: Path) -> None:
    (agents / "alpha.yml").write_text("name: Alpha\n")
    (agents / "broken.yaml").write_text("name: [\n")
    assert [a.id for a in list_assistants(agents)] == ["alpha", "support"]


def test_same_id_as_yaml_and_yml_is_reported(agents: Path) -> None:
    (agents / "support.yml").write_text(GOOD)
    errors = validate_directory(agents)
    assert [Path(e.origin).name for e in errors] == ["support.yml"]
    assert LocalAssistantDirectory(agents).list_ids() == ["support"]


def test_missing_directory_lists_nothing(tmp_path: Path) -> None:
    assert list_assistants(tmp_path / "absent") == []
