"""Provider figures an operator watches: the recognizer's finals, passes and pools.

A provider factory reports them (``recognizer_stats()``); metrics read them at scrape
time. Plain data, so the engine reads the figures of whatever factory it was given (the
embedded recognizer runtime, or a test's fake) without importing an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["RecognizerStats", "ReportsRecognizerStats", "WhisperPoolStats"]


@dataclass(frozen=True, slots=True)
class WhisperPoolStats:
    """Counters of one Whisper pool since it started (monotonic; read them as rates)."""

    workers: int
    max_pending: int
    pending: int  # requests waiting for a worker now
    submitted: int
    completed: int
    failed: int
    refused: int  # submit() found the pool saturated: the caller fell back
    cancelled: int  # withdrawn before a worker took them (the caller spoke again)
    batches: int  # model calls; completed + failed over batches is the mean batch size


@dataclass(frozen=True, slots=True)
class RecognizerStats:
    """Where an engine process's final transcripts came from, since start (counters)."""

    whisper: int = 0  # finals from Whisper (text or "no speech")
    phrase_chosen: int = 0  # of those, replaced by a listed phrase the audio fitted better
    grammar_confirmed: int = 0  # listed phrases the grammar and trigram agreed on: no Whisper
    fallback_saturated: int = 0  # the Whisper pool refused the request: the grammar's final
    fallback_failed: int = 0  # Whisper raised
    fallback_late: int = 0  # not ready within final_wait_ms of the end of the turn
    restarted: int = 0  # early Whisper passes dropped because the caller spoke again
    grammar_passes: int = 0  # pocketsphinx final passes (asr.final grammar, the fallback)
    grammar_passes_dropped: int = 0  # not needed (the caller spoke again; Whisper answered)
    grammar_passes_live: int = 0  # finals that ended a live pass (decoded while speaking)
    decoder_process_restarts: int = 0  # pocketsphinx's decoder process died and was replaced
    pool: WhisperPoolStats | None = None  # the Whisper pool (None before it is built)


class ReportsRecognizerStats(Protocol):
    """A provider factory that reports its recognizers' figures."""

    def recognizer_stats(self) -> RecognizerStats: ...
