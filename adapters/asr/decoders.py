"""pocketsphinx decoders: building, pooling and the passes over a whole utterance (decoder
process; the engine loop builds one decoder per model at start-up to check the model).

Domain model (see adapters/asr/domain_model.py): a JSGF grammar accepting exactly one of
the assistant's phrases is the primary search, the phrase trigram the last resort when the
grammar finds no path (near-misses, prefixes, several phrases in one breath), and a
one-word grammar a cheap pass that only runs the front end to estimate the utterance's
cepstral mean (CMN). Domain decoders get dithered input: upsampled 8 kHz telephone audio
has empty bands above 4 kHz whose log energies otherwise swamp the features. The dither
is ours, a fixed pattern by sample position in the utterance, not pocketsphinx's: its
generator is global to the process and seeded from the clock, so the same audio from the
same mean would decode differently with the load and with what was decoded before.

A job decodes in 100 ms slices and gives up between two when it is withdrawn
(``stopped``). Decoders are costly to build (~20 ms of CPU, ~8 MiB), so they are lent out
one utterance at a time from a pool per phrase set and kept for the next one.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from adapters.asr.domain_model import DomainModel, domain_model
from engine.runtime.ports.providers import ProviderError, Recognition

__all__ = [
    "CONFIDENCE_CONFIRMED",
    "CONFIDENCE_GENERIC",
    "CONFIDENCE_GRAMMAR",
    "CONFIDENCE_TRIGRAM",
    "SLICE_BYTES",
    "SOURCE",
    "DecoderPool",
    "DecoderPoolStats",
    "DecoderPools",
    "Outcome",
    "Stopped",
    "choice_pass",
    "confirm_pass",
    "decode_slices",
    "final_pass",
    "hypothesis",
    "start_utterance",
]

_T = TypeVar("_T")

# The binding deems resetting the noise statistics unnecessary, as for a decoder that only
# ever hears one stream; a pooled decoder hears a new caller every time (start_utterance).
warnings.filterwarnings("ignore", r"start_stream\(\) is deprecated", DeprecationWarning)

SLICE_BYTES = 3_200  # 100 ms of 16 kHz PCM16: the most audio one process_raw call gets
GRAMMAR_SEARCH = "phrases"
_CMN_SEARCH = "cmn"  # a one-word grammar: a cheap pass that only estimates the mean
_CHOICE_SEARCH = "choice"  # a grammar of a few candidate sentences, set per utterance
_TRIGRAM_SEARCH = "_default"  # the name pocketsphinx gives the LM it is constructed with
# No posterior is available (it needs bestpath, which cost the grammar accuracy), so the
# confidence is a prior per way the text was found.
CONFIDENCE_GRAMMAR, CONFIDENCE_TRIGRAM, CONFIDENCE_GENERIC = 0.9, 0.6, 0.5
CONFIDENCE_CONFIRMED = 0.95  # a grammar phrase the trigram heard word for word too
SOURCE = "grammar"  # Recognition.source of every pocketsphinx final

# Half-bit dither, as pocketsphinx's own (+1 on about one sample in four), from a fixed
# pattern indexed by the sample's position in the utterance.
_DITHER = (np.random.default_rng(1).integers(0, 4, 48_000) == 0).astype(np.int32)
# pocketsphinx's live CMN: a mean that is set counts as _CMN_WIN frames of history, and
# past _CMN_WIN_HWM frames the history is scaled back to _CMN_WIN (cmn_live.c).
_CMN_WIN, _CMN_WIN_HWM, _FRAME_BYTES = 500, 800, 320
_MIN_WORD_FRAMES = 6  # 60 ms: a word of a confirmed phrase is at least this long


@dataclass(frozen=True, slots=True)
class DecoderPoolStats:
    """Decoders of one model: kept idle, lent to utterances, and created in total."""

    idle: int
    in_use: int
    created: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """A final pass's transcript and the utterance's cepstral mean (for a choice pass,
    and for the caller's next utterance)."""

    recognition: Recognition
    cmn: str
    ended_live: bool = False  # it ended the stream's live pass (decoded only the tail)
    # The mean the grammar pass that found the phrase began from ("": not the grammar's).
    grammar_mean: str = ""
    # The phrase trigram, free to put the phrases' words in any order, heard the same.
    confirmed: bool = False


class Stopped(Exception):
    """A pass withdrawn while it ran: the caller spoke again or the utterance ended."""


def _create_decoder(model: DomainModel | None) -> Any:
    """A new Decoder; with a domain model, the grammar is the active search."""
    # bestpath off: its lattice pass held the GIL at the end of every utterance and did
    # not improve accuracy on our test speech. fwdflat stays on for the generic model,
    # which is less accurate without it.
    import pocketsphinx  # the C library loads with the first decoder, not with the engine

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
        )
    decoder.add_jsgf_string(GRAMMAR_SEARCH, model.grammar_jsgf)
    # Any one word of the dictionary will do: this search only runs the front end and
    # a handful of senones while the cepstral mean adapts to the utterance.
    some_word = model.dictionary.split(" ", 1)[0].split("(", 1)[0]
    decoder.add_jsgf_string(
        _CMN_SEARCH, f"#JSGF V1.0;\ngrammar cmn;\npublic <utterance> = {some_word};\n"
    )
    decoder.activate_search(GRAMMAR_SEARCH)
    return decoder


