"""eSpeak NG text-to-speech through libespeak-ng with ctypes (synthesis on a worker
thread of the engine process; the synthesizer's stream on the event loop).

An :class:`EspeakEngine` (one per provider factory, closed with it) runs every synthesis
on one dedicated worker thread and keeps the sentence cache. Each ``synthesize`` call is a
job on that thread; audio buffers flow from the C callback to the caller's event loop as
they are produced, so the first audio of a sentence does not wait for the rest of it.
Per-call state lives in the job, never in the engine.

libespeak-ng itself keeps its state in process-global C variables and is not thread-safe:
``LIBESPEAK`` (adapters/tts/libespeak.py) stands for that one library state.
Every call into it holds its lock, and the engine whose job runs sets its own callback
first, so engines of two factories in one process (tests) take turns rather than collide.

Sentences are cached (:class:`_SentenceCache`, per engine, bounded in bytes): for a text
and voice settings eSpeak always says the same thing (only the noise of fricatives is
drawn anew), and an assistant says the same sentences over and over (its greeting on
every call, its answers to the common questions). A cached sentence costs no synthesis
and its audio is ready at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.tts.libespeak import (
    CHARS_UTF8,
    EE_OK,
    ENDPAUSE,
    ESPEAK_SAMPLE_RATE_HZ,
    LIBESPEAK,
    PARAM_PITCH,
    PARAM_RATE,
    POS_CHARACTER,
    SynthCallback,
)
from engine.runtime.ports.providers import (
    ProviderConfigError,
    ProviderError,
    reject_unknown_options,
)

__all__ = [
    "DEFAULT_PITCH",
    "DEFAULT_RATE_WPM",
    "DEFAULT_VOICE",
    "ESPEAK_SAMPLE_RATE_HZ",
    "EspeakEngine",
    "EspeakSynthesizer",
]

DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 175
DEFAULT_PITCH = 50
RATE_WPM_MIN, RATE_WPM_MAX = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM
PITCH_MIN, PITCH_MAX = 0, 100

_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+./-]{0,63}$")
_OPTION_KEYS = frozenset({"voice", "rate_wpm", "pitch"})

_T = TypeVar("_T")

# ~3 minutes of speech per engine (22,050 Hz PCM16 is 43 KiB a second); a sentence
# longer than ~24 s is not kept.
_CACHE_BYTES = 8 * 1024 * 1024
_CACHE_ENTRY_BYTES = 1024 * 1024


class _SentenceCache:
    """Synthesized sentences by (payload, voice, rate, pitch); least recently used out."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self._entries: OrderedDict[tuple[bytes, str, int, int], tuple[bytes, ...]] = OrderedDict()
        self._max_bytes = max_bytes
        self._max_entry_bytes = max_entry_bytes
        self._bytes = 0
        self._lock = threading.Lock()  # synthesizers on several event loops may share it
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[bytes, str, int, int]) -> tuple[bytes, ...] | None:
        with self._lock:
            chunks = self._entries.get(key)
            if chunks is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return chunks

    def put(self, key: tuple[bytes, str, int, int], chunks: tuple[bytes, ...]) -> None:
        size = sum(len(chunk) for chunk in chunks)
        if size > self._max_entry_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = chunks
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= sum(len(chunk) for chunk in dropped)


@dataclass(frozen=True, slots=True)
class _Finished:
    """End-of-job marker on a job's queue; ``error`` is set when synthesis failed."""

    error: ProviderError | None


