"""Engine-only control plane: assistants from local YAML files, history writes dropped.

Used when no backend is configured (``BACKEND_MODE=disabled``, or ``auto`` without a
``BACKEND_URL``). ``LocalAssistantDirectory`` is the same loader, exposed for the
``agents list`` / ``agents validate`` commands. The booking tools run in memory, with
the reference backend's logic (``engine.devbackend.bookings``), so the offline demo
books for real (for the life of the engine process).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from engine.devbackend.bookings import (
    BOOKING_TOOLS,
    MemoryBookingBook,
    ToolRejected,
    run_booking_tool,
)
from engine.runtime.assistant import (
    ASSISTANT_ID_PATTERN,
    AssistantConfig,
    AssistantConfigError,
    is_valid_assistant_id,
    parse_assistant,
)
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    FetchedAssistant,
    ToolFailed,
    ToolInvocation,
    TranscriptEntry,
)

_SUFFIXES = (".yaml", ".yml")
# Answers kept for repeated idempotency keys; the oldest are forgotten beyond this.
_TOOL_ANSWERS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class LoadedAssistant:
    """A validated assistant plus the raw document and the file it came from."""

    path: Path
    document: Mapping[str, Any]
    config: AssistantConfig


class LocalAssistantDirectory:
    """A directory of ``<assistant_id>.yaml`` (or ``.yml``) files.

    Every lookup validates the id before it becomes part of a path, so an id such as
    ``../etc/passwd`` never reaches the file system.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, assistant_id: str) -> Path | None:
        """The file defining ``assistant_id``, or None when there is none (or it is unsafe)."""
        if not is_valid_assistant_id(assistant_id):
            return None
        root = self.directory.resolve()
        for suffix in _SUFFIXES:
            candidate = root / f"{assistant_id}{suffix}"
            # Belt and braces: the id pattern already forbids separators and dots, but a
            # symlink could still point outside the directory; refuse to follow it.
            if not candidate.resolve().is_relative_to(root):
                return None
            if candidate.is_file():
                # Report the path as configured, not resolved: error messages then name
                # the file the way the operator wrote the directory.
                return self.directory / candidate.name
        return None

    def load(self, assistant_id: str) -> LoadedAssistant:
        """Read and validate one assistant.

        Raises AssistantNotFound (no such file, or an invalid id) or AssistantConfigError
        (YAML syntax or schema problem; the error names the file and the field).
        """
        path = self.path_for(assistant_id)
        if path is None:
            raise AssistantNotFound(f"no local assistant definition for {assistant_id!r}")
        return _load_file(path, expected_id=assistant_id)

    def list_ids(self) -> list[str]:
        """Assistant ids of every definition file, sorted (file names that are not ids too)."""
        return sorted({path.stem for path in self._files()})

    def load_all(self) -> tuple[list[LoadedAssistant], list[AssistantConfigError]]:
        """Load every file: the valid assistants sorted by id, and one error per bad file."""
        loaded: list[LoadedAssistant] = []
        errors: list[AssistantConfigError] = []
        seen: dict[str, Path] = {}
        for path in self._files():
            stem = path.stem
            if not is_valid_assistant_id(stem):
                errors.append(
                    AssistantConfigError(
                        "(file name)",
                        f"is not a valid assistant id ({ASSISTANT_ID_PATTERN.pattern})",
                        str(path),
                    )
                )
                continue
            if stem in seen:
                errors.append(
                    AssistantConfigError(
                        "(file name)", f"duplicates {seen[stem].name}; keep one of them", str(path)
                    )
                )
                continue
            seen[stem] = path
            try:
                loaded.append(_load_file(path, expected_id=stem))
            except AssistantConfigError as exc:
                errors.append(exc)
        loaded.sort(key=lambda item: item.config.id)
        return loaded, errors

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        # Sorted so ".yaml" wins over ".yml" deterministically, like path_for().
        return sorted(
            (p for p in self.directory.iterdir() if p.suffix in _SUFFIXES and p.is_file()),
            key=lambda p: (p.stem, _SUFFIXES.index(p.suffix)),
        )


def list_assistants(directory: Path) -> list[AssistantConfig]:
    """The valid assistants of ``directory`` sorted by id (bad files are skipped)."""
    loaded, _ = LocalAssistantDirectory(directory).load_all()
    return [item.config for item in loaded]


