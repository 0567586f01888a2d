"""The recognizer runtime: one per engine process, the shared machinery of every
recognizer it builds (engine event loop side; it owns the decoder process and the
Whisper pool's worker threads).

Built by the provider factory (adapters/providers.py) at bootstrap and closed with it:
the decoder process (pocketsphinx's passes, adapters/asr/decode_process.py), the engine
side's decoder pools (one decoder per phrase set, to check the model at start-up and to
give a fresh decoder's cepstral mean), the Whisper pool, the counters behind
``recognizer_stats()`` and the names of live passes. Nothing of it is module state: two
runtimes in one process (tests) share nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.asr.decode_process import DecodeProcess
from adapters.asr.decoder_client import ProcessDecoderClient
from adapters.asr.decoder_jobs import DecoderJobs
from adapters.asr.decoders import DecoderPool, DecoderPools
from engine.runtime.ports.provider_stats import RecognizerStats

if TYPE_CHECKING:  # numpy and CTranslate2 load with the first Whisper pool, not here
    from adapters.asr.whisper import WhisperPool

__all__ = ["COUNTED", "Counters", "RecognizerRuntime"]

_log = logging.getLogger(__name__)

# Every counter of RecognizerStats but the decoder process's restarts and the pool.
COUNTED = (
    "whisper",
    "phrase_chosen",
    "grammar_confirmed",
    "fallback_saturated",
    "fallback_failed",
    "fallback_late",
    "restarted",
    "grammar_passes",
    "grammar_passes_dropped",
    "grammar_passes_live",
)


class Counters:
    """Named event counters, safe to add to from any thread."""

    def __init__(self, names: tuple[str, ...] = COUNTED) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str) -> None:
        with self._lock:
            self._values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class RecognizerRuntime:
    """One engine process's recognizer machinery; see the module docstring.

    ``engine_processes``: engine processes sharing this host's cores (Whisper's threads
    are the cores divided among them). ``whisper_pool`` builds the Whisper pool instead
    (tests), called at most once, when a recognizer first needs it.
    """

    def __init__(
        self,
        *,
        engine_processes: int = 1,
        whisper_pool: Callable[[], WhisperPool] | None = None,
    ) -> None:
        self._engine_processes = engine_processes
        self._build_whisper = whisper_pool
        self._whisper: WhisperPool | None = None
        self._lock = threading.Lock()
        self.counters = Counters()
        self.decode_process = DecodeProcess(DecoderJobs)
        self.decoder = ProcessDecoderClient(self.decode_process)
        # Here only one decoder per phrase set is built: decoding runs in the decoder
        # process, which keeps its own pools.
        self._pools = DecoderPools(max_idle=1)
        self._live_ids = itertools.count(1)

    def decoder_pool(self, key: tuple[str, ...]) -> DecoderPool:
        """The phrase set's pool on this side (built and checked by the first call)."""
        return self._pools.pool_for(key)

    def next_live_id(self) -> int:
        """A name for a live pass, unique in this engine process."""
        return next(self._live_ids)

    def whisper_pool(self) -> WhisperPool:
        """The Whisper pool (built by the first call; the model loads on a worker)."""
        with self._lock:
            if self._whisper is None:
                if self._build_whisper is not None:
                    self._whisper = self._build_whisper()
                else:
                    from adapters.asr.whisper import build_pool

                    self._whisper = build_pool(self._engine_processes)
            return self._whisper

    def stats(self) -> RecognizerStats:
        """The counters an operator watches: fallbacks mean Whisper is short of CPU."""
        with self._lock:
            pool = self._whisper
        return RecognizerStats(
            **self.counters.snapshot(),
            decoder_process_restarts=self.decode_process.restarts,
            pool=pool.stats() if pool is not None else None,
        )

    async def warm_up(self, timeout_sec: float) -> None:
        """Load the Whisper model and start the decoder process now, off the loop.

        Until Whisper is loaded a final transcript falls back to pocketsphinx's, and
        starting the decoder process (a new interpreter) takes about a second.
        """
        pool = self.whisper_pool()
        decoder = asyncio.wrap_future(self.decode_process.start())
        loaded = await asyncio.to_thread(pool.wait_loaded, timeout_sec)
        if loaded is None:
            _log.warning("the Whisper model did not load: finals use the streaming recognizer")
        try:
            await asyncio.wait_for(decoder, timeout_sec)
        except Exception as exc:  # the first turn starts it again
            _log.warning("pocketsphinx's decoder process did not start: %s", exc)

    def close(self) -> None:
        """Stop the decoder process and the Whisper pool's workers (blocking)."""
        self.decode_process.close()
        with self._lock:
            pool, self._whisper = self._whisper, None
        if pool is not None:
            pool.close()
