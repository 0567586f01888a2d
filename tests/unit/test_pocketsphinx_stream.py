"""The pocketsphinx stream's state machine, against a fake decoder process (no model, no
process): which jobs it sends when, and what it does with their answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from adapters.asr.decoder_jobs import FinalRequest, LiveFeed
from adapters.asr.decoders import CONFIDENCE_GENERIC, SLICE_BYTES, Outcome
from adapters.asr.pocketsphinx_stream import Live, Phase, PocketsphinxStream, StreamSetup
from adapters.asr.runtime import Counters
from engine.runtime.ports.providers import ProviderError, Recognition

KEY = ("yes please", "no thanks")
BATCH = 2 * SLICE_BYTES  # a live job's audio while nobody reads interims


class FakeDecoderProcess:
    """A DecoderClient that keeps every job; the test answers the submitted ones."""

    def __init__(self) -> None:
        self.finals: list[tuple[FinalRequest, Future[Outcome]]] = []
        self.feeds: list[tuple[LiveFeed, Future[str] | None]] = []  # None: posted
        self.ends: list[tuple[int, Future[str]]] = []
        self.drops: list[int] = []
        self.choices: list[tuple[str, Future[str]]] = []
        self.fail_with: Exception | None = None  # as a process that cannot be started

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def final(self, request: FinalRequest) -> Future[Outcome]:
        self._check()
        future: Future[Outcome] = Future()
        self.finals.append((request, future))
        return future

    def choice(
        self, key: tuple[str, ...], audio: bytes, cmn: str | None, grammar: str, line: str
    ) -> Future[str]:
        self._check()
        future: Future[str] = Future()
        self.choices.append((grammar, future))
        return future

    def feed_live(self, feed: LiveFeed) -> Future[str]:
        self._check()
        future: Future[str] = Future()
        self.feeds.append((feed, future))
        return future

    def post_live(self, feed: LiveFeed) -> None:
        self._check()
        self.feeds.append((feed, None))

    def end_live(self, sid: int) -> Future[str]:
        self._check()
        future: Future[str] = Future()
        self.ends.append((sid, future))
        return future

    def drop_live(self, sid: int) -> None:
        self._check()
        self.drops.append(sid)


def setup(decoder: FakeDecoderProcess, counters: Counters, *, domain: bool = True) -> StreamSetup:
    ids = iter(range(1, 1000))
    return StreamSetup(
        key=KEY if domain else (),
        domain=domain,
        cmn_init="40,3,-1",
        refine=True,
        decoder=decoder,
        count=counters.add,
        live_ids=lambda: next(ids),
    )


@pytest.fixture
def decoder() -> FakeDecoderProcess:
    return FakeDecoderProcess()


@pytest.fixture
def counters() -> Counters:
    return Counters()


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run the futures' callbacks until ``condition`` (bounded, no timing)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the stream did not get there")


def grammar_final(text: str, *, ended_live: bool) -> Outcome:
    return Outcome(Recognition(text, 0.9), cmn="41,2,-1", ended_live=ended_live)


async def test_audio_waits_for_a_full_job_before_the_decoder_process_sees_it(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1")
    await stream.feed(bytes(BATCH - 640))
    assert (stream.live, decoder.feeds) == (Live.PENDING, [])
    await stream.feed(bytes(640))
    assert stream.live is Live.OPEN
    [(feed, answer)] = decoder.feeds
    assert (feed.first, feed.key, feed.final_only, len(feed.pcm), answer) == (
        True,
        KEY,
        True,
        BATCH,
        None,
    )


async def test_the_final_job_ends_the_live_pass_and_takes_its_transcript(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1", line="MULAW/8000")
    await stream.feed(bytes(2 * BATCH))
    stream.silence_began()
    assert (stream.phase, stream.live) == (Phase.SILENT, Live.OFF)
    [(request, answer)] = decoder.finals
    first_feed = decoder.feeds[0][0]
    assert request.sid == first_feed.sid != 0
    assert (request.cmn, request.line, len(request.audio)) == ("41,2,-1", "MULAW/8000", 2 * BATCH)
    assert decoder.drops == [request.sid]  # queued behind the pass's last feed
    answer.set_result(grammar_final("yes please", ended_live=True))
    assert await stream.finish() == Recognition("yes please", 0.9)
    assert stream.ended_live_pass
    counts = counters.snapshot()
    assert (counts["grammar_passes"], counts["grammar_passes_live"]) == (1, 1)


async def test_speech_after_the_silence_began_drops_the_early_pass_and_decodes_it_all(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1")
    await stream.feed(bytes(BATCH))
    stream.silence_began()
    stream.speech_resumed()
    early = decoder.finals[0][1]
    await until(early.cancelled)  # withdrawn from the decoder process
    assert stream.phase is Phase.SPEAKING
    await stream.feed(bytes(BATCH))
    stream.silence_began()
    request, answer = decoder.finals[1]
    assert (request.sid, len(request.audio)) == (0, 2 * BATCH)  # from the start, no live pass
    answer.set_result(grammar_final("no thanks", ended_live=False))
    assert (await stream.finish()).text == "no thanks"
    assert not stream.ended_live_pass
    assert counters.snapshot()["grammar_passes_dropped"] == 1


async def test_interims_are_fed_one_job_at_a_time_and_answered(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1")
    assert stream.partial() == ""
    await stream.feed(bytes(SLICE_BYTES))
    await stream.feed(bytes(SLICE_BYTES))  # waits: a feed is in flight
    assert stream.live is Live.FEEDING
    [(first, answer)] = decoder.feeds
    assert answer is not None and not first.final_only and len(first.pcm) == SLICE_BYTES
    answer.set_result("yes")
    await until(lambda: len(decoder.feeds) == 2)
    assert stream.partial() == "yes"
    second, _ = decoder.feeds[1]
    assert (second.first, second.key, second.sid) == (False, (), first.sid)


async def test_the_partial_tells_how_far_behind_the_audio_it_is(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1")
    stream.partial()
    await stream.feed(bytes(SLICE_BYTES))  # in flight
    await stream.feed(bytes(SLICE_BYTES // 2))  # waits for it
    assert stream.partial_lag_ms() == 150  # nothing answered yet
    [(_, answer)] = decoder.feeds
    assert answer is not None
    answer.set_result("yes")
    await until(lambda: stream.partial() == "yes")
    assert stream.partial_lag_ms() == 50  # the half slice not yet handed on
    await stream.feed(bytes(SLICE_BYTES // 2))
    await until(lambda: len(decoder.feeds) == 2)
    assert stream.partial_lag_ms() == 100
    stream.cancel()
    assert stream.partial_lag_ms() == 0  # no live pass: nothing more will be heard


async def test_a_cancel_with_a_feed_in_flight_drops_the_pass_once_it_returns(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters), cmn="41,2,-1")
    stream.partial()
    await stream.feed(bytes(SLICE_BYTES))
    stream.cancel()
    assert (stream.phase, stream.live) == (Phase.CANCELLED, Live.STOPPING)
    feed, answer = decoder.feeds[0]
    assert answer is not None
    await until(lambda: stream.live is Live.OFF)
    assert decoder.drops == [feed.sid]
    await stream.feed(bytes(SLICE_BYTES))  # late audio after a barge-in is dropped
    assert len(decoder.feeds) == 1


async def test_a_decoder_process_that_cannot_start_fails_the_turn_cleanly(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters))
    await stream.feed(bytes(BATCH))
    decoder.fail_with = OSError("fork: Resource temporarily unavailable")
    stream.silence_began()  # no exception into the speech input's frame loop
    with pytest.raises(ProviderError, match="no decoder process"):
        await stream.finish()


async def test_a_failed_final_pass_is_decoded_once_more(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters))
    await stream.feed(bytes(BATCH))
    stream.silence_began()
    decoder.finals[0][1].set_exception(RuntimeError("the decoder process died"))
    finishing = asyncio.ensure_future(stream.finish())
    await until(lambda: len(decoder.finals) == 2)
    request, answer = decoder.finals[1]
    assert request.sid == 0  # the live pass went with the first job
    answer.set_result(grammar_final("yes please", ended_live=False))
    assert (await finishing).text == "yes please"


async def test_the_generic_models_final_is_its_live_pass(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters, domain=False))
    await stream.feed(bytes(SLICE_BYTES + 640))
    finishing = asyncio.ensure_future(stream.finish())
    for count, partial in ((1, "hell"), (2, "hello")):  # the rest is flushed before the end
        await until(lambda: len(decoder.feeds) == count)  # noqa: B023 - awaited at once
        feed, answer = decoder.feeds[-1]
        assert answer is not None and len(feed.pcm) == (SLICE_BYTES, 640)[count - 1]
        answer.set_result(partial)
    await until(lambda: len(decoder.ends) == 1)
    decoder.ends[0][1].set_result("hello")
    assert await finishing == Recognition("hello", CONFIDENCE_GENERIC, "grammar")
    assert decoder.finals == [] and stream.live is Live.OFF


async def test_a_finished_stream_takes_no_more_audio(
    decoder: FakeDecoderProcess, counters: Counters
) -> None:
    stream = PocketsphinxStream(setup(decoder, counters))
    assert await stream.finish() == Recognition("", 0.0)  # no audio: no job at all
    assert decoder.finals == []
    with pytest.raises(ProviderError, match="feed after finish"):
        await stream.feed(bytes(640))
    with pytest.raises(ProviderError, match="already finished"):
        await stream.finish()
