"""The history retry policy: what is worth retrying, how long to wait, and the timeout
of each write (grown while the backend is slower than it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from engine.runtime.ports.control_plane import (
    CallRecord,
    ControlPlane,
    ControlPlaneUnavailable,
    TranscriptEntry,
    TransientWriteError,
    WriteTimeout,
)
from engine.runtime.ports.history_store import HistoryWrite

logger = logging.getLogger(__name__)

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


def probe_delay(base: float, attempt: int, error: BaseException | None, cap: float) -> float:
    """Like ``backoff_delay`` but capped at ``cap`` unless a Retry-After asks for longer.

    For the one request that checks whether a failing backend is back: probing often
    costs the backend little and delivers the first write soon after it recovers.
    """
    delay = min(base * 2.0 ** (attempt - 1), cap)
    if isinstance(error, TransientWriteError) and error.retry_after_sec is not None:
        delay = max(delay, error.retry_after_sec)
    return min(delay, MAX_WAIT_SEC)


DEFAULT_MAX_TIMEOUT_FACTOR = 8.0  # HISTORY_MAX_WRITE_TIMEOUT_SEC=0: 8x the adapter's timeout
_WARN_EVERY_SEC = 60.0


class WriteTimeouts:
    """The write timeout history uses, grown while the backend answers slower than it.

    Starts as None (the adapter's BACKEND_TIMEOUT_SEC). Each WriteTimeout doubles the
    limit that timed out, up to ``max_timeout_sec`` (0: 8x the first limit seen); the
    growth is computed from the limit the write used, so writes timing out together at
    one limit double it once, not once each. A success well inside the grown limit halves
    it again, back to None. Shared by the live workers and the replayer. Every change is
    logged at WARNING, and a backend still too slow at the cap at most once a minute.
    """

    def __init__(
        self, max_timeout_sec: float = 0.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_timeout_sec
        self._clock = clock
        self._base: float | None = None
        self._last_warning = -_WARN_EVERY_SEC
        self.current: float | None = None

    def cap(self) -> float | None:
        """The largest limit (None until the first timeout when it is 8x the adapter's)."""
        if self._max > 0:
            return self._max
        return None if self._base is None else self._base * DEFAULT_MAX_TIMEOUT_FACTOR

    def timed_out(self, error: WriteTimeout) -> None:
        """A write did not get an answer within ``error.timeout_sec``."""
        used = error.timeout_sec
        if self._base is None:
            self._base = used
        cap = self.cap() or used
        grown = min(used * 2.0, cap)
        if grown > (self.current or self._base):
            self.current = grown
            logger.warning(
                "history: the backend is slower than the write timeout (no answer within "
                "%g s); history writes now wait up to %g s (cap %g s, "
                "HISTORY_MAX_WRITE_TIMEOUT_SEC)",
                used,
                grown,
                cap,
            )
        elif used >= cap and self._clock() - self._last_warning >= _WARN_EVERY_SEC:
            self._last_warning = self._clock()
            logger.warning(
                "history: the backend does not answer within the largest write timeout "
                "(%g s, HISTORY_MAX_WRITE_TIMEOUT_SEC); history waits in the spool",
                cap,
            )

    def succeeded(self, elapsed_sec: float) -> None:
        """A write was answered after ``elapsed_sec``: shrink a grown limit it fits well."""
        if self.current is None or self._base is None or elapsed_sec * 4.0 > self.current:
            return
        shrunk = self.current / 2.0
        self.current = None if shrunk <= self._base else shrunk
        logger.info(
            "history: the backend answers faster again; write timeout %s",
            "back to the default" if self.current is None else f"now {self.current:g} s",
        )


async def send_write(plane: ControlPlane, body: HistoryWrite, timeouts: WriteTimeouts) -> None:
    """One write with the timeout ``timeouts`` holds now, and tell it how that went."""
    timeout = timeouts.current
    # Only a grown timeout is passed: None leaves the adapter's own BACKEND_TIMEOUT_SEC.
    limit = {} if timeout is None else {"timeout_sec": timeout}
    started = time.monotonic()
    try:
        if isinstance(body, TranscriptEntry):
            await plane.append_transcript(body, **limit)
        elif isinstance(body, CallRecord):
            await plane.create_call(body, **limit)
        else:
            await plane.finalize_call(body, **limit)
    except WriteTimeout as exc:
        timeouts.timed_out(exc)
        raise
    timeouts.succeeded(time.monotonic() - started)
