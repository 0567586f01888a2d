"""Deployment tests: the real Envoy in front of engine processes, and the shipped manifests.

Everything under tests/deploy carries the `deploy` marker, so CI can run this directory in
parallel with the rest (scripts/test.sh does): these tests mostly wait on health-check
intervals and child processes, not on the CPU.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: real Envoy / manifest checks (tests/deploy), run beside the rest"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in item.nodeid:
            item.add_marker(pytest.mark.deploy)
