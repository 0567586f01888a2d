"""The dependency rule: engine/runtime knows no transport, no adapter and no settings.

docs/ARCHITECTURE.md: ``engine/runtime`` imports only the standard library, pure helpers such as
tenacity, its own ports and events. Every module is parsed with ``ast`` (nothing is
imported), so a forbidden import fails here even in a branch that never runs.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "engine" / "runtime"
RUNTIME_PACKAGE = "engine.runtime"

# Named explicitly so the failure says *why*; anything else outside the allow-list fails too.
FORBIDDEN = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "httpx",
    "aiohttp",
    "yaml",
    "adapters",
    "engine.protocol",
    "engine.server",
    "engine.settings",
    "engine.devbackend",
    "voiceengine",
)
# Pure helpers: tenacity (retry policy), jsonschema (tool arguments); neither does I/O.
ALLOWED_THIRD_PARTY = ("tenacity", "jsonschema")
_DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(
    path: Path, root: Path = RUNTIME, package: str = RUNTIME_PACKAGE
) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in one file, dynamic ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    importer = _module_name(path, root, package)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(node.module, node.level, importer, is_package)
            else:
                base = node.module or ""
            found.extend(
                (node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")
                for alias in node.names
            )
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in _DYNAMIC_IMPORTERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((node.lineno, node.args[0].value))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def why_not_allowed(name: str) -> str | None:
    """None when the runtime may import ``name``, else the reason it may not."""
    for forbidden in FORBIDDEN:
        if _within(name, forbidden):
            return f"forbidden ({forbidden})"
    top = name.split(".")[0]
    if _within(name, RUNTIME_PACKAGE) or top in ALLOWED_THIRD_PARTY:
        return None
    if top in sys.stdlib_module_names:
        return None
    return "not the standard library, tenacity, jsonschema or engine.runtime"


def violations(root: Path = RUNTIME, package: str = RUNTIME_PACKAGE) -> list[str]:
    """One line per offending import: ``file:line: import name (reason)``."""
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for line, name in imports_of(path, root, package):
            reason = why_not_allowed(name)
            if reason is not None:
                out.append(f"{path.relative_to(REPO)}:{line}: import {name} ({reason})")
    return out


def test_the_runtime_has_modules_to_check() -> None:
    modules = {p.relative_to(RUNTIME).as_posix() for p in RUNTIME.rglob("*.py")}
    assert {"session.py", "pipeline.py", "history/bridge.py"} <= modules


def test_the_runtime_imports_only_stdlib_tenacity_and_itself() -> None:
    found = violations()
    assert not found, "engine/runtime breaks the dependency rule:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        ("import grpc\n", "grpc"),
        ("from httpx import AsyncClient\n", "httpx.AsyncClient"),
        ("import aiohttp.web\n", "aiohttp.web"),
        ("import yaml\n", "yaml"),
        ("from adapters.control_plane import backend\n", "adapters.control_plane.backend"),
        ("from engine.protocol.mapping import x\n", "engine.protocol.mapping.x"),
        ("from engine import server\n", "engine.server"),
        ("from engine.settings import Settings\n", "engine.settings.Settings"),
        ("from voiceengine.v1 import converse_pb2\n", "voiceengine.v1.converse_pb2"),
        ("from ... import settings\n", "engine.settings"),
        ("import importlib\nimportlib.import_module('httpx')\n", "httpx"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import grpc\n", "grpc"),
        ("import numpy\n", "numpy"),
    ],
)
def test_the_check_names_the_file_and_the_import(
    tmp_path: Path, source: str, offender: str
) -> None:
    root = tmp_path / "engine" / "runtime"
    (root / "history").mkdir(parents=True)
    (root / "history" / "bad.py").write_text(source)
    (root / "good.py").write_text(
        "from __future__ import annotations\nimport asyncio\nimport tenacity\n"
        "from engine.runtime.ports.control_plane import CallRecord\n"
        "from .events import EndReason\nfrom . import events\n"
    )
    found = [
        f"{path.relative_to(tmp_path)}: {name}: {why_not_allowed(name)}"
        for path in sorted(root.rglob("*.py"))
        for _, name in imports_of(path, root, RUNTIME_PACKAGE)
        if why_not_allowed(name) is not None
    ]
    assert len(found) == 1, found
    assert found[0].startswith(f"engine/runtime/history/bad.py: {offender}: "), found
