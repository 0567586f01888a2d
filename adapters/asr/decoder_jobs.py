"""The decoder process's jobs and the state they share: pools, live passes, line means
(runs in the decoder process; the engine submits the jobs through DecodeProcess).

A *live pass* decodes a stream's audio as the caller speaks, in 200 ms jobs queued behind
any turn's final. For the grammar final it starts only from a known cepstral mean (the
caller's own or the latest learnt on their kind of line): the final job then decodes only
the tail the live pass has not reached, from the same mean in the same slices, so the
transcript is the one a single pass over the whole utterance gives. Without a known mean
a pass that only serves the final holds its audio until some other caller's pass teaches
the line one, else the final job estimates a mean and decodes the whole utterance.

Live passes are named by a stream id (``sid``) unique in the engine process. Ordering is
by queue: a stream's feeds and its drop job go to the live queue in order; final jobs go
to the turn queue, which runs first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from adapters.asr.decode_process import JobControl
from adapters.asr.decoders import (
    CONFIDENCE_GRAMMAR,
    SOURCE,
    DecoderPool,
    DecoderPools,
    DecoderPoolStats,
    Outcome,
    Stopped,
    choice_pass,
    confirm_pass,
    decode_slices,
    final_pass,
    grammar_text,
    hypothesis,
    start_utterance,
)
from engine.runtime.ports.providers import ProviderError, Recognition

__all__ = ["CHILD_POOL_SIZE", "DecoderJobs", "FinalRequest", "LiveFeed"]

# Idle decoders kept per phrase set. Every caller speaking holds one (their live pass)
# until their final job has run, so after a burst of turns this many may be idle.
CHILD_POOL_SIZE = 64


@dataclass(frozen=True, slots=True)
class LiveFeed:
    """Audio for a stream's live pass (``first``: the feed that opens it)."""

    sid: int
    key: tuple[str, ...]  # the phrase set (sent with the first feed only)
    pcm: bytes
    first: bool
    cmn: str | None  # the caller's own mean, if known
    line: str  # the caller's kind of line ("" if not told)
    final_only: bool  # nobody reads interims (yet): the pass serves the final job


@dataclass(frozen=True, slots=True)
class FinalRequest:
    """A final pass over a whole utterance; ``sid``: the live pass to end instead (0: none)."""

    key: tuple[str, ...]
    audio: bytes
    refine: bool
    cmn: str | None
    line: str
    sid: int
    confirm: bool = False  # confirm a grammar phrase with the phrase trigram (confirm_pass)


@dataclass(slots=True)
class _LivePass:
    """A stream's live pass in the decoder process."""

    pool: DecoderPool
    decoder: Any  # in an utterance; None while its audio is held back
    known_mean: bool  # began from the caller's or the line's mean (not a fresh decoder's)
    mean: str = ""  # the mean it began from
    fed: int = 0  # bytes of the utterance decoded so far
    held: bytearray = field(default_factory=bytearray)  # audio waiting for a known mean


