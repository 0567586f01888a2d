"""Test fixtures' entry point for the reference backend on 127.0.0.1.

The implementation lives in ``engine.devbackend.testing`` so it is importable however
pytest is started (installed package), and other projects' tests can use it too.
"""

from engine.devbackend.testing import RefBackend, RefBackendThread, running_refbackend

__all__ = ["RefBackend", "RefBackendThread", "running_refbackend"]
