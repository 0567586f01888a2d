"""Outgoing audio: exact chunk timing in every format, and the interruption fast lane."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.audio.conversion import SoxrAudioCodecs
from engine.audio.formats import AudioEncoding, AudioFormat
from engine.runtime import events as ev
from engine.runtime.audio_out import AUDIO_CHUNK_MS, OutputChunker
from engine.runtime.outbox import Outbox
from engine.runtime.session import Session, SessionManager, SessionRequest
from tests.helpers.fakes import FakeControlPlane, FakeProviders, MemoryHistory

SYNTH_RATE = 22_050  # espeak's rate: resampled to every client rate
FORMATS = [
    AudioFormat(AudioEncoding.LINEAR16, 8_000),
    AudioFormat(AudioEncoding.LINEAR16, 16_000),
    AudioFormat(AudioEncoding.LINEAR16, 24_000),
    AudioFormat(AudioEncoding.LINEAR16, 48_000),
    AudioFormat(AudioEncoding.MULAW, 8_000),
]


def _tone(ms: int, rate: int = SYNTH_RATE) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_chunks_are_even_contiguous_and_timed_exactly_in_the_client_format(
    fmt: AudioFormat,
) -> None:
    chunker = OutputChunker(SoxrAudioCodecs().output_encoder(SYNTH_RATE, fmt))
    chunks = []
    for piece_ms in (67, 13, 250, 31, 9, 400, 1):  # synthesizer pieces of any size
        chunks += chunker.push(_tone(piece_ms))
    chunks += chunker.finish()

    position = 0
    for chunk in chunks:
        assert chunk.offset_ms == position  # no gap, no overlap
        assert len(chunk.data) == fmt.bytes_for_ms(chunk.duration_ms)  # exact length
        position += chunk.duration_ms
    assert {c.duration_ms for c in chunks[:-1]} == {AUDIO_CHUNK_MS}
    assert 0 < chunks[-1].duration_ms <= AUDIO_CHUNK_MS
    assert abs(position - 771) <= 2  # all the audio, give or take the resampler's edge
    assert chunker.sent_ms == position


def _chunk(response_id: str, offset_ms: int) -> ev.AudioChunk:
    return ev.AudioChunk(response_id, b"\x00\x00" * 1600, offset_ms, 100)


async def _drain(outbox: Outbox) -> list[ev.Event]:
    outbox.close()
    return [event async for event in outbox]


async def test_an_interruption_overtakes_only_the_cut_responses_queued_audio() -> None:
    outbox = Outbox()
    transcript = ev.Transcript("u-1", "hi", is_final=True)
    outbox.put(_chunk("r-1", 0))
    outbox.put(_chunk("r-1", 100))
    outbox.put(transcript)
    outbox.put(_chunk("r-1", 200))
    seen: list[list[ev.Event]] = []

    def cut(dropped: list[ev.Event]) -> list[ev.Event]:
        seen.append(dropped)
        return [ev.Interrupted("r-1", 0)]

    outbox.interrupt("r-1", cut)
    assert await _drain(outbox) == [ev.Interrupted("r-1", 0), transcript]
    assert seen == [[_chunk("r-1", 0), _chunk("r-1", 100), _chunk("r-1", 200)]]


async def test_an_interruption_keeps_other_responses_audio_and_queues_behind_it() -> None:
    outbox = Outbox()
    other = _chunk("r-0", 0)
    outbox.put(other)
    outbox.interrupt("r-1", lambda dropped: [ev.Interrupted("r-1", 0)])
    assert await _drain(outbox) == [other, ev.Interrupted("r-1", 0)]


async def _session(**request: Any) -> Session:
    manager = SessionManager(
        FakeControlPlane({"shop": {"id": "shop", "name": "Shop"}}),
        FakeProviders(reply="One two three four. Five six seven eight. Nine ten."),
        MemoryHistory(),
        max_sessions=1,
        audio_lead_ms=3_600_000,  # every chunk is queued at once: nobody paces it
    )
    return await manager.open(SessionRequest("shop", **request))


async def test_a_cut_reply_reports_exactly_the_audio_that_reached_the_client() -> None:
    session = await _session()
    events = aiter(session.events())
    seen: list[ev.Event] = []
    await session.send_text("first")
    # Read up to the reply's first audio; the rest stays queued, unread.
    while not isinstance(event := await anext(events), ev.AudioChunk):
        seen.append(event)
    seen.append(event)
    cut_id = event.response_id
    await session.send_text("second")  # a new turn cuts the reply
    await session.finish_input(10)
    await session.end(ev.EndReason.INPUT_CLOSED)
    seen += [event async for event in events]

    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert [d.status for d in done] == [ev.ResponseStatus.INTERRUPTED, ev.ResponseStatus.COMPLETED]
    assert done[0].response_id == cut_id
    for response in done:
        delivered = [
            e
            for e in seen
            if isinstance(e, ev.AudioChunk) and e.response_id == response.response_id
        ]
        assert response.audio_ms == sum(c.duration_ms for c in delivered) > 0
    interrupted = next(e for e in seen if isinstance(e, ev.Interrupted))
    # Nothing of the cut reply reaches the client after `interrupted`.
    after = seen[seen.index(interrupted) :]
    assert not [e for e in after if isinstance(e, ev.AudioChunk) and e.response_id == cut_id]
    assert interrupted.heard_ms <= done[0].audio_ms
