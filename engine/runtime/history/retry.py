"""The history retry policy: what is worth retrying, and how long to wait."""

from __future__ import annotations

from engine.runtime.ports.control_plane import ControlPlaneUnavailable, TransientWriteError

MAX_WAIT_SEC = 30.0  # cap on any backoff and on a backend's Retry-After hint


def is_transient(exc: BaseException) -> bool:
    """Worth retrying; OSError covers connection errors an adapter failed to wrap."""
    return isinstance(exc, TransientWriteError | ControlPlaneUnavailable | OSError)


def backoff_delay(base: float, attempt: int, error: BaseException | None) -> float:
    """Exponential from ``base``; a Retry-After hint can only lengthen it; capped."""
    delay = base * 2.0 ** (attempt - 1)
    if isinstance(error, TransientWriteError) and error.retry_after_sec is not None:
        delay = max(delay, error.retry_after_sec)
    return min(delay, MAX_WAIT_SEC)
