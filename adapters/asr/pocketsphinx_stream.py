"""One utterance of the pocketsphinx recognizer, as a state machine (engine event loop).

The stream keeps the utterance's audio for its final pass and, at the same time, may feed
it to a *live pass* in the decoder process (adapters/asr/decoder_jobs.py): the generic
model's only pass; with the phrase grammar, the final pass's first part, decoded while the
caller speaks; interims once ``partial()`` is read; and utterances too long to keep.

Two named states say where it is. :class:`Phase`, the utterance: SPEAKING, SILENT (a final
pass begun early in the end silence, ``silence_began``), FINISHING, CANCELLED.
:class:`Live`, its live pass: OFF, PENDING (started; the decoder process has not seen it
yet), OPEN, FEEDING (an answered feed in flight: interims), STOPPING (stopped with a feed
in flight; dropped when it returns), FAILED (a feed failed; dropped when stopped).

Ordering with the decoder process is by its queues (see DecodeProcess): a final job
overtakes the live feeds still queued and ends the live pass; the drop job queued behind
the last feed forgets it. The public methods never wait for decoding, except ``finish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.asr.decoder_client import DecoderClient
from adapters.asr.decoder_jobs import FinalRequest, LiveFeed
from adapters.asr.decoders import (
    CONFIDENCE_GENERIC,
    CONFIDENCE_GRAMMAR,
    SLICE_BYTES,
    SOURCE,
    Outcome,
)
from engine.runtime.ports.providers import ProviderError, Recognition

__all__ = ["MAX_KEPT_BYTES", "Live", "Phase", "PocketsphinxStream", "StreamSetup"]

_log = logging.getLogger(__name__)

MAX_KEPT_BYTES = 30 * 32_000  # an utterance kept for its final pass: 30 s, ~1 MB
BYTES_PER_MS = 32  # 16 kHz PCM16
# Audio per live job while nobody reads interims: fewer jobs (each a round trip through
# the decoder process) for the same decoding.
_LIVE_BATCH_SLICES = 2


class Phase(enum.Enum):
    """Where the utterance is."""

    SPEAKING = "speaking"  # taking audio
    SILENT = "silent"  # a final pass begun in the end silence runs (audio still taken)
    FINISHING = "finishing"  # finish() was called
    CANCELLED = "cancelled"


class Live(enum.Enum):
    """Where the utterance's live pass is."""

    OFF = "off"  # none: nothing of it in the decoder process
    PENDING = "pending"  # started; its audio waits for a full job; not sent yet
    OPEN = "open"  # sent: the decoder process holds the pass
    FEEDING = "feeding"  # an answered feed (interims) is in flight
    STOPPING = "stopping"  # stopped with a feed in flight: dropped once it returns
    FAILED = "failed"  # a feed failed or could not be sent: dropped when stopped


_TAKES_AUDIO = frozenset({Live.PENDING, Live.OPEN, Live.FEEDING, Live.FAILED})
_SENT = frozenset({Live.OPEN, Live.FEEDING, Live.FAILED})  # the decoder process may hold it


@dataclass(frozen=True, slots=True)
class StreamSetup:
    """What every utterance of one recognizer shares."""

    key: tuple[str, ...]  # the phrase set: names the decoder process's pool
    domain: bool  # a domain model (phrase grammar); False: the generic model
    cmn_init: str  # a fresh decoder's cepstral mean
    refine: bool  # the final pass estimates the mean and falls back to the trigram
    decoder: DecoderClient
    count: Callable[[str], None]  # the runtime's counters (grammar_passes, ...)
    live_ids: Callable[[], int]  # names for live passes, unique in the engine process
    confirm: bool = False  # final passes confirm a grammar phrase with the phrase trigram


