"""SessionManager and Session through their doors, with in-memory fakes of every port."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime.events import EndReason
from engine.runtime.session import RejectKind, SessionManager, SessionRejected, SessionRequest
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