class DecoderPool:
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


class DecoderPools:
    """One pool per phrase set: utterances of every recognizer with the same phrases share
    it; a decoder is only ever lent to one utterance at a time (thread-safe)."""

    def __init__(self, max_idle: int) -> None:
        self._max_idle = max_idle
        self._pools: dict[tuple[str, ...], DecoderPool] = {}
        self._lock = threading.Lock()

    def pool_for(self, key: tuple[str, ...]) -> DecoderPool:
        """The phrase set's pool; the first call builds the model and one decoder (and
        raises if they cannot be built: at start-up, not mid-call)."""
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                model = domain_model(key) if key else None
                pool = self._pools[key] = DecoderPool(key, model, self._max_idle)
        if pool.stats().created == 0:
            pool.release(pool.acquire(), reusable=True)
        return pool


def hypothesis(decoder: Any) -> str:
    """The decoder's best hypothesis so far ("" if none)."""
    found = decoder.hyp()
    return str(found.hypstr).strip() if found is not None else ""


def grammar_text(model: DomainModel | None, text: str) -> str:
    """A grammar pass's hypothesis, "" when it is no whole phrase (the search found no path)."""
    return text if model is None or not text or model.grammar_accepts(text) else ""


def dithered(pcm: bytes, offset: int) -> bytes:
    """``pcm`` (PCM16) with the dither due at byte ``offset`` of its utterance."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    positions = np.arange(offset // 2, offset // 2 + len(samples)) % len(_DITHER)
    out: bytes = np.minimum(samples + _DITHER[positions], 32767).astype(np.int16).tobytes()
    return out


def start_utterance(decoder: Any) -> None:
    """Start an utterance that owes nothing to the decoder's earlier ones but its mean.

    The front end's noise estimate would otherwise carry over from whatever utterance,
    of whichever caller, the pooled decoder decoded last.
    """
    decoder.start_stream()
    decoder.start_utt()


def decode_slices(
    pool: DecoderPool,
    decoder: Any,
    audio: bytes,
    offset: int,
    stopped: Callable[[], bool],
) -> int:
    """Feed ``audio`` (from byte ``offset`` of the utterance) in 100 ms slices; the bytes
    fed, fewer than ``audio`` when the job was withdrawn between two slices."""
    fed = 0
    for start in range(0, len(audio), SLICE_BYTES):
        if stopped():
            break
        piece = audio[start : start + SLICE_BYTES]
        if pool.model is not None:
            piece = dithered(piece, offset + start)
        decoder.process_raw(piece, False, False)
        fed += len(piece)
    return fed


def _decode(
    pool: DecoderPool, decoder: Any, search: str, audio: bytes, stopped: Callable[[], bool]
) -> str:
    """One utterance of ``audio`` on ``search`` in 100 ms slices; its hypothesis."""
    decoder.activate_search(search)
    start_utterance(decoder)
    try:
        if decode_slices(pool, decoder, audio, 0, stopped) < len(audio):
            raise Stopped
    finally:
        decoder.end_utt()
    return hypothesis(decoder)


def _utterance_mean(
    pool: DecoderPool, decoder: Any, audio: bytes, stopped: Callable[[], bool]
) -> str:
    """The cepstral mean of ``audio`` itself, from one pass of the front end.

    The live mean after a pass still weighs the mean it started from as _CMN_WIN frames,
    more than a short utterance has (a 3 s question ends a third of the way to its own
    mean). What the utterance contributed is solved for, following pocketsphinx's window.
    """
    decoder.set_cmn(pool.cmn_init)
    _decode(pool, decoder, _CMN_SEARCH, audio, stopped)
    start = [float(v) for v in pool.cmn_init.split(",")]
    ended = [float(v) for v in str(decoder.get_cmn(False)).split(",")]
    prior, frames = float(_CMN_WIN), float(_CMN_WIN)
    for begin in range(0, len(audio), SLICE_BYTES):
        frames += min(SLICE_BYTES, len(audio) - begin) / _FRAME_BYTES
        if frames > _CMN_WIN_HWM:
            prior, frames = prior * _CMN_WIN / frames, float(_CMN_WIN)
    if frames <= prior:
        return str(decoder.get_cmn(False))
    own = ((frames * e - prior * s) / (frames - prior) for s, e in zip(start, ended, strict=True))
    return ",".join(f"{v:.4f}" for v in own)


def _borrowed(pool: DecoderPool, job: Callable[[Any], _T]) -> _T:
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
            decoder.activate_search(GRAMMAR_SEARCH)
        pool.release(decoder, reusable)


def final_pass(
    pool: DecoderPool,
    audio: bytes,
    refine: bool,
    cmn: str | None,
    stopped: Callable[[], bool],
) -> Outcome:
    """The final transcript of a whole utterance with the domain model.

    ``cmn``: a mean known for this caller or line; the pass starts from it instead of
    estimating one first (a third less CPU). If the grammar then finds no path the mean
    is estimated from this utterance after all. ``refine`` False: from a fresh decoder's
    mean, and no trigram fallback.
    """

    def estimate(decoder: Any) -> str:
        return _utterance_mean(pool, decoder, audio, stopped)

    def run(decoder: Any) -> Outcome:
        mean = pool.cmn_init
        if refine:
            mean = cmn if cmn else estimate(decoder)
        decoder.set_cmn(mean)
        text = grammar_text(pool.model, _decode(pool, decoder, GRAMMAR_SEARCH, audio, stopped))
        confidence = CONFIDENCE_GRAMMAR
        learnt = str(decoder.get_cmn(False)) if text else ""
        if not text and refine and cmn:
            mean = estimate(decoder)  # the carried mean did not fit (another line?)
            decoder.set_cmn(mean)
            text = grammar_text(pool.model, _decode(pool, decoder, GRAMMAR_SEARCH, audio, stopped))
            learnt = str(decoder.get_cmn(False)) if text else ""
        grammar_mean = mean if text else ""
        if not text and refine:
            # The grammar found no path: the phrase trigram still gives near-misses,
            # prefixes and several phrases in one breath a transcript.
            decoder.set_cmn(mean)
            text = _decode(pool, decoder, _TRIGRAM_SEARCH, audio, stopped)
            confidence = CONFIDENCE_TRIGRAM
        recognition = Recognition(text, confidence if text else 0.0, SOURCE)
        return Outcome(recognition, learnt or mean, grammar_mean=grammar_mean)

    return _borrowed(pool, run)


def confirm_pass(
    pool: DecoderPool, outcome: Outcome, audio: bytes, stopped: Callable[[], bool]
) -> Outcome:
    """``outcome`` confirmed when the phrase trigram hears its grammar phrase word for word.

    The grammar can only answer with a listed phrase, the nearest one to whatever was
    said; the trigram may put the phrases' words in any order. When both, from the same
    mean, hear the same phrase, the caller said it (on the accuracy clips: 31 of 40 listed
    phrases agreed, all right; none of 64 other questions did).
    """
    if not outcome.grammar_mean:
        return outcome

    def run(decoder: Any) -> Outcome:
        decoder.set_cmn(outcome.grammar_mean)
        heard = _decode(pool, decoder, _TRIGRAM_SEARCH, audio, stopped)
        if heard != outcome.recognition.text or _has_too_short_word(decoder):
            return outcome
        sure = Recognition(heard, CONFIDENCE_CONFIRMED, SOURCE)
        return dataclasses.replace(outcome, recognition=sure, confirmed=True)

    return _borrowed(pool, run)


def _has_too_short_word(decoder: Any) -> bool:
    """A word of the decoder's last hypothesis is shorter than anyone says it.

    Both searches can squeeze a short phrase into a short sound: an "mm hmm" on an 8 kHz
    line came out as "when are you open" with "are" 40 ms long. Spoken phrases' shortest
    words ("a", "to") took 80 ms and more on the accuracy clips.
    """
    for segment in decoder.seg():
        if segment.word.startswith(("<", "[")):
            continue  # silence and fillers
        if segment.end_frame - segment.start_frame + 1 < _MIN_WORD_FRAMES:
            return True
    return False


def choice_pass(
    pool: DecoderPool, audio: bytes, cmn: str | None, grammar: str, stopped: Callable[[], bool]
) -> str:
    """Which of a few sentences (``grammar``) the audio fits, "" if none."""

    def run(decoder: Any) -> str:
        mean = cmn if cmn is not None else _utterance_mean(pool, decoder, audio, stopped)
        decoder.add_jsgf_string(_CHOICE_SEARCH, grammar)
        decoder.set_cmn(mean)
        return _decode(pool, decoder, _CHOICE_SEARCH, audio, stopped)

    return _borrowed(pool, run)
