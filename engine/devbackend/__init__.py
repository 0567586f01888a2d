"""A reference control-plane backend (aiohttp + SQLite) for development and tests.

``python -m engine.devbackend --port 8080 --db dev.sqlite3 --seed engine/config/agents``

The web parts need the ``refbackend`` extra (aiohttp) and load on first use, so the
engine-only control plane can share ``engine.devbackend.bookings`` without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DevStore": "engine.devbackend.store",
    "FaultState": "engine.devbackend.shared",
    "create_app": "engine.devbackend.app",
    "serve": "engine.devbackend.app",
    "start_on_socket": "engine.devbackend.app",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
