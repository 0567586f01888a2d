"""The decoder process's jobs as the engine loop calls them (engine event loop side).

:class:`DecoderClient` is the interface a pocketsphinx stream uses: each method queues one
job in the decoder process (``submit``: its answer comes back as a future; ``post``: no
answer, so the engine is not woken for it). Tests hand a stream a fake with the same
methods. :class:`ProcessDecoderClient` is the real one over a :class:`DecodeProcess`.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from adapters.asr.decode_process import DecodeProcess
from adapters.asr.decoder_jobs import DecoderJobs, FinalRequest, LiveFeed
from adapters.asr.decoders import DecoderPoolStats, Outcome

__all__ = ["DecoderClient", "ProcessDecoderClient"]


class DecoderClient(Protocol):
    """The decoder process, as a stream submits and posts its jobs."""

    def final(self, request: FinalRequest) -> Future[Outcome]:
        """A final pass (turn queue: before any live feed)."""
        ...

    def choice(
        self, key: tuple[str, ...], audio: bytes, cmn: str | None, grammar: str, line: str
    ) -> Future[str]:
        """Which of a few sentences the utterance fits (turn queue)."""
        ...

    def feed_live(self, feed: LiveFeed) -> Future[str]:
        """Decode audio on a live pass and answer with its partial (live queue)."""
        ...

    def post_live(self, feed: LiveFeed) -> None:
        """The same with no answer (live queue)."""
        ...

    def end_live(self, sid: int) -> Future[str]:
        """End a live pass: its final hypothesis (live queue)."""
        ...

    def drop_live(self, sid: int) -> None:
        """Forget a live pass, behind its last feed (live queue; no answer)."""
        ...


class ProcessDecoderClient:
    """DecoderClient over the engine process's decoder process."""

    def __init__(self, process: DecodeProcess) -> None:
        self._process = process

    def final(self, request: FinalRequest) -> Future[Outcome]:
        return self._process.submit(DecoderJobs.final, request)

    def choice(
        self, key: tuple[str, ...], audio: bytes, cmn: str | None, grammar: str, line: str
    ) -> Future[str]:
        return self._process.submit(DecoderJobs.choice, key, audio, cmn, grammar, line)

    def feed_live(self, feed: LiveFeed) -> Future[str]:
        return self._process.submit(DecoderJobs.live_feed, feed, live=True)

    def post_live(self, feed: LiveFeed) -> None:
        self._process.post(DecoderJobs.live_feed, feed, live=True)

    def end_live(self, sid: int) -> Future[str]:
        return self._process.submit(DecoderJobs.live_end, sid, live=True)

    def drop_live(self, sid: int) -> None:
        self._process.post(DecoderJobs.live_drop, sid, live=True)

    def warm(self, key: tuple[str, ...]) -> Future[None]:
        """Build the phrase set's model in the decoder process now, not at the first turn."""
        return self._process.submit(DecoderJobs.warm, key)

    def pool_stats(self, key: tuple[str, ...]) -> Future[DecoderPoolStats]:
        """The phrase set's decoders in the decoder process."""
        return self._process.submit(DecoderJobs.pool_stats, key)
