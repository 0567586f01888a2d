"""docs/control-plane.openapi.yaml describes the tool call the engine makes, as it makes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from adapters.control_plane.tool_http import tool_body
from engine.runtime.ports.control_plane import ToolInvocation

SPEC = Path(__file__).resolve().parents[2] / "docs" / "control-plane.openapi.yaml"


def _spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return document


def _validator(schema_name: str) -> Draft202012Validator:
    spec = _spec()
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    )


def test_the_tool_call_takes_an_idempotency_key() -> None:
    operation = _spec()["paths"]["/v1/calls/{call_id}/tools/{name}"]["post"]
    refs = [p.get("$ref", "") for p in operation["parameters"]]
    assert "#/components/parameters/IdempotencyKey" in refs


def test_the_body_the_engine_sends_fits_the_tool_request_schema() -> None:
    invocation = ToolInvocation("c1", "call_1", "bella-vista", "book_table", {"party_size": 2})
    _validator("ToolRequest").validate(tool_body(invocation))


def test_the_documented_examples_fit_their_schemas() -> None:
    schemas = _spec()["components"]["schemas"]
    for name in ("Tool", "ToolRequest", "ToolAnswer"):
        for example in schemas[name]["examples"]:
            _validator(name).validate(example)


def test_a_tool_entry_needs_metadata_naming_its_call() -> None:
    entry = {
        "call_id": "6f1c2a4e-0000-4000-8000-000000000001", "sequence": 1, "role": "tool",
        "text": "book_table -> ok", "started_at": 1.0, "ended_at": 1.1,
    }  # fmt: skip
    validator = _validator("TranscriptEntry")
    assert not validator.is_valid(entry)
    assert validator.is_valid({**entry, "metadata": {"tool_call_id": "t1", "name": "book_table"}})
    assert validator.is_valid({**entry, "role": "user"})
