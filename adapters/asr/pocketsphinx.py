"""Speech recognition with PocketSphinx 5 and the en-US model in its wheel.

Domain model. The generic en-US trigram is poor on synthetic voices, so an assistant may
list the phrases it expects. From them we build, once per phrase set, a small dictionary
(the phrase words' cmudict entries), a JSGF grammar accepting exactly one of the phrases
(the primary search: it recognized 12/12 in-domain espeak sentences where the generic
model got 1/12) and a trigram LM over the phrases (a last pass when the grammar finds no
path, so near-misses, phrase prefixes and several phrases in one breath still get a
transcript). One phrase, not ``<phrase>+``: with repetition allowed, 8 kHz speech of
"what are your opening hours" came out as "when are you open when are you open". Domain
decoders dither their input: upsampled 8 kHz telephony audio has empty bands above 4 kHz
whose log energies otherwise swamp the features (the grammar then failed on most 8 kHz
and mu-law utterances; with dither, 60/60 exact on mixed 8-48 kHz and mu-law test
speech). Words missing from the dictionary are dropped from the phrases with a warning.

One pass per utterance, decoded while the caller speaks. With a domain model the final
transcript comes from one grammar pass over the utterance (:func:`_final_pass`): the phrase
grammar from the utterance's cepstral mean (CMN), then the phrase trigram if the grammar
found no path. The mean matters: a fresh decoder's is off for a new caller or channel,
and 8 kHz speech then missed in 16 of 40 clips against 5 of 40 from the utterance's own.
When a mean is known, the caller's own from their last utterance (ContinuesCaller) or,
for a new caller, the last one learnt on the same kind of line (LearnsLines: encoding
and rate; the mean is the channel's more than the speaker's), the pass starts with the
caller's first word as a *live pass*: the audio goes to the decoder process as it
arrives (200 ms a job, behind any turn's final), and the final job, sent when the caller
has been silent ~160 ms (``silence_began``, from the speech input), only decodes what
the live pass has not reached and ends it: the same audio from the same mean in the same
slices, so the same transcript as one pass over the whole utterance, but at the turn end
only the tail is left. When many turns end together (a burst of new calls) they no
longer queue behind each other's whole passes. Without a known mean (the first caller
on a line) the final job first estimates one with a one-word grammar (a cheap pass that
only runs the front end), then decodes the whole utterance; the grammar finding no path
from a carried mean means the same. If the caller speaks again after ``silence_began``
the final job is withdrawn (or its result dropped) and the next one decodes the whole
utterance. The generic model (no phrases) has no grammar pass: it decodes live and its
final is that pass's result; interims (``partial()``) read the live pass.

Where it runs. ``Decoder.process_raw`` holds the GIL for the whole call (measured: a 2.3 s
buffer stalled another Python thread for 366 ms); beside the event loop that made the
loop fall behind its input long before the core was busy. So every decoding job, final
passes and live slices alike, runs in the engine process's decoder process
(adapters/asr/decode_process.py), turn ends before live slices. A job decodes in 100 ms
slices and gives up between two when it is withdrawn. A decoder is borrowed from the
decoder process's pool by a job and returned by it (a live pass keeps its decoder until
the utterance ends); the pool here only gives the vocabulary and fails start-up early.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pocketsphinx

from adapters.asr.decode_process import current_job_stopped, decode_process
from adapters.asr.domain_model import DomainModel, domain_model, words
from engine.runtime.ports.providers import (
    ProviderConfigError,
    ProviderError,
    Recognition,
    RecognitionStream,
    reject_unknown_options,
)

__all__ = [
    "DecoderPoolStats",
    "FinalPassStats",
    "PocketsphinxRecognizer",
    "PocketsphinxStream",
    "final_pass_stats",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_SLICE_BYTES = 3_200  # 100 ms of 16 kHz PCM16: the most audio one process_raw call gets
_MAX_KEPT_BYTES = 30 * 32_000  # an utterance kept for its final pass: 30 s, ~1 MB
_GRAMMAR_SEARCH = "phrases"
_CMN_SEARCH = "cmn"  # a one-word grammar: a cheap pass that only estimates the mean
_CHOICE_SEARCH = "choice"  # a grammar of a few candidate sentences, set per utterance
_TRIGRAM_SEARCH = "_default"  # the name pocketsphinx gives the LM it is constructed with
# No posterior is available (it needs bestpath, which cost the grammar accuracy), so the
# confidence is a prior per way the text was found.
_CONFIDENCE_GRAMMAR, _CONFIDENCE_TRIGRAM, _CONFIDENCE_GENERIC = 0.9, 0.6, 0.5
_SOURCE = "grammar"  # Recognition.source of every final here
_OPTION_KEYS = frozenset({"phrases"})


@dataclass(frozen=True, slots=True)
class FinalPassStats:
    """The process's grammar final passes since start (counters)."""

    started: int  # passes submitted (one per turn, plus one per dropped pass)
    dropped: int  # begun early, then not needed (the caller spoke again; Whisper answered)
    live: int  # of the finals, those that ended a live pass (only the tail left to decode)
    decoder_process_restarts: int  # the decoder process was found dead and replaced


