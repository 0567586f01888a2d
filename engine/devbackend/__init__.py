"""A reference control-plane backend (aiohttp + SQLite) for development and tests.

``python -m engine.devbackend --port 8080 --db dev.sqlite3 --seed engine/config/agents``
"""

from engine.devbackend.app import FaultState, create_app, serve, start_on_socket
from engine.devbackend.store import DevStore

__all__ = ["DevStore", "FaultState", "create_app", "serve", "start_on_socket"]