def validate_directory(directory: Path) -> list[AssistantConfigError]:
    """One error per bad file; each message reads ``file: field: problem``."""
    _, errors = LocalAssistantDirectory(directory).load_all()
    return errors


def _load_file(path: Path, *, expected_id: str) -> LoadedAssistant:
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AssistantNotFound(f"no local assistant definition for {expected_id!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AssistantConfigError("(file)", f"cannot be read: {exc}", origin) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AssistantConfigError(_yaml_where(exc), _yaml_problem(exc), origin) from None
    config = parse_assistant(document, expected_id=expected_id, origin=origin)
    # parse_assistant fills a missing id from the file name; keep the document in step.
    doc = dict(document)
    doc.setdefault("id", config.id)
    return LoadedAssistant(path=path, document=doc, config=config)


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return "(yaml)"
    return f"(yaml) line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        return f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return f"invalid YAML: {exc}"


class NullControlPlane:
    """Engine-only control plane: local YAML configs, history calls are no-ops.

    ``history_enabled`` is accepted so the factory can build every adapter the same
    way; it is always False here because there is nowhere to write history to.
    The booking tools (book_table, list_bookings, cancel_booking) run on a book in this
    object's memory; ``today`` is the date "tomorrow" resolves against.
    """

    def __init__(
        self,
        local_config_dir: Path,
        history_enabled: bool = False,
        *,
        today: Callable[[], date] = date.today,
    ) -> None:
        del history_enabled  # accepted for a uniform factory; nothing to write to
        self._directory = LocalAssistantDirectory(local_config_dir)
        self._today = today
        self._bookings = MemoryBookingBook()
        # idempotency key -> the first answer (a result, or the refusal to raise again)
        self._tool_answers: OrderedDict[str, Any] = OrderedDict()

    @property
    def local_config_dir(self) -> Path:
        """The directory assistant definitions are read from."""
        return self._directory.directory

    @property
    def history_enabled(self) -> bool:
        """Always False: the null adapter drops history writes."""
        return False

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        """Read ``<dir>/<assistant_id>.yaml`` (or ``.yml``).

        Raises AssistantNotFound, or AssistantConfigError naming the file and field.
        """
        # Checked here as well as in path_for() so an invalid id costs no thread hop.
        if not is_valid_assistant_id(assistant_id):
            raise AssistantNotFound(f"invalid assistant id {assistant_id!r}")
        # File I/O and YAML parsing off the event loop: other calls keep streaming.
        loaded = await asyncio.to_thread(self._directory.load, assistant_id)
        return FetchedAssistant(loaded.config, source="local")

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        """No-op: engine-only mode keeps no history."""

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        """No-op: engine-only mode keeps no history."""

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        """No-op: engine-only mode keeps no history."""

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        """Run a booking tool in memory, once per idempotency key (a repeat gets the
        first answer). Invalid arguments or nothing to cancel: ToolFailed ``rejected``.
        Any other tool: ToolFailed ``unavailable``, since it needs a backend and there is
        none (the backend, when one runs, is what may reject it).
        """
        if invocation.name not in BOOKING_TOOLS:
            raise ToolFailed(
                f"tool {invocation.name!r} needs a backend; engine-only mode runs only "
                f"{', '.join(sorted(BOOKING_TOOLS))}",
                "unavailable",
            )
        key = invocation.idempotency_key
        if key not in self._tool_answers:
            self._tool_answers[key] = self._run_booking_tool(invocation)
            while len(self._tool_answers) > _TOOL_ANSWERS_KEPT:
                self._tool_answers.popitem(last=False)
        answer = self._tool_answers[key]
        if isinstance(answer, ToolRejected):
            raise ToolFailed(f"tool {invocation.name!r} refused: {answer}", "rejected")
        return answer

    def _run_booking_tool(self, invocation: ToolInvocation) -> Any:
        try:
            return run_booking_tool(
                self._bookings,
                invocation.name,
                invocation.call_id,
                invocation.arguments,
                self._today(),
            )
        except ToolRejected as refusal:
            return refusal

    async def close(self) -> None:
        """Nothing to release."""
