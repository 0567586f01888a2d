"""docs/control-plane.openapi.yaml is a valid OpenAPI document that says what the engine does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate

SPEC = Path(__file__).resolve().parents[2] / "docs" / "control-plane.openapi.yaml"


def _spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return document


def test_the_contract_is_valid_openapi_3_1() -> None:
    document = _spec()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any schema violation


def test_every_write_the_engine_makes_takes_an_idempotency_key() -> None:
    paths = _spec()["paths"]
    writes = [
        paths["/v1/calls"]["post"],
        paths["/v1/calls/{call_id}/transcripts"]["post"],
        paths["/v1/calls/{call_id}/finalize"]["post"],
    ]
    for operation in writes:
        refs = [p.get("$ref", "") for p in operation.get("parameters", [])]
        assert "#/components/parameters/IdempotencyKey" in refs
    assert "get" in paths["/v1/assistants/{assistant_id}"]


def test_the_assistant_schema_lists_the_fields_the_engine_accepts() -> None:
    from engine.runtime.assistant import ASSISTANT_FIELDS

    properties = set(_spec()["components"]["schemas"]["Assistant"]["properties"])
    assert properties == ASSISTANT_FIELDS
