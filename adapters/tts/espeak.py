"""eSpeak NG text-to-speech, driven through libespeak-ng with ctypes.

libespeak-ng keeps all of its state in process-global C variables and is not thread-safe,
so this module owns it through one process-wide ``_EspeakEngine``: the library is loaded
and initialized once (lazily), and every call into it runs on a single dedicated worker
thread. Each ``synthesize`` call is a job on that thread; audio buffers flow from the C
callback to the caller's event loop as they are produced, so the first audio of a sentence
does not wait for the rest of it. Per-call state lives in the job, never in the engine.

Sentences are cached (:class:`_SentenceCache`, per process, bounded in bytes): for a
text and voice settings eSpeak always says the same thing (only the noise of fricatives
is drawn anew), and an assistant says the same sentences over and over (its greeting on
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

import espeakng_loader

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
    "EspeakSynthesizer",
]

ESPEAK_SAMPLE_RATE_HZ = 22_050
DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 175
DEFAULT_PITCH = 50
RATE_WPM_MIN, RATE_WPM_MAX = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM
PITCH_MIN, PITCH_MAX = 0, 100

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data dir instead of exit()ing the process
_POS_CHARACTER = 1
_CHARS_UTF8 = 0x1
_ENDPAUSE = 0x1000  # keep the sentence-final pause so consecutive sentences do not run together
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_EE_NOT_FOUND = 2
_CALLBACK_BUFFER_MS = 60  # size of the buffers handed to the callback = our chunk size

_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+./-]{0,63}$")
_OPTION_KEYS = frozenset({"voice", "rate_wpm", "pitch"})

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_T = TypeVar("_T")

# ~3 minutes of speech per process (22,050 Hz PCM16 is 43 KiB a second); a sentence
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
        self._lock = threading.Lock()  # recognizers' event loops in tests share the process
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


_CACHE = _SentenceCache(_CACHE_BYTES, _CACHE_ENTRY_BYTES)


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


class _EspeakEngine:
    """Process-wide owner of libespeak-ng: one library state, one worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._known_voices: set[str] = set()
        # Everything below is touched only on the worker thread.
        self._lib: ctypes.CDLL | None = None
        self._voice: str | None = None
        self._job: _Job | None = None
        # ctypes does not keep the callback alive: the C side would call freed memory.
        self._callback = _SynthCallback(self._on_audio)

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

    # -- worker thread only -------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        lib = self._library()
        if not self._select_voice(job.voice):
            raise ProviderError(f"espeak-ng: unknown voice {job.voice!r}")
        for param, value in ((_PARAM_RATE, job.rate_wpm), (_PARAM_PITCH, job.pitch)):
            status = lib.espeak_SetParameter(param, value, 0)
            if status != _EE_OK:
                raise ProviderError(f"espeak-ng: espeak_SetParameter({param}) returned {status}")
        self._job = job
        try:
            status = lib.espeak_Synth(
                job.text,
                len(job.text) + 1,
                0,
                _POS_CHARACTER,
                0,
                _CHARS_UTF8 | _ENDPAUSE,
                None,
                None,
            )
        finally:
            self._job = None
        if status != _EE_OK:
            raise ProviderError(f"espeak-ng: espeak_Synth returned {status}")

    def _library(self) -> ctypes.CDLL:
        if self._lib is not None:
            return self._lib
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise ProviderError(f"espeak-ng: cannot load the library: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            _CALLBACK_BUFFER_MS,
            data_path.encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if rate != ESPEAK_SAMPLE_RATE_HZ:
            # -1 is an init failure; any other rate would break what sample_rate_hz promised.
            raise ProviderError(f"espeak-ng: espeak_Initialize returned {rate}")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        return lib

    def _select_voice(self, voice: str) -> bool:
        if voice == self._voice:
            return True  # loading a voice reads files; skip it when nothing changes
        status = self._library().espeak_SetVoiceByName(voice.encode())
        if status == _EE_NOT_FOUND:
            return False
        if status != _EE_OK:
            raise ProviderError(f"espeak-ng: espeak_SetVoiceByName returned {status}")
        self._voice = voice
        return True

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


_ENGINE = _EspeakEngine()


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

    Instances are cheap and hold only their options; all of them share the process-wide
    eSpeak engine, whose single worker thread serializes synthesis. Cancelling or closing
    the iterator returned by ``synthesize`` aborts the synthesis at the next audio buffer.
    """

    def __init__(
        self,
        *,
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
        try:
            known = _ENGINE.check_voice(voice)
        except ProviderError as exc:
            raise ProviderConfigError(f"tts.voice: cannot check {voice!r}: {exc}") from exc
        if not known:
            raise ProviderConfigError(f"tts.voice: unknown eSpeak voice {voice!r}")
        self._voice = voice

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EspeakSynthesizer:
        """Build from an assistant's ``tts:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("tts", "espeak", options, _OPTION_KEYS)
        return cls(
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
        cached = _CACHE.get(key)
        if cached is not None:
            for chunk in cached:
                yield chunk
            return
        job = _Job(payload, self._voice, self._rate_wpm, self._pitch, asyncio.get_running_loop())
        future = _ENGINE.submit(_ENGINE.synthesize, job)
        finished = False
        produced: list[bytes] = []
        try:
            while True:
                item = await job.queue.get()
                if isinstance(item, _Finished):
                    finished = True
                    if item.error is not None:
                        raise item.error
                    _CACHE.put(key, tuple(produced))  # whole sentences only
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
