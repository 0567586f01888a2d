"""Call history: a non-blocking bridge to the backend, backed by a durable local spool."""

from engine.runtime.history.bridge import HistoryBridge, HistoryCounters, HistorySettings
from engine.runtime.history.call import CallHistory, HistoryClosedError, HistoryStatus
from engine.runtime.history.spool import (
    DeadLetter,
    HistorySpool,
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
    "HistorySpool",
    "HistoryStatus",
    "SpoolError",
    "SpoolInUseError",
]
