"""Call history: a non-blocking bridge to the backend, backed by a durable local spool."""

from engine.runtime.history.bridge import (
    CallHistory,
    HistoryBridge,
    HistoryClosedError,
    HistoryCounters,
    HistorySettings,
    HistoryStatus,
)
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