class DecoderJobs:
    """The decoder process's state: decoder pools, live passes by stream id, and the
    latest cepstral mean learnt per (phrase set, kind of line). One per decoder process,
    built there by DecodeProcess; every method is a job and runs on the child's loop."""

    def __init__(self, control: JobControl) -> None:
        self._stopped = control.stopped
        self._pools = DecoderPools(CHILD_POOL_SIZE)
        self._live: dict[int, _LivePass] = {}
        # Live passes a final job ended (or found not begun: their first feed was still
        # queued): until the engine's drop job, queued behind the pass's last feed, their
        # feeds are ignored.
        self._ended: set[int] = set()
        # A new caller's pass starts from the line's mean instead of paying an estimating
        # pass: the mean is the channel's more than the speaker's, and one that does not
        # fit is re-estimated. Kept here, where passes run one after another, so that when
        # many callers start at once only the first pass on a line estimates.
        self._line_means: dict[tuple[tuple[str, ...], str], str] = {}

    # -- jobs ------------------------------------------------------------------------

    def warm(self, key: tuple[str, ...]) -> None:
        """Build the model and one decoder now, before the first turn."""
        self._pools.pool_for(key)

    def pool_stats(self, key: tuple[str, ...]) -> DecoderPoolStats:
        return self._pools.pool_for(key).stats()

    def final(self, request: FinalRequest) -> Outcome:
        """The final pass of an utterance; it ends the stream's live pass, if any.

        A live pass that began from a known mean has decoded a prefix of the audio
        exactly as this pass would: only the rest is decoded. Its grammar finding no path
        means estimating a mean, as without a live pass.
        """
        key, cmn = request.key, request.cmn
        live = None
        if request.sid:
            live = self._live.pop(request.sid, None)
            self._ended.add(request.sid)  # its feeds still queued are not decoded
        if request.refine:
            cmn = self._line_mean(key, request.line, cmn)
        outcome: Outcome | None = None
        if live is not None:
            outcome = self._end_live_pass(live, request.audio, request.refine)
            if outcome is not None and not outcome.recognition.text:
                cmn = None  # the carried mean found no path: estimate one
                outcome = None
        pool = self._pools.pool_for(key)
        if outcome is None:
            outcome = final_pass(pool, request.audio, request.refine, cmn, self._stopped)
        if request.line and request.refine and outcome.recognition.text:
            self._line_means[key, request.line] = outcome.cmn
        if request.confirm:
            outcome = confirm_pass(pool, outcome, request.audio, self._stopped)
        return outcome

    def choice(
        self, key: tuple[str, ...], audio: bytes, cmn: str | None, grammar: str, line: str
    ) -> str:
        """Which of a few sentences the utterance fits ("" if none)."""
        mean = self._line_mean(key, line, cmn)
        return choice_pass(self._pools.pool_for(key), audio, mean, grammar, self._stopped)

    def live_feed(self, feed: LiveFeed) -> str:
        """Decode a feed on the stream's live pass (opened by its first feed); the partial."""
        if feed.sid in self._ended:
            return ""
        live = self._live.get(feed.sid)
        if live is None:
            if not feed.first:  # this process started after the pass began: audio lost
                raise ProviderError("pocketsphinx: the live pass was lost with a decoder process")
            pool = self._pools.pool_for(feed.key)
            live = self._live[feed.sid] = _LivePass(pool, decoder=None, known_mean=False)
        pcm = feed.pcm
        if live.decoder is None:
            live.held += pcm
            # A domain utterance starts from the caller's (or the line's) mean, else the
            # initial one; a mean another caller's pass taught the line since the first
            # feed counts too.
            known = self._line_mean(live.pool.key, feed.line, feed.cmn)
            if feed.final_only and known is None:
                return ""
            live.known_mean = known is not None
            live.mean = known or live.pool.cmn_init
            live.decoder = _start_live_decoder(live.pool, live.mean)
            pcm, live.held = bytes(live.held), bytearray()
        try:
            live.fed += decode_slices(live.pool, live.decoder, pcm, live.fed, self._stopped)
        except RuntimeError as exc:
            del self._live[feed.sid]
            live.pool.release(live.decoder, reusable=False)
            raise ProviderError(f"pocketsphinx: process_raw failed: {exc}") from exc
        return hypothesis(live.decoder)

    def live_end(self, sid: int) -> str:
        """End the live utterance: its final hypothesis ("" if it never started)."""
        live = self._live.pop(sid, None)
        if live is None or live.decoder is None:
            return ""
        return _close_live(live)[0]

    def live_drop(self, sid: int) -> None:
        """Forget a stream's live pass (queued behind its last feed)."""
        self._ended.discard(sid)
        live = self._live.pop(sid, None)
        if live is not None and live.decoder is not None:
            with contextlib.suppress(ProviderError):  # a broken decoder is not kept
                _close_live(live)

    # -- helpers ---------------------------------------------------------------------

    def _line_mean(self, key: tuple[str, ...], line: str, cmn: str | None) -> str | None:
        """The caller's own mean, else the line's latest (None: estimate one)."""
        return cmn if cmn is not None or not line else self._line_means.get((key, line))

    def _end_live_pass(self, live: _LivePass, audio: bytes, refine: bool) -> Outcome | None:
        """Decode the rest of ``audio`` on a live pass and end it (None: it cannot serve).

        It serves a grammar final when it began from a known mean and has decoded a
        prefix of ``audio``; else it is ended unused.
        """
        if live.decoder is None:
            return None  # held back: nothing decoded yet
        usable = live.pool.model is not None and refine and live.known_mean
        usable = usable and live.fed <= len(audio)
        try:
            rest = audio[live.fed :] if usable else b""
            if decode_slices(live.pool, live.decoder, rest, live.fed, self._stopped) < len(rest):
                raise Stopped
        except Stopped:
            with contextlib.suppress(ProviderError):
                _close_live(live)
            raise
        except RuntimeError as exc:
            live.pool.release(live.decoder, reusable=False)
            raise ProviderError(f"pocketsphinx: decoding failed: {exc}") from exc
        text, learnt = _close_live(live)
        if not usable:
            return None
        text = grammar_text(live.pool.model, text)
        recognition = Recognition(text, CONFIDENCE_GRAMMAR if text else 0.0, SOURCE)
        mean = live.mean if text else ""
        return Outcome(recognition, learnt if text else "", True, grammar_mean=mean)


def _start_live_decoder(pool: DecoderPool, mean: str) -> Any:
    decoder = pool.acquire()
    try:
        if pool.model is not None and mean:
            decoder.set_cmn(mean)
        start_utterance(decoder)
    except RuntimeError as exc:
        pool.release(decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: start_utt failed: {exc}") from exc
    return decoder


def _close_live(live: _LivePass) -> tuple[str, str]:
    """End a live pass's utterance and return its decoder: (hypothesis, mean learnt)."""
    try:
        live.decoder.end_utt()  # a decoder must be idle to start its next utterance
        text, mean = hypothesis(live.decoder), str(live.decoder.get_cmn(False))
    except RuntimeError as exc:
        live.pool.release(live.decoder, reusable=False)
        raise ProviderError(f"pocketsphinx: end_utt failed: {exc}") from exc
    live.pool.release(live.decoder, reusable=True)
    return text, mean