class _Job:
    """One ``synthesize`` call: its parameters and the way back to the caller's loop."""

    def __init__(
        self, text: bytes, voice: str, rate_wpm: int, pitch: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.text = text
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        self.queue: asyncio.Queue[bytes | _Finished] = asyncio.Queue()
        self._loop = loop
        # Set from the loop thread, read by the C callback: an Event keeps that explicit.
        self._aborted = threading.Event()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def abort(self) -> None:
        self._aborted.set()

    def deliver(self, item: bytes | _Finished) -> None:
        """Hand an item to the caller's loop (called on the worker thread)."""
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            # The caller's loop is closed: nobody is listening any more, stop producing.
            self._aborted.set()


class EspeakEngine:
    """Synthesis for a provider factory: one worker thread, the known voices and the
    sentence cache. ``close()`` stops the worker."""

    def __init__(
        self, *, cache_bytes: int = _CACHE_BYTES, cache_entry_bytes: int = _CACHE_ENTRY_BYTES
    ) -> None:
        self.cache = _SentenceCache(cache_bytes, cache_entry_bytes)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._known_voices: set[str] = set()
        self._job: _Job | None = None  # touched only on the worker thread
        # ctypes does not keep the callback alive: the C side would call freed memory.
        self._callback = SynthCallback(self._on_audio)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``fn(*args)`` on the worker thread (started on first use)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
            return self._executor.submit(fn, *args)

    @property
    def idle(self) -> bool:
        """True when no synthesis is running on the worker thread."""
        return self._job is None

    def check_voice(self, voice: str) -> bool:
        """True when eSpeak knows ``voice``; blocks for the first lookup of each name."""
        with self._lock:
            if voice in self._known_voices:
                return True
        known = self.submit(self._select_voice, voice).result()
        if known:
            with self._lock:
                self._known_voices.add(voice)
        return known

    def synthesize(self, job: _Job) -> None:
        """Run one job to completion or abort (worker thread); always ends with _Finished."""
        error: ProviderError | None = None
        try:
            if not job.aborted:
                self._run(job)
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # a library failure must reach the caller, not the thread
            error = ProviderError(f"espeak-ng failed: {exc}")
            error.__cause__ = exc
        finally:
            job.deliver(_Finished(error))

    def close(self) -> None:
        """Stop the worker thread once its queued jobs are done."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    # -- worker thread only -------------------------------------------------------------

    def _select_voice(self, voice: str) -> bool:
        with LIBESPEAK.lock:
            return LIBESPEAK.select_voice(voice)

    def _run(self, job: _Job) -> None:
        with LIBESPEAK.lock:
            lib = LIBESPEAK.library()
            if LIBESPEAK.owner is not self:
                lib.espeak_SetSynthCallback(self._callback)
                LIBESPEAK.owner = self
            if not LIBESPEAK.select_voice(job.voice):
                raise ProviderError(f"espeak-ng: unknown voice {job.voice!r}")
            for param, value in ((PARAM_RATE, job.rate_wpm), (PARAM_PITCH, job.pitch)):
                status = lib.espeak_SetParameter(param, value, 0)
                if status != EE_OK:
                    raise ProviderError(
                        f"espeak-ng: espeak_SetParameter({param}) returned {status}"
                    )
            self._job = job
            try:
                status = lib.espeak_Synth(
                    job.text,
                    len(job.text) + 1,
                    0,
                    POS_CHARACTER,
                    0,
                    CHARS_UTF8 | ENDPAUSE,
                    None,
                    None,
                )
            finally:
                self._job = None
        if status != EE_OK:
            raise ProviderError(f"espeak-ng: espeak_Synth returned {status}")

    def _on_audio(self, wav: Any, n_samples: int, _events: Any) -> int:
        # Called by C on the worker thread; an exception here would be swallowed by ctypes,
        # so everything is guarded and any problem aborts (returns 1).
        try:
            job = self._job
            if job is None or job.aborted:
                return 1
            if wav and n_samples > 0:  # NULL marks the end; zero-length buffers happen
                job.deliver(ctypes.string_at(wav, n_samples * 2))
            return 1 if job.aborted else 0
        except Exception:
            return 1


def _speakable(text: str) -> bytes | None:
    """The UTF-8 payload for eSpeak, or None when nothing in ``text`` would be spoken."""
    if not any(ch.isalnum() for ch in text):
        return None  # blank or punctuation only: eSpeak would read out symbol names
    # NUL would end the C string early; lone surrogates cannot be encoded.
    return text.replace("\0", " ").encode("utf-8", errors="replace")


def _int_option(name: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python, but "rate_wpm: true" in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProviderConfigError(f"tts.{name}: must be an integer from {low} to {high}")
    return value


class EspeakSynthesizer:
    """SpeechSynthesizer port on eSpeak NG: PCM16 mono at 22,050 Hz, in ~60 ms chunks.

    Instances are cheap and hold only their options and ``engine`` (the provider
    factory's; without one, an engine of its own), whose single worker thread serializes
    synthesis. Cancelling or closing the iterator returned by ``synthesize`` aborts the
    synthesis at the next audio buffer.
    """

    def __init__(
        self,
        *,
        engine: EspeakEngine | None = None,
        voice: str = DEFAULT_VOICE,
        rate_wpm: int = DEFAULT_RATE_WPM,
        pitch: int = DEFAULT_PITCH,
    ) -> None:
        if not isinstance(voice, str) or not _VOICE_NAME.match(voice):
            raise ProviderConfigError(
                "tts.voice: must be an eSpeak voice name such as 'en-us' or 'en-us+f3'"
            )
        self._rate_wpm = _int_option("rate_wpm", rate_wpm, RATE_WPM_MIN, RATE_WPM_MAX)
        self._pitch = _int_option("pitch", pitch, PITCH_MIN, PITCH_MAX)
        self._engine = engine or EspeakEngine()
        try:
            known = self._engine.check_voice(voice)
        except ProviderError as exc:
            raise ProviderConfigError(f"tts.voice: cannot check {voice!r}: {exc}") from exc
        if not known:
            raise ProviderConfigError(f"tts.voice: unknown eSpeak voice {voice!r}")
        self._voice = voice

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, engine: EspeakEngine | None = None
    ) -> EspeakSynthesizer:
        """Build from an assistant's ``tts:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("tts", "espeak", options, _OPTION_KEYS)
        return cls(
            engine=engine,
            voice=options.get("voice", DEFAULT_VOICE),
            rate_wpm=options.get("rate_wpm", DEFAULT_RATE_WPM),
            pitch=options.get("pitch", DEFAULT_PITCH),
        )

    @property
    def sample_rate_hz(self) -> int:
        return ESPEAK_SAMPLE_RATE_HZ

    @property
    def voice(self) -> str:
        return self._voice

    @property
    def rate_wpm(self) -> int:
        return self._rate_wpm

    @property
    def pitch(self) -> int:
        return self._pitch

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        """Yield PCM16 chunks for ``text`` as eSpeak produces them; ProviderError on failure.

        A consumer that stops early should close the stream (``contextlib.aclosing``) so
        the abort happens at once rather than when the generator is garbage collected.
        """
        payload = _speakable(text)
        if payload is None:
            return
        key = (payload, self._voice, self._rate_wpm, self._pitch)
        cache = self._engine.cache
        cached = cache.get(key)
        if cached is not None:
            for chunk in cached:
                yield chunk
            return
        job = _Job(payload, self._voice, self._rate_wpm, self._pitch, asyncio.get_running_loop())
        future = self._engine.submit(self._engine.synthesize, job)
        finished = False
        produced: list[bytes] = []
        try:
            while True:
                item = await job.queue.get()
                if isinstance(item, _Finished):
                    finished = True
                    if item.error is not None:
                        raise item.error
                    cache.put(key, tuple(produced))  # whole sentences only
                    return
                produced.append(item)
                yield item
        finally:
            job.abort()
            # A job still queued is simply dropped. A running one sees the abort at its next
            # buffer (well under a millisecond of CPU); waiting for its end marker means no
            # synthesis outlives this iterator and the next job starts on a clean engine.
            if not finished and not future.cancel():
                while not isinstance(await job.queue.get(), _Finished):
                    pass
