"""SessionManager and Session through their doors, with in-memory fakes of every port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.runtime import events as ev
from engine.runtime.events import EndReason
from engine.runtime.session import (
    RejectKind,
    Session,
    SessionManager,
    SessionRejected,
    SessionRequest,
)
from tests.helpers.fakes import FakeControlPlane, FakeProviders, MemoryHistory


def _assistant(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "shop", "name": "Shop"}
    doc.update(changes)
    return doc


def _manager(history: MemoryHistory, **assistants: dict[str, Any]) -> SessionManager:
    return SessionManager(FakeControlPlane(assistants), FakeProviders(), history, max_sessions=4)


async def test_a_start_rejected_for_invalid_provider_options_opens_no_call() -> None:
    history = MemoryHistory()
    manager = _manager(history, shop=_assistant(tts={"provider": "broken"}))
    for _ in range(3):
        with pytest.raises(SessionRejected) as rejected:
            await manager.open(SessionRequest("shop"))
        assert rejected.value.kind is RejectKind.FAILED_PRECONDITION
        assert "tts.provider" in rejected.value.message
    assert history.calls == []
    assert manager.live_sessions == 0


async def test_a_broken_language_model_is_rejected_before_the_call_is_opened() -> None:
    history = MemoryHistory()
    manager = _manager(history, shop=_assistant(llm={"provider": "broken"}))
    with pytest.raises(SessionRejected):
        await manager.open(SessionRequest("shop"))
    assert history.calls == []


async def test_invalid_speech_options_reject_a_voice_start_before_the_call_is_opened() -> None:
    history = MemoryHistory()
    manager = _manager(history, shop=_assistant(asr={"provider": "broken"}))
    with pytest.raises(SessionRejected) as rejected:
        await manager.open(SessionRequest("shop"))
    assert "asr.provider" in rejected.value.message
    assert history.calls == []


async def test_an_accepted_start_opens_exactly_one_call_and_ending_finalizes_it() -> None:
    history = MemoryHistory()
    manager = _manager(history, shop=_assistant())
    session = await manager.open(SessionRequest("shop", metadata={"k": "v"}))
    assert [c.record_.call_id for c in history.calls] == [session.call_id]
    assert history.calls[0].record_.metadata == {"k": "v"}
    await session.end(EndReason.CLIENT_ENDED)
    manager.release(session)
    assert history.calls[0].end_reason == "client_ended"
    assert manager.live_sessions == 0


async def test_an_unknown_assistant_is_not_found_and_opens_no_call() -> None:
    history = MemoryHistory()
    manager = _manager(history)
    with pytest.raises(SessionRejected) as rejected:
        await manager.open(SessionRequest("nobody"))
    assert rejected.value.kind is RejectKind.NOT_FOUND
    assert history.calls == []


SPEECH_20MS = b"\x10\x27" * 320  # 20 ms of 16 kHz PCM16 the fake VAD calls speech


async def _voice_session(history: MemoryHistory, end_silence_ms: int) -> Session:
    manager = _manager(
        history, shop=_assistant(vad={"end_silence_ms": end_silence_ms, "min_speech_ms": 60})
    )
    return await manager.open(SessionRequest("shop"))


async def test_an_utterance_left_open_is_ended_by_the_clock() -> None:
    history = MemoryHistory()
    session = await _voice_session(history, end_silence_ms=200)
    events = aiter(session.events())
    for _ in range(20):  # 400 ms of speech, then nothing at all
        await session.feed_audio(SPEECH_20MS)
    async with asyncio.timeout(10):
        while not isinstance(event := await anext(events), ev.Transcript) or not event.is_final:
            pass
    assert event.text == "hello"
    await session.end(EndReason.CLIENT_ENDED)
    assert history.calls[0].entries[0]["role"] == "user"


async def test_finishing_input_ends_the_open_utterance_and_answers_it() -> None:
    history = MemoryHistory()
    session = await _voice_session(history, end_silence_ms=10_000)
    for _ in range(20):
        await session.feed_audio(SPEECH_20MS)
    await session.finish_input(10)
    await session.end(EndReason.INPUT_CLOSED)
    seen = [event async for event in session.events()]
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert [d.status for d in done] == [ev.ResponseStatus.COMPLETED]
    assert [(e["role"], e["text"].strip()) for e in history.calls[0].entries] == [
        ("user", "hello"),
        ("assistant", "Hello there. How can I help?"),
    ]
    assert history.calls[0].end_reason == "input_closed"


async def test_a_reply_still_running_when_the_half_close_bound_expires_is_cut() -> None:
    history = MemoryHistory()
    manager = SessionManager(
        FakeControlPlane({"shop": _assistant()}),
        FakeProviders(reply="One. Two. Three. Four. Five. Six. Seven. Eight."),
        history,
        max_sessions=1,
        audio_lead_ms=0,  # paced in real time: several seconds of speech
    )
    session = await manager.open(SessionRequest("shop"))
    await session.send_text("talk")
    await session.finish_input(0.05)
    ended = await session.end(EndReason.INPUT_CLOSED)
    seen = [event async for event in session.events()]
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert [d.status for d in done] == [ev.ResponseStatus.INTERRUPTED]
    assert seen[-1] is ended and ended.reason is EndReason.INPUT_CLOSED