_PASS_LOCK = threading.Lock()
_PASS_COUNTS = {"started": 0, "dropped": 0, "live": 0}


def _count_pass(name: str) -> None:
    with _PASS_LOCK:
        _PASS_COUNTS[name] += 1


def final_pass_stats() -> FinalPassStats:
    with _PASS_LOCK:
        started, dropped, live = (_PASS_COUNTS[k] for k in ("started", "dropped", "live"))
    return FinalPassStats(started, dropped, live, decode_process().restarts)


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
    # Any one word of the dictionary will do: this search only runs the front end and
    # a handful of senones while the cepstral mean adapts to the utterance.
    some_word = model.dictionary.split(" ", 1)[0].split("(", 1)[0]
    decoder.add_jsgf_string(
        _CMN_SEARCH, f"#JSGF V1.0;\ngrammar cmn;\npublic <utterance> = {some_word};\n"
    )
    decoder.activate_search(_GRAMMAR_SEARCH)
    return decoder


class _DecoderPool:
    """Idle decoders of one model, lent out one per utterance (thread-safe)."""

    def __init__(self, key: tuple[str, ...], model: DomainModel | None, max_idle: int) -> None:
        self.key = key  # the phrases, to find the same pool in the decoder process
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
            pool = _POOLS[key] = _DecoderPool(key, domain_model(key) if key else None, pool_size)
    if pool.stats().created == 0:
        pool.release(pool.acquire(), reusable=True)  # fail at start-up, not mid-call
    return pool


