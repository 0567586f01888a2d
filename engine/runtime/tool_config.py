"""Tool declarations of an assistant definition (the `tools:` section), validated at load.

Runs in the engine process, when an assistant is resolved. Each tool's arguments are a
JSON Schema (checked against the Draft 2020-12 metaschema here, and every call's
arguments are checked against it before the tool runs). jsonschema is a pure helper,
allowed in the runtime like tenacity: it does no I/O (remote ``$ref``s are never fetched).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.runtime.ports.providers import ToolSpec

TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
Executor = Literal["backend", "client", "engine"]
EXECUTORS: tuple[Executor, ...] = ("backend", "client", "engine")
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_FILLER_AFTER_MS = 1000
DEFAULT_TOOL_ROUNDS_MAX = 3
TOOL_FIELDS = {
    "name",
    "description",
    "parameters",
    "executor",
    "timeout_ms",
    "filler",
    "filler_after_ms",
    "side_effects",
}

# The engine's own tools: what they do and the arguments they take.
BUILTINS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "end_call": (
        "Hang up once your reply has been spoken. Say goodbye first.",
        {"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    "transfer": (
        "Transfer the caller to a person or another line; the target names where to.",
        {
            "type": "object",
            "properties": {"target": {"type": "string", "minLength": 1}},
            "required": ["target"],
        },
    ),
}
_EMPTY_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}}

Err = Callable[[str, str], Exception]


@dataclass(frozen=True, slots=True)
class ToolDeclaration:
    """One tool the assistant may call, and how the engine runs it."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_OBJECT))
    executor: Executor = "backend"
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    filler: str = ""
    filler_after_ms: int = DEFAULT_FILLER_AFTER_MS
    side_effects: bool = True  # once started it runs to its result, barge-in or not

    @property
    def spec(self) -> ToolSpec:
        """The tool as the model is offered it."""
        return ToolSpec(self.name, self.description, self.parameters)

    def argument_errors(self, arguments: Any) -> str | None:
        """None when ``arguments`` fit the schema, else the first problem (safe to log)."""
        error = next(iter(Draft202012Validator(self.parameters).iter_errors(arguments)), None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
        return f"{where}: {error.message}"[:300]


def builtin_tool(name: str) -> ToolDeclaration:
    """A built-in tool with its defaults (the engine honours end_call even undeclared)."""
    description, parameters = BUILTINS[name]
    return ToolDeclaration(name, description, parameters, executor="engine", side_effects=False)


def parse_tools(raw: Any, err: Err) -> tuple[ToolDeclaration, ...]:
    """The `tools:` list of an assistant definition."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise err("tools", "must be a list of tool declarations")
    tools: list[ToolDeclaration] = []
    seen: set[str] = set()
    for index, doc in enumerate(raw):
        tool = _tool(doc, f"tools[{index}]", err)
        if tool.name in seen:
            raise err(f"tools[{index}].name", f"{tool.name!r} is declared twice")
        seen.add(tool.name)
        tools.append(tool)
    return tuple(tools)


def parse_tool_rounds_max(raw: Any, err: Err) -> int:
    """`tool_rounds_max`: tool rounds allowed per turn before a spoken apology."""
    if raw is None:
        return DEFAULT_TOOL_ROUNDS_MAX
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10:
        raise err("tool_rounds_max", "must be an integer from 1 to 10")
    return raw


def _tool(doc: Any, where: str, err: Err) -> ToolDeclaration:
    if not isinstance(doc, Mapping):
        raise err(where, "must be a mapping with at least a name")
    unknown = sorted(set(map(str, doc)) - TOOL_FIELDS)
    if unknown:
        raise err(f"{where}.{unknown[0]}", "unknown field")
    name = doc.get("name")
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.fullmatch(name):
        raise err(f"{where}.name", f"must match {TOOL_NAME_PATTERN.pattern}")
    executor = doc.get("executor", "backend")
    if executor not in EXECUTORS:
        raise err(f"{where}.executor", "must be backend, client or engine")
    if (executor == "engine") != (name in BUILTINS):
        raise err(
            f"{where}.executor",
            f"executor engine is for the built-in tools only ({', '.join(BUILTINS)});"
            " a built-in always has executor engine",
        )
    base = builtin_tool(name) if name in BUILTINS else ToolDeclaration(name)
    description = doc.get("description", base.description)
    if not isinstance(description, str):
        raise err(f"{where}.description", "must be a string")
    filler = doc.get("filler", "")
    if not isinstance(filler, str):
        raise err(f"{where}.filler", "must be a string")
    side_effects = doc.get("side_effects", base.side_effects)
    if not isinstance(side_effects, bool):
        raise err(f"{where}.side_effects", "must be true or false")
    return ToolDeclaration(
        name=name,
        description=description.strip(),
        parameters=_schema(doc, where, base.parameters, err),
        executor=executor,
        timeout_ms=_ms(doc, where, "timeout_ms", DEFAULT_TIMEOUT_MS, 100, 120_000, err),
        filler=filler.strip(),
        filler_after_ms=_ms(doc, where, "filler_after_ms", DEFAULT_FILLER_AFTER_MS, 0, 60_000, err),
        side_effects=side_effects,
    )


def _schema(
    doc: Mapping[str, Any], where: str, default: Mapping[str, Any], err: Err
) -> Mapping[str, Any]:
    schema = doc.get("parameters", default)
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise err(f"{where}.parameters", "must be a JSON Schema with type: object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise err(f"{where}.parameters", f"not a valid JSON Schema: {exc.message}") from None
    if _has_remote_ref(schema):
        raise err(f"{where}.parameters", "$ref may only point inside the schema (#...)")
    return schema


def _has_remote_ref(node: Any) -> bool:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(_has_remote_ref(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_remote_ref(value) for value in node)
    return False


def _ms(
    doc: Mapping[str, Any], where: str, key: str, default: int, lo: int, hi: int, err: Err
) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise err(f"{where}.{key}", f"must be an integer from {lo} to {hi}")
    return value
