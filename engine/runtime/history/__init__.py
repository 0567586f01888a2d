"""Call history: a non-blocking bridge to the backend, backed by a durable store (a port)."""

from engine.runtime.history.bridge import HistoryBridge, HistoryCounters, HistorySettings
from engine.runtime.history.call import CallHistory, HistoryClosedError
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.history_store import (
    DeadLetter,
    HistoryStore,
    SpoolError,
    SpoolInUseError,
)

__all__ = [
    "CallHistory",
    "DeadLetter",
    "HistoryBridge",
    "HistoryClosedError",
    "HistoryCounters",
    "HistorySettings",
    "HistoryStatus",
    "HistoryStore",
    "SpoolError",
    "SpoolInUseError",
]