_LIVE_IDS = itertools.count(1)  # live passes in the decoder process, unique per engine process
# Audio per live job while nobody reads interims: fewer jobs (each a round trip through
# the decoder process) for the same decoding.
_LIVE_BATCH_SLICES = 2


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A final pass's transcript and the utterance's cepstral mean (for a choice pass,
    and for the caller's next utterance)."""

    recognition: Recognition
    cmn: str
    ended_live: bool = False  # it ended the stream's live pass (decoded only the tail)


class _Stopped(Exception):
    """A pass withdrawn while it ran: the caller spoke again or the utterance ended."""


def _decode(decoder: Any, search: str, audio: bytes) -> str:
    """One utterance of ``audio`` on ``search`` in 100 ms slices; its hypothesis."""
    decoder.activate_search(search)
    decoder.start_utt()
    try:
        for start in range(0, len(audio), _SLICE_BYTES):
            if current_job_stopped():
                raise _Stopped
            decoder.process_raw(audio[start : start + _SLICE_BYTES], False, False)
    finally:
        decoder.end_utt()
    return _hypothesis(decoder)


def _hypothesis(decoder: Any) -> str:
    """The decoder's best hypothesis so far ("" if none)."""
    hypothesis = decoder.hyp()
    return str(hypothesis.hypstr).strip() if hypothesis is not None else ""


def _borrowed(pool: _DecoderPool, job: Callable[[Any], _T]) -> _T:
    """Run ``job`` on a decoder borrowed for it; never lend one in an unknown state again."""
    try:
        decoder = pool.acquire()
    except Exception as exc:  # RuntimeError/ValueError from the C library
        raise ProviderError(f"pocketsphinx: cannot create a decoder: {exc}") from exc
    reusable = True
    try:
        return job(decoder)
    except RuntimeError as exc:
        reusable = False
        raise ProviderError(f"pocketsphinx: decoding failed: {exc}") from exc
    finally:
        if reusable:
            decoder.activate_search(_GRAMMAR_SEARCH)
        pool.release(decoder, reusable)


def _final_pass(pool: _DecoderPool, audio: bytes, refine: bool, cmn: str | None = None) -> _Outcome:
    """The final transcript of a whole utterance with the domain model (a job).

    ``cmn``: the mean learnt from this caller's previous utterance; the pass starts from
    it instead of estimating one first (a third less CPU; as exact on our test speech).
    If the grammar then finds no path the mean is estimated from this utterance after all.
    """

    def estimate(decoder: Any) -> str:
        decoder.set_cmn(pool.cmn_init)
        _decode(decoder, _CMN_SEARCH, audio)
        return str(decoder.get_cmn(False))

    def run(decoder: Any) -> _Outcome:
        mean = pool.cmn_init
        if refine:
            mean = cmn if cmn else estimate(decoder)
        decoder.set_cmn(mean)
        text, confidence = _decode(decoder, _GRAMMAR_SEARCH, audio), _CONFIDENCE_GRAMMAR
        learnt = str(decoder.get_cmn(False)) if text else ""
        if not text and refine and cmn:
            mean = estimate(decoder)  # the carried mean did not fit (another line?)
            decoder.set_cmn(mean)
            text = _decode(decoder, _GRAMMAR_SEARCH, audio)
            learnt = str(decoder.get_cmn(False)) if text else ""
        if not text and refine:
            # The grammar found no path: the phrase trigram still gives near-misses,
            # prefixes and several phrases in one breath a transcript.
            decoder.set_cmn(mean)
            text, confidence = _decode(decoder, _TRIGRAM_SEARCH, audio), _CONFIDENCE_TRIGRAM
        return _Outcome(Recognition(text, confidence if text else 0.0, _SOURCE), learnt or mean)

    return _borrowed(pool, run)


def _choice_pass(pool: _DecoderPool, audio: bytes, cmn: str | None, grammar: str) -> str:
    """Which of a few sentences (``grammar``) the audio fits, "" if none (a job)."""

    def run(decoder: Any) -> str:
        mean = cmn
        if mean is None:
            decoder.set_cmn(pool.cmn_init)
            _decode(decoder, _CMN_SEARCH, audio)
            mean = decoder.get_cmn(False)
        decoder.add_jsgf_string(_CHOICE_SEARCH, grammar)
        decoder.set_cmn(mean)
        return _decode(decoder, _CHOICE_SEARCH, audio)

    return _borrowed(pool, run)


# -- jobs in the decoder process (adapters/asr/decode_process.py) ------------------------

# Idle decoders kept in the decoder process. Every caller speaking holds one (its live
# pass) until their final job has run, so after a burst of turns this many may be idle:
# a decoder costs ~8 MiB kept and ~20 ms of CPU to build again.
_CHILD_POOL_SIZE = 64

# The latest cepstral mean a final pass learnt, by (phrase set, kind of line): a new
# caller's pass starts from it instead of paying an estimating pass (LearnsLines). Channel
# more than speaker: on our clips as exact as each utterance's own estimate (36-39/40
# against 35-36/40), and a mean that does not fit is re-estimated (the grammar then finds
# no path). Kept here, where passes run one after another, so that when many callers
# start at once only the first pass on a line estimates.
_LINE_MEANS: dict[tuple[tuple[str, ...], str], str] = {}


def _line_mean(key: tuple[str, ...], line: str, cmn: str | None) -> str | None:
    """The caller's own mean, else the line's latest (None: estimate one)."""
    return cmn if cmn is not None or not line else _LINE_MEANS.get((key, line))


def _final_pass_job(
    key: tuple[str, ...],
    audio: bytes,
    refine: bool,
    cmn: str | None,
    line: str = "",
    sid: int = 0,
) -> _Outcome:
    """The final pass of ``audio``; ``sid``: the stream's live pass, to end instead.

    A live pass that began from a known mean has decoded most of ``audio`` already,
    exactly as this pass would (same mean, same audio, same slices): it only decodes the
    rest. Its grammar finding no path means estimating a mean, as below.
    """
    pool = _pool_for(key, _CHILD_POOL_SIZE)
    live = None
    if sid:
        live = _CHILD_LIVE.pop(sid, None)
        _ENDED_LIVE.add(sid)  # its feeds still queued are not decoded (see _live_drop_job)
    if refine:
        cmn = _line_mean(key, line, cmn)
    outcome: _Outcome | None = None
    if live is not None:
        outcome = _end_live_pass(live, audio, refine)
        if outcome is not None and not outcome.recognition.text:
            cmn = None  # the carried mean found no path: estimate one
            outcome = None
    if outcome is None:
        outcome = _final_pass(pool, audio, refine, cmn)
    if line and refine and outcome.recognition.text:
        _LINE_MEANS[key, line] = outcome.cmn
    return outcome


def _choice_pass_job(
    key: tuple[str, ...], audio: bytes, cmn: str | None, grammar: str, line: str = ""
) -> str:
    return _choice_pass(
        _pool_for(key, _CHILD_POOL_SIZE), audio, _line_mean(key, line, cmn), grammar
    )


def _warm_job(key: tuple[str, ...]) -> None:
    _pool_for(key, _CHILD_POOL_SIZE)  # the model and one decoder, before the first turn


def _pool_stats_job(key: tuple[str, ...]) -> DecoderPoolStats:
    return _pool_for(key, _CHILD_POOL_SIZE).stats()


@dataclass(slots=True)
class _LivePass:
    """A stream's live pass in the decoder process."""

    pool: _DecoderPool
    decoder: Any  # in an utterance; None while held back (below)
    known_mean: bool  # began from the caller's or the line's mean (not a fresh decoder's)
    fed: int = 0  # bytes of the utterance decoded so far
    # Audio not decoded yet: a pass only for the final, with no mean known, holds it
    # rather than decode from a fresh decoder's mean for nothing, until a mean is known
    # (another caller's pass on the line) or interims are asked for; else the final job
    # estimates one and decodes the whole utterance.
    held: bytearray = field(default_factory=bytearray)


# Live passes in the decoder process, by stream id.
_CHILD_LIVE: dict[int, _LivePass] = {}
# Live passes a final job ended (or found not begun: their first feed was still queued):
# until the engine's drop job, queued behind the pass's last feed, their feeds are ignored.
_ENDED_LIVE: set[int] = set()


def _start_live_decoder(pool: _DecoderPool, mean: str) -> Any:
    decoder = pool.acquire()
    try:
        if pool.model is not None and mean:
            decoder.set_cmn(mean)
        decoder.start_utt()
    except RuntimeError as exc:
        pool.release(decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: start_utt failed: {exc}") from exc
    return decoder


def _live_feed_job(
    sid: int,
    key: tuple[str, ...],
    pcm: bytes,
    first: bool,
    cmn: str | None,
    line: str,
    final_only: bool = False,
) -> str:
    """Decode ``pcm`` on the stream's live pass (opened by its first feed); the partial.

    ``final_only``: nobody reads interims (yet); the pass is for the final job.
    """
    if sid in _ENDED_LIVE:
        return ""
    live = _CHILD_LIVE.get(sid)
    if live is None:
        if not first:  # this process was started after the pass began: its audio is lost
            raise ProviderError("pocketsphinx: the live pass was lost with a decoder process")
        pool = _pool_for(key, _CHILD_POOL_SIZE)
        live = _CHILD_LIVE[sid] = _LivePass(pool, decoder=None, known_mean=False)
    if live.decoder is None:
        live.held += pcm
        # A domain utterance starts from the caller's (or the line's) mean, else the
        # initial one; the generic model decodes better from the last estimate. A mean
        # another caller's pass taught the line since the first feed counts too (a burst
        # of new calls: only the first few wait for the turn end to be decoded whole).
        known = _line_mean(live.pool.key, line, cmn)
        if final_only and known is None:
            return ""
        live.known_mean = known is not None
        live.decoder = _start_live_decoder(live.pool, known or live.pool.cmn_init)
        pcm, live.held = bytes(live.held), bytearray()
    try:
        for start in range(0, len(pcm), _SLICE_BYTES):
            if current_job_stopped():
                break
            piece = pcm[start : start + _SLICE_BYTES]
            live.decoder.process_raw(piece, False, False)
            live.fed += len(piece)
    except RuntimeError as exc:
        del _CHILD_LIVE[sid]
        live.pool.release(live.decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: process_raw failed: {exc}") from exc
    return _hypothesis(live.decoder)


def _close_live(live: _LivePass) -> tuple[str, str]:
    """End a live pass's utterance and return its decoder: (hypothesis, mean learnt)."""
    try:
        live.decoder.end_utt()  # a decoder must be idle to start its next utterance
        text, mean = _hypothesis(live.decoder), str(live.decoder.get_cmn(False))
    except RuntimeError as exc:
        live.pool.release(live.decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: end_utt failed: {exc}") from exc
    live.pool.release(live.decoder, reusable=True)
    return text, mean


def _end_live_pass(live: _LivePass, audio: bytes, refine: bool) -> _Outcome | None:
    """Decode the rest of ``audio`` on a live pass and end it (None: it cannot serve).

    It serves a grammar final when it began from a known mean and has decoded a prefix of
    ``audio``; else it is ended unused.
    """
    if live.decoder is None:
        return None  # held back: nothing decoded yet
    usable = live.pool.model is not None and refine and live.known_mean
    usable = usable and live.fed <= len(audio)
    try:
        for start in range(live.fed, len(audio) if usable else 0, _SLICE_BYTES):
            if current_job_stopped():
                raise _Stopped
            live.decoder.process_raw(audio[start : start + _SLICE_BYTES], False, False)
    except _Stopped:
        with contextlib.suppress(ProviderError):
            _close_live(live)
        raise
    except RuntimeError as exc:
        live.pool.release(live.decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: decoding failed: {exc}") from exc
    text, learnt = _close_live(live)
    if not usable:
        return None
    confidence = _CONFIDENCE_GRAMMAR if text else 0.0
    return _Outcome(Recognition(text, confidence, _SOURCE), learnt if text else "", True)


def _live_end_job(sid: int) -> str:
    """End the live utterance: its final hypothesis ("" if it never started)."""
    live = _CHILD_LIVE.pop(sid, None)
    if live is None or live.decoder is None:
        return ""
    return _close_live(live)[0]


def _live_drop_job(sid: int) -> None:
    _ENDED_LIVE.discard(sid)
    live = _CHILD_LIVE.pop(sid, None)
    if live is not None and live.decoder is not None:
        with contextlib.suppress(ProviderError):  # a broken decoder is not kept
            _close_live(live)


class PocketsphinxStream:
    """One utterance: its audio kept for the final job, and a live pass decoding it as it comes.

    The public methods run on the event loop and never wait for decoding, except
    ``finish``. See the module docstring for when each pass runs.
    """

    def __init__(
        self, pool: _DecoderPool, *, refine: bool, cmn: str | None = None, line: str = ""
    ) -> None:
        self._pool = pool
        self._refine = refine
        self._line = line  # the kind of line this caller is on ("" if not told)
        self._cmn = cmn  # this caller's cepstral mean, once a final pass has learnt it
        self._audio = bytearray()  # the utterance so far, up to _MAX_KEPT_BYTES
        self._early: asyncio.Future[_Outcome] | None = None  # the pass begun in the silence
        self._finishing = False
        self._cancelled = False
        self._partial = ""
        # The live pass: the generic model's only pass; with the phrase grammar (refined)
        # the final pass's first part, decoded while the caller speaks; interims; and
        # utterances too long to keep.
        self._live_on = False
        self._live_pending = bytearray()  # fed, not yet handed to a live job
        self._live_job: asyncio.Future[str] | None = None  # at most one in flight
        self._live_error: BaseException | None = None
        self._sid = 0  # the live pass's name in the decoder process (new for each)
        self._live_remote = False  # a live job was sent to the decoder process
        self._interims_read = False  # partial() was called: the live pass serves interims
        # The final pass will end the live pass instead of decoding from the start.
        self._live_final = refine and pool.model is not None
        self._ended_live = False
        if pool.model is None or self._live_final:
            self._start_live()

    # -- RecognitionStream -------------------------------------------------------------

    async def feed(self, pcm16k: bytes) -> None:
        if self._cancelled:
            return  # audio racing a barge-in cancel is simply dropped
        if self._finishing:
            raise ProviderError("pocketsphinx: feed after finish")
        if len(self._audio) + len(pcm16k) <= _MAX_KEPT_BYTES:
            self._audio += pcm16k
        elif not self._live_on:
            self._start_live()  # too long to keep: decode it as it comes, final from that
        if self._live_on:
            self._live_pending += pcm16k
            self._pump_live()

    def partial(self) -> str:
        """The live pass's latest hypothesis; the first call starts the live pass."""
        self._interims_read = True
        # Not while a final job has the live pass: the silence has nothing new to say.
        idle = not self._finishing and not self._cancelled and self._early is None
        if not self._live_on and idle:
            self._start_live()
        return self._partial

    def silence_began(self) -> None:
        """PreparesFinal: start the final pass over the utterance so far."""
        if self._early is None and self._uses_final_pass() and not self._finishing:
            self._early = self._submit_final_pass()

    def speech_resumed(self) -> None:
        """PreparesFinal: the pass begun in the silence no longer covers the utterance."""
        self._drop_early()

    async def finish(self, *, choose_between: Sequence[str] = ()) -> Recognition:
        """The final transcript.

        ``choose_between``: instead, decode the utterance with a grammar of exactly these
        sentences (their words must be in the phrases' vocabulary) and return the one the
        audio fits ("" if none).
        """
        if self._cancelled or self._finishing:
            raise ProviderError("pocketsphinx: utterance already finished or cancelled")
        self._finishing = True
        try:
            if choose_between:
                return await self._choose(tuple(choose_between))
            if not self._uses_final_pass():
                return await self._finish_live()
            early, self._early = self._early, None
            if early is None:
                early = self._submit_final_pass()
            self._stop_live()
            try:
                outcome = await early
            except Exception as exc:  # a broken decoder, or the decoder process died
                _log.warning("pocketsphinx: final pass failed (%s); decoding once more", exc)
                try:
                    outcome = await self._submit_final_pass()
                except ProviderError:
                    raise
                except Exception as again:
                    raise ProviderError(f"pocketsphinx: final pass failed: {again}") from again
            self._partial = outcome.recognition.text
            if outcome.recognition.text:
                self._cmn = outcome.cmn
            if outcome.ended_live:
                _count_pass("live")
                self._ended_live = True
            return outcome.recognition
        finally:
            self._audio = bytearray()

    @property
    def ended_live_pass(self) -> bool:
        """True once ``finish`` took the final from the live pass (only the tail was left)."""
        return self._ended_live

    def next_utterance(self) -> PocketsphinxStream:
        """ContinuesCaller: the caller's next utterance starts from the mean learnt here."""
        return PocketsphinxStream(self._pool, refine=self._refine, cmn=self._cmn, line=self._line)

    def cancel(self) -> None:
        if self._cancelled or self._finishing:
            return
        self._learn_from(self._early)  # a pass the hybrid did not need still taught us
        self._cancelled = True
        self._audio = bytearray()
        self._drop_early()
        if self._live_job is not None:
            self._live_job.cancel()  # withdrawn if still queued; its callback cleans up
        self._stop_live()

    # -- final passes ------------------------------------------------------------------

    def _uses_final_pass(self) -> bool:
        return self._pool.model is not None and len(self._audio) < _MAX_KEPT_BYTES

    def _submit_final_pass(self) -> asyncio.Future[_Outcome]:
        if not self._audio:
            future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
            future.set_result(_Outcome(Recognition("", 0.0), self._pool.cmn_init))
            return future
        audio = bytes(self._audio)
        sid = self._hand_over_live()
        _count_pass("started")
        try:
            work = decode_process().submit(
                _final_pass_job, self._pool.key, audio, self._refine, self._cmn, self._line, sid
            )
        except Exception as exc:  # the decoder process cannot be started: finish() says so
            failed: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
            failed.set_exception(ProviderError(f"pocketsphinx: no decoder process: {exc}"))
            return failed
        if sid:
            # Behind the pass's last feed and (in the other queue) this final job: it ends
            # a live pass a late first feed opened, or the one a withdrawn final job left.
            with contextlib.suppress(Exception):
                decode_process().post(_live_drop_job, sid, live=True)
        return asyncio.wrap_future(work)

    def _hand_over_live(self) -> int:
        """The live pass the final pass is to end (0: none; it decodes from the start).

        The live pass stops here. The final job decodes whatever the pass has not reached
        when it runs (it knows how much the pass took): feeds still queued behind it then
        find the pass ended, and a submitted one (interims) still queued is withdrawn.
        """
        handing = self._live_final and self._live_on and self._live_remote
        self._live_final = False  # once: a later final job decodes from the start
        if not handing:
            return 0
        sid, job = self._sid, self._live_job
        self._live_on = self._live_remote = False
        self._live_pending = bytearray()
        self._live_job = None
        if job is not None:
            job.cancel()  # _live_done ignores it: no longer this stream's job
        return sid

    def _learn_from(self, early: asyncio.Future[_Outcome] | None) -> None:
        """Keep the mean of a pass that is done and found a phrase."""
        if early is None or not early.done() or early.cancelled() or early.exception():
            return
        if early.result().recognition.text:
            self._cmn = early.result().cmn

    def _drop_early(self) -> None:
        if self._early is not None:
            _count_pass("dropped")
            self._early.cancel()  # withdrawn if queued, stopped at its next slice if running
            self._early.add_done_callback(_consume)
        self._early = None

    async def _choose(self, sentences: tuple[str, ...]) -> Recognition:
        self._stop_live()
        early, self._early = self._early, None
        if not self._audio or self._pool.model is None:
            self._drop_early()
            return Recognition(text="", confidence=0.0)
        cmn: str | None = None
        if early is not None and early.done() and not early.cancelled():
            if early.exception() is None:
                cmn = early.result().cmn
                self._learn_from(early)
        elif early is not None:
            self._early = early
            self._drop_early()
        grammar = "#JSGF V1.0;\ngrammar choice;\npublic <utterance> = "
        grammar += " | ".join(f"( {c} )" for c in sentences) + ";\n"
        work = decode_process().submit(
            _choice_pass_job, self._pool.key, bytes(self._audio), cmn, grammar, self._line
        )
        text = await asyncio.wrap_future(work)
        self._partial = text
        return Recognition(text, _CONFIDENCE_GRAMMAR if text else 0.0, _SOURCE)

    # -- the live pass -----------------------------------------------------------------

    def _start_live(self) -> None:
        self._live_on = True
        self._sid = next(_LIVE_IDS)
        self._live_pending = bytearray(self._audio)
        self._pump_live()

    def _pump_live(self, *, flush: bool = False) -> None:
        """Hand the pending audio to a live job, unless one is in flight (loop side)."""
        if self._live_job is not None or self._live_error is not None:
            return
        # Only for the final pass: 200 ms a job, and no decoding from an unknown mean.
        final_only = not self._interims_read and self._uses_final_pass()
        batch = (_LIVE_BATCH_SLICES if final_only else 1) * _SLICE_BYTES
        size = len(self._live_pending) if flush else len(self._live_pending) // batch * batch
        if not size:
            return
        chunk = bytes(self._live_pending[:size])
        del self._live_pending[:size]
        first, self._live_remote = not self._live_remote, True
        key = self._pool.key if first else ()  # the decoder process keeps the pass's pool
        args = (self._sid, key, chunk, first, self._cmn, self._line, final_only)
        try:
            if final_only:
                # Nobody reads the partial: no answer, so no wake-up of this process per
                # job. A failure shows as a final job that finds no live pass to end.
                decode_process().post(_live_feed_job, *args, live=True)
                return
            work = decode_process().submit(_live_feed_job, *args, live=True)
        except Exception as exc:  # the decoder process cannot be started
            self._live_error = exc
            return
        self._live_job = asyncio.wrap_future(work)
        self._live_job.add_done_callback(self._live_done)

    def _live_done(self, job: asyncio.Future[str]) -> None:
        if job is not self._live_job:
            return  # handed over to the final pass
        self._live_job = None
        if job.cancelled():
            self._live_error = ProviderError("pocketsphinx: live decoding was cancelled")
        elif job.exception() is not None:
            self._live_error = job.exception()
        else:
            self._partial = job.result()
        if self._live_on and not self._cancelled:
            self._pump_live()
        else:
            self._release_live()

    def _stop_live(self) -> None:
        """End the live pass: its decoder goes back after the job in flight, if any."""
        if not self._live_on:
            return
        self._live_on = False
        self._live_pending = bytearray()
        if self._live_job is None:
            self._release_live()

    def _release_live(self) -> None:
        if self._live_remote:
            self._live_remote = False
            with contextlib.suppress(Exception):  # a dead process holds no decoder
                # Queued with the live slices, so it never overtakes the stream's last one.
                decode_process().post(_live_drop_job, self._sid, live=True)

    async def _finish_live(self) -> Recognition:
        """The live pass's final (generic model, or an utterance too long to keep)."""
        while self._live_job is not None:
            await asyncio.wait({self._live_job})
        self._pump_live(flush=True)
        while self._live_job is not None:
            await asyncio.wait({self._live_job})
        self._live_on = False
        if self._live_error is not None:
            self._release_live()
            raise ProviderError(f"pocketsphinx: {self._live_error}") from self._live_error
        text = ""  # never fed
        if self._live_remote:
            self._live_remote = False
            try:
                ending = decode_process().submit(_live_end_job, self._sid, live=True)
                text = await asyncio.wrap_future(ending)
            except ProviderError:
                raise
            except Exception as exc:  # the decoder process died with the live pass
                raise ProviderError(f"pocketsphinx: the live pass was lost: {exc}") from exc
        self._partial = text
        confidence = _CONFIDENCE_GENERIC if self._pool.model is None else _CONFIDENCE_GRAMMAR
        return Recognition(text, confidence if text else 0.0, _SOURCE)


def _log_failed_warm_up(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("asr: the decoder process could not load the model: %s", future.exception())


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a dropped job's outcome, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


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
        # Idle decoders kept per phrase set in this process. Decoding runs in the decoder
        # process (its pools keep _CHILD_POOL_SIZE); here a pool only builds the one decoder
        # that checks the model at start-up and gives ``cmn_init``.
        pool_size: int = 16,
        # False: the final pass starts from a fresh decoder's cepstral mean and has no
        # trigram fallback (``asr.final: none``): cheaper, worse on telephone audio.
        refine: bool = True,
    ) -> None:
        key = tuple(" ".join(words(phrase)) for phrase in phrases)
        key = tuple(phrase for phrase in dict.fromkeys(key) if phrase)  # order kept, deduped
        self._refine = refine
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
        if self._pool.model is not None:
            # The decoder process builds its own copy of the model: now, not at the first turn.
            warm = decode_process().submit(_warm_job, self._pool.key)
            warm.add_done_callback(_log_failed_warm_up)

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

    async def decoder_process_pool_stats(self) -> DecoderPoolStats:
        """The same, in the decoder process (where live and final passes run)."""
        return await asyncio.wrap_future(decode_process().submit(_pool_stats_job, self._pool.key))

    def pool_stats(self) -> DecoderPoolStats:
        """Decoders of this recognizer's model (shared by recognizers of the same phrases)."""
        return self._pool.stats()

    def start_utterance(self) -> RecognitionStream:
        return self.open_stream()

    def start_utterance_on(self, line: str) -> RecognitionStream:
        """LearnsLines: a new caller starts from the mean the last one on ``line`` left."""
        return self.open_stream(line)

    def open_stream(self, line: str = "") -> PocketsphinxStream:
        """``start_utterance`` with the concrete type (its ``finish`` takes options)."""
        # Cheap: the decoder is borrowed by the first feed, off the event loop.
        return PocketsphinxStream(self._pool, refine=self._refine, line=line)