class PocketsphinxStream:
    """One utterance: its audio kept for the final job, and a live pass decoding it as it
    comes. Every stream ends with ``finish()`` or ``cancel()``, which free its decoder."""

    def __init__(self, setup: StreamSetup, *, cmn: str | None = None, line: str = "") -> None:
        self._setup = setup
        self._line = line  # the kind of line this caller is on ("" if not told)
        self._cmn = cmn  # this caller's cepstral mean, once a final pass has learnt it
        self._audio = bytearray()  # the utterance so far, up to MAX_KEPT_BYTES
        self._partial = ""
        self.phase = Phase.SPEAKING
        """Where the utterance is (read-only outside the stream)."""
        self._early: asyncio.Future[Outcome] | None = None  # set while SILENT
        self.live = Live.OFF
        """Where its live pass is (read-only outside the stream)."""
        self._sid = 0  # the live pass's name in the decoder process (new for each)
        self._pending = bytearray()  # audio fed, not yet handed to a live job
        self._feed: asyncio.Future[str] | None = None  # while FEEDING or STOPPING
        # Bytes of audio the live pass was given, and of those its partial has heard
        # (everything handed to the decoder process up to the last answered feed).
        self._live_given = 0
        self._live_handed = 0
        self._live_heard = 0
        self._live_error: BaseException | None = None
        self._interims_read = False  # partial() was called: the live pass serves interims
        # The first live pass serves the final (the final job ends it); later ones do not.
        self._hand_over = setup.refine and setup.domain
        self.ended_live_pass = False
        """True once ``finish`` took the final from the live pass (only the tail decoded)."""
        if not setup.domain or self._hand_over:
            self._start_live()

    # -- RecognitionStream -------------------------------------------------------------

    async def feed(self, pcm16k: bytes) -> None:
        if self.phase is Phase.CANCELLED:
            return  # audio racing a barge-in cancel is simply dropped
        if self.phase is Phase.FINISHING:
            raise ProviderError("pocketsphinx: feed after finish")
        if len(self._audio) + len(pcm16k) <= MAX_KEPT_BYTES:
            self._audio += pcm16k
        elif self.live is Live.OFF:
            self._start_live()  # too long to keep: decode it as it comes, final from that
        if self.live in _TAKES_AUDIO:
            self._pending += pcm16k
            self._live_given += len(pcm16k)
            self._pump()

    def partial(self) -> str:
        """The live pass's latest hypothesis; the first call starts the live pass."""
        self._interims_read = True
        # Not while a final job has the live pass: the silence has nothing new to say.
        if self.live is Live.OFF and self.phase is Phase.SPEAKING:
            self._start_live()
        return self._partial

    def partial_lag_ms(self) -> int:
        """TellsPartialLag: audio the live pass was given that its partial has not heard
        (0 without a live pass taking audio: the partial then has nothing more to say)."""
        if self.live not in _TAKES_AUDIO:
            return 0
        return (self._live_given - self._live_heard) // BYTES_PER_MS

    def silence_began(self) -> None:
        """PreparesFinal: start the final pass over the utterance so far."""
        if self.phase is Phase.SPEAKING and self._uses_final_pass():
            self._early = self._submit_final_pass()
            self.phase = Phase.SILENT

    def early_final(self) -> asyncio.Future[Outcome] | None:
        """The final pass begun in the silence, while it covers the utterance (else None).

        ``finish`` takes its result; a reader only looks (and never cancels it).
        """
        return self._early

    def speech_resumed(self) -> None:
        """PreparesFinal: the pass begun in the silence no longer covers the utterance."""
        if self.phase is Phase.SILENT:
            self._drop_early()
            self.phase = Phase.SPEAKING

    async def finish(self, *, choose_between: Sequence[str] = ()) -> Recognition:
        """The final transcript.

        ``choose_between``: instead, decode the utterance with a grammar of exactly these
        sentences (their words must be in the phrases' vocabulary) and return the one the
        audio fits ("" if none).
        """
        if self.phase in (Phase.FINISHING, Phase.CANCELLED):
            raise ProviderError("pocketsphinx: utterance already finished or cancelled")
        self.phase = Phase.FINISHING
        try:
            if choose_between:
                return await self._choose(tuple(choose_between))
            if not self._uses_final_pass():
                return await self._finish_live()
            return await self._finish_final()
        finally:
            self._audio = bytearray()

    def next_utterance(self) -> PocketsphinxStream:
        """ContinuesCaller: the caller's next utterance starts from the mean learnt here."""
        return PocketsphinxStream(self._setup, cmn=self._cmn, line=self._line)

    def cancel(self) -> None:
        if self.phase in (Phase.FINISHING, Phase.CANCELLED):
            return
        self._learn_from(self._early)  # a pass the hybrid did not need still taught us
        self.phase = Phase.CANCELLED
        self._audio = bytearray()
        self._drop_early()
        if self._feed is not None:
            self._feed.cancel()  # withdrawn if still queued; its callback cleans up
        self._stop_live()

    # -- final passes ------------------------------------------------------------------

    def _uses_final_pass(self) -> bool:
        return self._setup.domain and len(self._audio) < MAX_KEPT_BYTES

    async def _finish_final(self) -> Recognition:
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
            self._setup.count("grammar_passes_live")
            self.ended_live_pass = True
        return outcome.recognition

    def _submit_final_pass(self) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        if not self._audio:
            empty: asyncio.Future[Outcome] = loop.create_future()
            empty.set_result(Outcome(Recognition("", 0.0), self._setup.cmn_init))
            return empty
        setup = self._setup
        sid = self._hand_over_live()
        request = FinalRequest(
            setup.key, bytes(self._audio), setup.refine, self._cmn, self._line, sid, setup.confirm
        )
        setup.count("grammar_passes")
        try:
            work = setup.decoder.final(request)
        except Exception as exc:  # the decoder process cannot be started: finish() says so
            failed: asyncio.Future[Outcome] = loop.create_future()
            failed.set_exception(ProviderError(f"pocketsphinx: no decoder process: {exc}"))
            return failed
        if sid:
            # Behind the pass's last feed and (in the other queue) this final job: it ends
            # a live pass a late first feed opened, or the one a withdrawn final job left.
            with contextlib.suppress(Exception):
                setup.decoder.drop_live(sid)
        return asyncio.wrap_future(work)

    def _hand_over_live(self) -> int:
        """The live pass the final pass is to end (0: none; it decodes from the start).

        The live pass stops here. The final job decodes whatever the pass has not reached
        when it runs: feeds still queued behind it then find the pass ended, and an
        answered feed still queued is withdrawn.
        """
        handing = self._hand_over and self.live in _SENT
        self._hand_over = False  # once: a later final job decodes from the start
        if not handing:
            return 0
        feed, self._feed = self._feed, None
        self.live = Live.OFF
        self._pending = bytearray()
        if feed is not None:
            feed.cancel()  # _feed_done ignores it: no longer this stream's feed
        return self._sid

    def _learn_from(self, early: asyncio.Future[Outcome] | None) -> None:
        """Keep the mean of a pass that is done and found a phrase."""
        if early is None or not early.done() or early.cancelled() or early.exception():
            return
        if early.result().recognition.text:
            self._cmn = early.result().cmn

    def _drop_early(self) -> None:
        if self._early is not None:
            self._setup.count("grammar_passes_dropped")
            self._early.cancel()  # withdrawn if queued, stopped at its next slice if running
            self._early.add_done_callback(_consume)
        self._early = None

    async def _choose(self, sentences: tuple[str, ...]) -> Recognition:
        self._stop_live()
        early, self._early = self._early, None
        if not self._audio or not self._setup.domain:
            self._early = early
            self._drop_early()  # not needed: no audio, or no grammar to choose with
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
        setup = self._setup
        work = setup.decoder.choice(setup.key, bytes(self._audio), cmn, grammar, self._line)
        text = await asyncio.wrap_future(work)
        self._partial = text
        return Recognition(text, CONFIDENCE_GRAMMAR if text else 0.0, SOURCE)

    # -- the live pass -----------------------------------------------------------------

    def _start_live(self) -> None:
        self.live = Live.PENDING
        self._live_error = None
        self._sid = self._setup.live_ids()
        self._pending = bytearray(self._audio)
        self._live_given = len(self._pending)
        self._live_handed = self._live_heard = 0
        self._pump()

    def _pump(self, *, flush: bool = False) -> None:
        """Hand the pending audio to a live job, unless one is in flight."""
        if self.live not in (Live.PENDING, Live.OPEN):
            return
        # Only for the final pass: 200 ms a job, and no decoding from an unknown mean.
        final_only = not self._interims_read and self._uses_final_pass()
        batch = (_LIVE_BATCH_SLICES if final_only else 1) * SLICE_BYTES
        size = len(self._pending) if flush else len(self._pending) // batch * batch
        if not size:
            return
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        self._live_handed += size
        first = self.live is Live.PENDING
        key = self._setup.key if first else ()  # the decoder process keeps the pass's pool
        feed = LiveFeed(self._sid, key, chunk, first, self._cmn, self._line, final_only)
        self.live = Live.OPEN
        try:
            if final_only:
                # Nobody reads the partial: no answer, so no wake-up of this process per
                # job. A failure shows as a final job that finds no live pass to end.
                self._setup.decoder.post_live(feed)
                return
            work = self._setup.decoder.feed_live(feed)
        except Exception as exc:  # the decoder process cannot be started
            self._live_error = exc
            self.live = Live.FAILED
            return
        self.live = Live.FEEDING
        self._feed = asyncio.wrap_future(work)
        handed = self._live_handed
        self._feed.add_done_callback(lambda job: self._feed_done(job, handed))

    def _feed_done(self, job: asyncio.Future[str], handed: int) -> None:
        if job is not self._feed:
            return  # handed over to the final pass
        self._feed = None
        if job.cancelled():
            self._live_error = ProviderError("pocketsphinx: live decoding was cancelled")
        elif job.exception() is not None:
            self._live_error = job.exception()
        else:
            self._partial = job.result()
            self._live_heard = handed  # the pass heard everything handed to it so far
        if self.live is Live.STOPPING:
            self._release_live()
        elif self._live_error is not None:
            self.live = Live.FAILED
        else:
            self.live = Live.OPEN
            self._pump()

    def _stop_live(self) -> None:
        """End the live pass: its decoder goes back after the feed in flight, if any."""
        self._pending = bytearray()
        if self.live is Live.FEEDING:
            self.live = Live.STOPPING
        elif self.live is Live.PENDING:
            self.live = Live.OFF  # the decoder process never saw it
        elif self.live in (Live.OPEN, Live.FAILED):
            self._release_live()

    def _release_live(self) -> None:
        self.live = Live.OFF
        with contextlib.suppress(Exception):  # a dead process holds no decoder
            # Queued with the live feeds, so it never overtakes the stream's last one.
            self._setup.decoder.drop_live(self._sid)

    async def _finish_live(self) -> Recognition:
        """The live pass's final (generic model, or an utterance too long to keep)."""
        while self._feed is not None:
            await asyncio.wait({self._feed})
        self._pump(flush=True)
        while self._feed is not None:
            await asyncio.wait({self._feed})
        if self._live_error is not None:
            self._stop_live()
            raise ProviderError(f"pocketsphinx: {self._live_error}") from self._live_error
        text = ""  # never fed
        if self.live is Live.OPEN:
            self.live = Live.OFF
            try:
                text = await asyncio.wrap_future(self._setup.decoder.end_live(self._sid))
            except ProviderError:
                raise
            except Exception as exc:  # the decoder process died with the live pass
                raise ProviderError(f"pocketsphinx: the live pass was lost: {exc}") from exc
        self.live = Live.OFF
        self._partial = text
        confidence = CONFIDENCE_GRAMMAR if self._setup.domain else CONFIDENCE_GENERIC
        return Recognition(text, confidence if text else 0.0, SOURCE)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a dropped job's outcome, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
