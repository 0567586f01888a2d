"""Streaming speech recognition with PocketSphinx 5 and the en-US model in its wheel.

Domain model. The generic en-US trigram is poor on synthetic voices, so an assistant may
list the phrases it expects. From them we build, once per phrase set, a small dictionary
(the phrase words' cmudict entries), a JSGF grammar accepting exactly one of the phrases
(the primary search: it recognized 12/12 in-domain espeak sentences where the generic
model got 1/12) and a trigram LM over the phrases (a last pass over the kept audio when
the grammar finds no path, so near-misses, phrase prefixes and several phrases in one
breath still get a transcript). One phrase, not ``<phrase>+``: with repetition allowed,
8 kHz speech of "what are your opening hours" came out as "when are you open when are
you open". The final transcript comes from a second grammar pass over the whole utterance
(one that starts from the cepstral mean of the whole utterance, see
``_end_utterance``); the live pass feeds the interim transcripts. Domain decoders
dither their input: upsampled 8 kHz telephony audio has empty bands above 4 kHz whose
log energies otherwise swamp the features (the grammar then failed on most 8 kHz and
mu-law utterances; with dither, 60/60 exact on mixed 8-48 kHz and mu-law test speech).
Words missing from the dictionary are dropped from the phrases with a warning.

Threading. ``Decoder.process_raw`` holds the GIL for the whole call (measured: a 2.3 s
buffer stalled another Python thread for 366 ms; two threads decoding took longer than
running one after the other), so a thread buys no parallelism. What keeps other sessions
responsive is decoding in bounded slices of 100 ms of audio (<3 ms CPU with a domain
model, up to ~35 ms with the generic one; live audio is buffered up to a slice, not
decoded per 20 ms frame) run as jobs on two shared decode threads
(adapters/asr/decode_executor.py): the loop thread gets the GIL back between slices, and
the end of a turn (last slice, second pass in 300 ms jobs, release) runs before other
callers' live slices, first finished first. A stream awaits each of its jobs, so its jobs
never overlap and no thread ever blocks waiting for another job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pocketsphinx

from adapters.asr.decode_executor import FINAL as _FINAL
from adapters.asr.decode_executor import LIVE as _LIVE
from adapters.asr.decode_executor import decode_executor
from adapters.asr.domain_model import DomainModel, domain_model, words
from engine.runtime.ports.providers import (
    ProviderConfigError,
    ProviderError,
    Recognition,
    RecognitionStream,
    reject_unknown_options,
)

__all__ = ["DecoderPoolStats", "PocketsphinxRecognizer", "PocketsphinxStream"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_SLICE_BYTES = 3_200  # 100 ms of 16 kHz PCM16: the most audio one process_raw call gets
# Second passes decode 300 ms per job: a third of the job hand-offs and loop wake-ups of
# 100 ms slices for ~8 ms of GIL per job with a domain model (docs/BENCHMARKS.md).
_PASS_SLICE_BYTES = 3 * _SLICE_BYTES
_MAX_SECOND_PASS_BYTES = 30 * 32_000  # audio kept for the trigram pass: 30 s, ~1 MB
_GRAMMAR_SEARCH = "phrases"
_CHOICE_SEARCH = "choice"  # a grammar of a few candidate sentences, set per utterance
_TRIGRAM_SEARCH = "_default"  # the name pocketsphinx gives the LM it is constructed with
# No posterior is available (it needs bestpath, which cost the grammar accuracy), so the
# confidence is a prior per way the text was found.
_CONFIDENCE_GRAMMAR, _CONFIDENCE_TRIGRAM, _CONFIDENCE_GENERIC = 0.9, 0.6, 0.5
_OPTION_KEYS = frozenset({"phrases"})


@dataclass(frozen=True, slots=True)
class DecoderPoolStats:
    """Decoders of one model: kept idle, lent to utterances, and created in total."""

    idle: int
    in_use: int
    created: int


def _create_decoder(model: DomainModel | None) -> Any:
    """A new Decoder; with a domain model, the grammar is the active search."""
    # bestpath off: its lattice pass held the GIL ~80 ms at the end of every utterance and
    # did not improve accuracy on our test speech (grammar 12/12 either way, generic WER
    # 55% with it, 50% without). fwdflat stays on for the generic model: without it WER
    # rose to 66%, though it costs a ~100 ms GIL hold at the end of an utterance.
    if model is None:
        return pocketsphinx.Decoder(loglevel="ERROR", bestpath=False)
    # The Decoder reads its files while it is constructed; they need not outlive it.
    with tempfile.TemporaryDirectory(prefix="asr-domain-") as tmp:
        (Path(tmp) / "domain.dict").write_text(model.dictionary, encoding="utf-8")
        (Path(tmp) / "domain.arpa").write_text(model.trigram_arpa, encoding="utf-8")
        decoder = pocketsphinx.Decoder(
            lm=str(Path(tmp) / "domain.arpa"),
            dict=str(Path(tmp) / "domain.dict"),
            loglevel="ERROR",
            bestpath=False,
            dither=True,
        )
    decoder.add_jsgf_string(_GRAMMAR_SEARCH, model.grammar_jsgf)
    decoder.activate_search(_GRAMMAR_SEARCH)
    return decoder


class _DecoderPool:
    """Idle decoders of one model, lent out one per utterance (thread-safe)."""

    def __init__(self, model: DomainModel | None, max_idle: int) -> None:
        self.model = model
        self.cmn_init = ""  # a fresh decoder's cepstral mean, set by the first acquire
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._in_use = 0
        self._created = 0

    def acquire(self) -> Any:
        with self._lock:
            self._in_use += 1
            if self._idle:
                return self._idle.pop()
        try:
            decoder = _create_decoder(self.model)  # slow (~10-400 ms): outside the lock
        except Exception:
            with self._lock:
                self._in_use -= 1
            raise
        with self._lock:
            self._created += 1
            if not self.cmn_init:
                self.cmn_init = decoder.get_cmn(False)
        return decoder

    def release(self, decoder: Any, reusable: bool) -> None:
        with self._lock:
            self._in_use -= 1
            if reusable and len(self._idle) < self._max_idle:
                self._idle.append(decoder)

    def stats(self) -> DecoderPoolStats:
        with self._lock:
            return DecoderPoolStats(len(self._idle), self._in_use, self._created)


# Decoders are costly to build, so utterances of every recognizer with the same phrase
# set share one pool; a decoder is only ever lent to one utterance at a time.
_POOLS: dict[tuple[str, ...], _DecoderPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool_for(key: tuple[str, ...], pool_size: int) -> _DecoderPool:
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = _DecoderPool(domain_model(key) if key else None, pool_size)
    if pool.stats().created == 0:
        pool.release(pool.acquire(), reusable=True)  # fail at start-up, not mid-call
    return pool


class PocketsphinxStream:
    """One utterance on a decoder borrowed from the pool for its lifetime.

    The public methods run on the event loop. Everything that touches the decoder runs
    as a job on the executor; jobs are chained (each waits for the previous one), so they
    never overlap and keep their order even when a caller stops awaiting one.
    """

    def __init__(
        self, pool: _DecoderPool, executor: Executor | None, *, second_pass: bool = True
    ) -> None:
        self._pool = pool
        self._executor = executor
        self._wants_second_pass = second_pass
        self._feeding = asyncio.Lock()  # feeds of one stream decode in call order
        self._buffer = bytearray()  # fed audio not yet decoded (less than one slice)
        self._last_job: asyncio.Future[Any] | None = None
        self._ticket = 0  # taken by finish(): this utterance's place among final passes
        self._cancelled = False  # set on the loop, read by jobs between slices
        self._finishing = False
        self._partial = ""
        # Touched by jobs only (which never overlap).
        self._decoder: Any = None
        self._decoder_broken = False
        self._kept_audio: bytearray | None = bytearray() if pool.model is not None else None

    async def feed(self, pcm16k: bytes) -> None:
        if self._cancelled:
            return  # audio racing a barge-in cancel is simply dropped
        if self._finishing:
            raise ProviderError("pocketsphinx: feed after finish")
        # Decoded in the 100 ms slices the decoder is tuned for, not per 20 ms frame:
        # a fifth of the executor jobs and loop wake-ups (see docs/BENCHMARKS.md).
        self._buffer += pcm16k
        if len(self._buffer) < _SLICE_BYTES:
            return
        async with self._feeding:
            while len(self._buffer) >= _SLICE_BYTES and not self._cancelled:
                piece = bytes(self._buffer[:_SLICE_BYTES])
                del self._buffer[:_SLICE_BYTES]
                await self._run(functools.partial(self._decode_slice, piece), _LIVE)

    def partial(self) -> str:
        return self._partial

    async def finish(
        self,
        *,
        second_pass: bool | Literal["if_empty"] | None = None,
        choose_between: Sequence[str] = (),
    ) -> Recognition:
        """The final transcript.

        ``second_pass``: False skips the second grammar pass, "if_empty" runs it only
        when the streaming pass found nothing. ``choose_between``: instead, decode the
        utterance once more with a grammar of exactly these sentences (their words must
        be in the phrases' vocabulary) and return the one the audio fits ("" if none).
        """
        if self._cancelled or self._finishing:
            raise ProviderError("pocketsphinx: utterance already finished or cancelled")
        self._finishing = True
        self._ticket = decode_executor().ticket()
        async with self._feeding:  # audio fed before finish() is part of the utterance
            if self._buffer:
                tail, self._buffer = bytes(self._buffer), bytearray()
                await self._run(functools.partial(self._decode_slice, tail), _FINAL)
            again = self._wants_second_pass if second_pass is None else second_pass
            return await self._end_utterance(again, tuple(choose_between))

    def cancel(self) -> None:
        if self._cancelled or self._finishing:
            return  # a finishing utterance returns its decoder itself
        self._cancelled = True
        self._buffer = bytearray()
        # Fire and forget, after the job in flight (jobs of a stream never overlap): the
        # job ends the utterance and returns the decoder.
        last = self._last_job
        if last is None or last.done():
            self._schedule(self._release, _LIVE)
        else:
            last.add_done_callback(lambda _: self._schedule(self._release, _LIVE))

    # -- job plumbing (event loop) ------------------------------------------------------

    def _schedule(self, job: Callable[[], _T], priority: int) -> asyncio.Future[_T]:
        if self._executor is not None:
            future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        else:
            ticket = self._ticket if priority == _FINAL else 0
            future = asyncio.wrap_future(decode_executor().submit(priority, job, ticket=ticket))
        self._last_job = future
        return future

    async def _run(self, job: Callable[[], _T], priority: int) -> _T:
        # Callers hold ``_feeding`` and await each job, so one stream's jobs never overlap
        # (no job blocks a thread waiting for another). Shielded: a job once scheduled
        # always runs to the end, so the decoder is never left mid-call.
        return await asyncio.shield(self._schedule(job, priority))

    # -- jobs (executor thread) ---------------------------------------------------------

    def _decode_slice(self, pcm: bytes) -> None:
        if self._cancelled:
            return
        if self._decoder is None:
            try:
                self._decoder = self._pool.acquire()
            except Exception as exc:  # RuntimeError/ValueError from the C library
                raise ProviderError(f"pocketsphinx: cannot create a decoder: {exc}") from exc
            # With a domain model each utterance starts from the initial cepstral mean, not
            # the last caller's estimate, so a pooled decoder carries no state between
            # sessions (its second pass re-estimates the mean). The generic model has no
            # second pass and decodes better from the last estimate, so it keeps it.
            if self._pool.model is not None and self._pool.cmn_init:
                self._decoder.set_cmn(self._pool.cmn_init)
            self._checked(self._decoder.start_utt)
        self._checked(self._decoder.process_raw, pcm, False, False)
        if self._kept_audio is not None:
            if len(self._kept_audio) + len(pcm) <= _MAX_SECOND_PASS_BYTES:
                self._kept_audio += pcm
            else:
                self._kept_audio = None  # too long to decode twice; grammar result only
        hypothesis = self._decoder.hyp()
        self._partial = hypothesis.hypstr if hypothesis is not None else ""

    def _end_live_pass(self) -> tuple[str, bytes] | None:
        """End the live pass: its text and the kept audio (None when never fed)."""
        decoder = self._decoder
        if decoder is None:
            return None
        self._checked(decoder.end_utt)
        audio = bytes(self._kept_audio) if self._kept_audio else b""
        return self._text(decoder), audio

    def _begin_pass(self, search: str, audio_cmn: bool) -> None:
        decoder = self._decoder
        if audio_cmn:
            # The live pass has just seen the whole utterance, so its cepstral mean now
            # fits this caller and channel: the second pass starts from it.
            decoder.set_cmn(decoder.get_cmn(False))
        decoder.activate_search(search)
        self._checked(decoder.start_utt)

    def _pass_slice(self, pcm: bytes) -> None:
        self._checked(self._decoder.process_raw, pcm, False, False)

    def _end_pass(self) -> str:
        decoder = self._decoder
        try:
            self._checked(decoder.end_utt)
            return self._text(decoder)
        finally:
            decoder.activate_search(_GRAMMAR_SEARCH)

    async def _second_pass(self, audio: bytes, *, search: str, audio_cmn: bool) -> str:
        """Decode the kept utterance again, a job per slice like live audio.

        One job per 100 ms slice, not one job for the whole utterance: pocketsphinx
        holds the GIL, and a thread decoding back to back starves the event loop (the
        worst loop stall with four utterances ending together went from 2 ms to 28 ms
        when the pass ran as one job).
        """
        await self._run(functools.partial(self._begin_pass, search, audio_cmn), _FINAL)
        for start in range(0, len(audio), _PASS_SLICE_BYTES):
            piece = audio[start : start + _PASS_SLICE_BYTES]
            await self._run(functools.partial(self._pass_slice, piece), _FINAL)
        return await self._run(self._end_pass, _FINAL)

    async def _end_utterance(
        self, second_pass: bool | Literal["if_empty"], choose_between: tuple[str, ...]
    ) -> Recognition:
        """The final transcript, from the passes described in the module docstring.

        The second grammar pass starts from the whole utterance's cepstral mean. Live
        CMN starts from an initial estimate and adapts as it goes; on a new channel
        (8 kHz telephony, another caller) that estimate is off for the first words and
        the grammar finds no path or a wrong one. On mixed 8-48 kHz and mu-law test
        speech, exact transcripts went from 94% (live pass only) to 100%. It costs one
        more decode of the utterance at its end: about 15 ms of CPU per second of audio
        and ~30 ms of latency for a 2 s question.
        """
        try:
            live = await self._run(self._end_live_pass, _FINAL)
            if live is None:
                return Recognition(text="", confidence=0.0)  # never fed
            text, audio = live
            confidence = _CONFIDENCE_GRAMMAR if self._pool.model else _CONFIDENCE_GENERIC
            if choose_between:
                if not audio or self._pool.model is None:
                    return Recognition(text="", confidence=0.0)
                grammar = "#JSGF V1.0;\ngrammar choice;\npublic <utterance> = "
                grammar += " | ".join(f"( {c} )" for c in choose_between) + ";\n"
                add = functools.partial(self._checked, self._decoder.add_jsgf_string)
                await self._run(functools.partial(add, _CHOICE_SEARCH, grammar), _FINAL)
                text = await self._second_pass(audio, search=_CHOICE_SEARCH, audio_cmn=True)
                return Recognition(text=text, confidence=confidence if text else 0.0)
            if second_pass == "if_empty":
                second_pass = not text
            if second_pass and audio and self._pool.model is not None:
                second = await self._second_pass(audio, search=_GRAMMAR_SEARCH, audio_cmn=True)
                text = second or text
            if second_pass and not text and audio:
                # The grammar found no path: the phrase trigram still gives near-misses,
                # prefixes and several phrases in one breath a transcript.
                text = await self._second_pass(audio, search=_TRIGRAM_SEARCH, audio_cmn=False)
                confidence = _CONFIDENCE_TRIGRAM
        finally:
            await self._run(self._release, _FINAL)
        self._partial = text
        return Recognition(text=text, confidence=confidence if text else 0.0)

    def _release(self) -> None:
        decoder, self._decoder = self._decoder, None
        self._kept_audio = None
        if decoder is None:
            return
        reusable = not self._decoder_broken
        try:
            if self._cancelled:
                decoder.end_utt()  # a decoder must be idle to start its next utterance
        except RuntimeError:
            reusable = False
        except Exception:
            _log.exception("pocketsphinx: ending a cancelled utterance failed")
            reusable = False
        self._pool.release(decoder, reusable)

    def _checked(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except RuntimeError as exc:
            self._decoder_broken = True  # never lend a decoder in an unknown state again
            raise ProviderError(f"pocketsphinx: {call.__name__} failed: {exc}") from exc

    @staticmethod
    def _text(decoder: Any) -> str:
        hypothesis = decoder.hyp()
        return str(hypothesis.hypstr).strip() if hypothesis is not None else ""


class PocketsphinxRecognizer:
    """SpeechRecognizer port on PocketSphinx with the en-US model shipped in its wheel.

    With ``phrases`` it recognizes with a domain model built from them (see the module
    docstring), else with the generic en-US trigram; a domain model that cannot be built
    falls back to the generic one with a warning. Transcripts are lower case.

    Construction is slow the first time for a phrase set (it builds the model and one
    decoder, ~0.1-0.5 s); later recognizers with the same phrases share its decoder pool.
    Every stream must end with ``finish()`` or ``cancel()``, which return its decoder.
    """

    def __init__(
        self,
        phrases: Sequence[str] = (),
        *,
        # Idle decoders kept per phrase set. A domain decoder is small and ~10 ms to build,
        # but with fewer kept than concurrent callers every overlapping utterance builds
        # (and then drops) one; 16 covers the concurrency measured in BENCHMARKS.md.
        pool_size: int = 16,
        executor: Executor | None = None,
        second_pass: bool = True,
    ) -> None:
        key = tuple(" ".join(words(phrase)) for phrase in phrases)
        key = tuple(phrase for phrase in dict.fromkeys(key) if phrase)  # order kept, deduped
        self._executor = executor
        self._second_pass = second_pass
        self.phrases: tuple[str, ...] = key
        """The phrases (lower case, normalized) the domain model was built from."""
        try:
            self._pool = _pool_for(key, pool_size)
        except Exception as exc:
            if not key:
                raise ProviderError(f"pocketsphinx: cannot load the en-US model: {exc}") from exc
            _log.warning("asr.phrases: domain model failed (%s); using the generic model", exc)
            self._pool = _pool_for((), pool_size)
        if key and self._pool.model is None:
            _log.warning("asr.phrases: no usable phrase; using the generic model")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PocketsphinxRecognizer:
        """Build from an assistant's ``asr:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("asr", "pocketsphinx", options, _OPTION_KEYS)
        phrases = options.get("phrases", [])
        if not isinstance(phrases, list | tuple) or not all(isinstance(p, str) for p in phrases):
            raise ProviderConfigError("asr.phrases: must be a list of strings")
        return cls(phrases)

    @property
    def uses_domain_model(self) -> bool:
        """True when recognizing with a model built from the assistant's phrases."""
        return self._pool.model is not None

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Words the domain decoder can recognize (empty with the generic model)."""
        if self._pool.model is None:
            return frozenset()
        lines = self._pool.model.dictionary.splitlines()
        return frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in lines if line)

    def pool_stats(self) -> DecoderPoolStats:
        """Decoders of this recognizer's model (shared by recognizers of the same phrases)."""
        return self._pool.stats()

    def start_utterance(self) -> RecognitionStream:
        return self.open_stream()

    def open_stream(self) -> PocketsphinxStream:
        """``start_utterance`` with the concrete type (its ``finish`` takes options)."""
        # Cheap: the decoder is borrowed by the first feed, off the event loop.
        return PocketsphinxStream(self._pool, self._executor, second_pass=self._second_pass)
