"""One call's history as the session sees it: numbered entries in, a finalize at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from engine.runtime.ports.control_plane import TranscriptEntry
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.history_store import HistoryWrite

OFF = HistoryStatus(False, 0, 0, 0, 0, 0, 0, False)  # the status of a call with history off


class HistoryClosedError(RuntimeError):
    """``record`` after ``finalize``: the call's history is already closed."""


class HistorySink(Protocol):
    """Where one call's history hands its writes (the bridge, which owns their delivery)."""

    def submit(self, body: HistoryWrite) -> None:
        """Take a write; never waits for the backend."""
        ...

    def start_finalize(self, end_reason: str) -> asyncio.Task[HistoryStatus]:
        """Drain the call (bounded), then send its finalize."""
        ...

    def status(self) -> HistoryStatus:
        """Where the call's transcript entries are now."""
        ...


class CallHistory:
    """One call's history: ``record`` numbers a final turn, ``finalize`` closes the call.

    Where each write is on its way to the backend is the bridge's business (``sink``);
    ``status`` reads it. With history off (``sink`` None) entries are numbered, not sent.
    """

    def __init__(self, call_id: str, sink: HistorySink | None) -> None:
        self._call_id = call_id
        self._sink = sink
        self._sequence = 0
        self._finalizing: asyncio.Task[HistoryStatus] | None = None

    @property
    def call_id(self) -> str:
        return self._call_id

    def record(
        self,
        role: Literal["user", "assistant", "tool"],
        text: str,
        *,
        started_at: float,
        ended_at: float,
        interrupted: bool = False,
        full_text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TranscriptEntry:
        """Number a final turn and hand it over; never waits for the backend."""
        if self._finalizing is not None:
            raise HistoryClosedError(f"call {self._call_id} is already finalized")
        self._sequence += 1
        entry = TranscriptEntry(
            self._call_id, self._sequence, role, text, started_at, ended_at,
            interrupted, full_text, dict(metadata or {}),
        )  # fmt: skip
        if self._sink is not None:
            self._sink.submit(entry)
        return entry

    async def finalize(self, end_reason: str) -> HistoryStatus:
        """Drain (bounded), then send the finalize once; every caller gets the status."""
        if self._sink is None:
            return OFF
        if self._finalizing is None:
            self._finalizing = self._sink.start_finalize(end_reason)
        # shield: a cancelled session must not cancel the finalize other callers await
        return await asyncio.shield(self._finalizing)

    def status(self) -> HistoryStatus:
        """A snapshot of this call's transcript entries."""
        return OFF if self._sink is None else self._sink.status()
