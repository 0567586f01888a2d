"""The Converse servicer as a translator: driven directly, with in-memory fakes behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import pytest
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.conversion import SoxrAudioCodecs
from engine.protocol.servicer import ConverseServicer
from engine.runtime.session import SessionManager
from tests.helpers.fakes import FakeControlPlane, FakeProviders, MemoryHistory

REPLY = "Hello there. How can I help?"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class FakeContext:
    """The one ServicerContext method the servicer uses."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)


async def _requests(*messages: pb.ConverseRequest) -> AsyncIterator[pb.ConverseRequest]:
    for message in messages:
        yield message  # then the client half-closes


def _servicer(history: MemoryHistory, **assistant: Any) -> ConverseServicer:
    doc = {"id": "shop", "name": "Shop", **assistant}
    manager = SessionManager(
        FakeControlPlane({"shop": doc}),
        FakeProviders(reply=REPLY),
        history,
        max_sessions=2,
        audio_lead_ms=3_600_000,
        codecs=SoxrAudioCodecs(),
    )
    return ConverseServicer(manager, half_close_timeout_sec=10)


async def _converse(
    servicer: ConverseServicer, *messages: pb.ConverseRequest
) -> list[pb.ConverseResponse]:
    out: list[pb.ConverseResponse] = []
    stream = servicer.Converse(_requests(*messages), FakeContext())  # type: ignore[arg-type]
    async for message in stream:
        out.append(message)
    return out


def _start(**fields: Any) -> pb.ConverseRequest:
    return pb.ConverseRequest(start=pb.StartSession(assistant_id="shop", **fields))


def _kinds(messages: list[pb.ConverseResponse]) -> list[str]:
    return [m.WhichOneof("event") or "" for m in messages]


async def test_start_text_and_half_close_translate_to_a_whole_reply_then_ended() -> None:
    history = MemoryHistory()
    messages = await _converse(
        _servicer(history), _start(), pb.ConverseRequest(text=pb.TextInput(text=" hi "))
    )
    kinds = _kinds(messages)
    assert kinds[0] == "started" and kinds[-1] == "ended"
    assert messages[-1].ended.reason == pb.END_REASON_INPUT_CLOSED
    assert next(m.transcript.text for m in messages if m.HasField("transcript")) == "hi"
    done = next(m.response_done for m in messages if m.HasField("response_done"))
    assert done.status == pb.RESPONSE_STATUS_COMPLETED and done.text.strip() == REPLY
    assert "audio" in kinds
    assert [c.end_reason for c in history.calls] == ["input_closed"]


async def test_anything_before_start_aborts_with_failed_precondition() -> None:
    history = MemoryHistory()
    with pytest.raises(Aborted) as aborted:
        await _converse(_servicer(history), pb.ConverseRequest(text=pb.TextInput(text="hi")))
    assert aborted.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert history.calls == []


async def test_an_unknown_assistant_aborts_with_not_found() -> None:
    history = MemoryHistory()
    request = pb.ConverseRequest(start=pb.StartSession(assistant_id="nobody"))
    with pytest.raises(Aborted) as aborted:
        await _converse(_servicer(history), request)
    assert aborted.value.code == grpc.StatusCode.NOT_FOUND


async def test_invalid_provider_options_abort_and_open_no_call() -> None:
    history = MemoryHistory()
    with pytest.raises(Aborted) as aborted:
        await _converse(_servicer(history, tts={"provider": "broken"}), _start())
    assert aborted.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert history.calls == []


async def test_an_odd_sized_audio_chunk_ends_the_session_then_aborts() -> None:
    history = MemoryHistory()
    servicer = _servicer(history)
    stream = servicer.Converse(
        _requests(_start(), pb.ConverseRequest(audio=pb.AudioInput(data=b"\x00" * 3))),
        FakeContext(),  # type: ignore[arg-type]
    )
    seen: list[pb.ConverseResponse] = []
    with pytest.raises(Aborted) as aborted:
        async for message in stream:
            seen.append(message)
    assert aborted.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert seen[-1].ended.reason == pb.END_REASON_PROTOCOL_ERROR
    assert [c.end_reason for c in history.calls] == ["protocol_error"]


async def test_changing_text_only_mid_session_is_an_error_event() -> None:
    history = MemoryHistory()
    update = pb.Control(
        action=pb.CONTROL_ACTION_UPDATE_OPTIONS, options=pb.SessionOptions(text_only=True)
    )
    messages = await _converse(_servicer(history), _start(), pb.ConverseRequest(control=update))
    errors = [m.error for m in messages if m.HasField("error")]
    assert [e.code for e in errors] == ["invalid_request"]
    assert "text_only" in errors[0].message
    assert messages[-1].ended.reason == pb.END_REASON_INPUT_CLOSED
