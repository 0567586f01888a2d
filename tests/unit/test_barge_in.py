"""Barge-in decisions: noise resumes the reply, acknowledgements leave it alone, words cut it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from engine.runtime import events as ev
from engine.runtime.assistant import (
    AssistantConfig,
    AssistantConfigError,
    InterruptionSettings,
    VadSettings,
    parse_assistant,
)
from engine.runtime.barge_in import (
    Action,
    BargeIn,
    BargeInJudge,
    HeldReply,
    Sound,
    unheard_remainder,
)
from engine.runtime.pipeline import DuplexPipeline
from engine.runtime.ports.providers import ChatMessage, Recognition, ToolSpec

FRAME = b"\x10\x27" * 320  # 20 ms the fake VAD calls speech, with a pitch
NOISE = b"\xf0\xd8" * 320  # 20 ms the fake VAD calls speech, without a pitch
SILENCE = b"\x00\x00" * 320
REPLY = "We are open from noon to ten. We are closed on Mondays. Bookings are welcome."

# --- the judge ---------------------------------------------------------------------------

JUDGE = BargeInJudge(InterruptionSettings(min_speech_ms=300, backchannel_max_ms=900))


@pytest.mark.parametrize("text", ["Mm-hmm.", "okay", "Yeah, yeah.", "uh huh okay", "Right!"])
def test_acknowledgements_are_backchannels(text: str) -> None:
    assert JUDGE.sound(text) is Sound.BACKCHANNEL


@pytest.mark.parametrize("text", ["", "uh", "a", "  ah. ", "Shh."])
def test_nothing_or_fillers_are_noise(text: str) -> None:
    assert JUDGE.sound(text) is Sound.NOISE


@pytest.mark.parametrize("text", ["wait", "stop", "no, no", "okay but when do you close", "Oh."])
def test_anything_else_is_words(text: str) -> None:
    assert JUDGE.sound(text) is Sound.WORDS


def test_speech_shorter_than_min_speech_leaves_the_reply_alone() -> None:
    assert JUDGE.during_reply("wait", 200, voiced_ms=200, paused=False) is Action.NONE


def test_words_cut_the_reply() -> None:
    assert JUDGE.during_reply("wait", 300, voiced_ms=300, paused=False) is Action.CUT


def test_a_backchannel_leaves_the_reply_alone_until_it_is_too_long_for_one() -> None:
    assert JUDGE.during_reply("okay", 600, voiced_ms=600, paused=False) is Action.NONE
    assert JUDGE.during_reply("okay", 900, voiced_ms=900, paused=False) is Action.CUT


def test_the_silence_after_a_sound_does_not_make_it_long() -> None:
    assert JUDGE.during_reply("okay", 1200, voiced_ms=400, paused=False) is Action.NONE


def test_noise_cuts_in_cut_mode_and_pauses_in_pause_mode() -> None:
    assert JUDGE.during_reply("", 300, voiced_ms=300, paused=False) is Action.CUT
    pausing = BargeInJudge(InterruptionSettings(mode="pause"))
    assert pausing.during_reply("uh", 300, voiced_ms=300, paused=False) is Action.PAUSE


def test_a_sound_without_a_voice_never_cuts_whatever_it_is_heard_as() -> None:
    for heard in ("", "thank you", "what are"):
        assert JUDGE.during_reply(heard, 300, voiced_ms=300, paused=False, pitched_ms=20) is (
            Action.NONE
        )
    assert JUDGE.during_reply("wait", 2000, voiced_ms=2000, paused=False, pitched_ms=0) is (
        Action.NONE
    )


def test_a_voice_is_judged_by_its_words_as_is_a_sound_whose_pitch_is_unknown() -> None:
    for pitched_ms in (40, None):
        assert JUDGE.during_reply(
            "wait", 300, voiced_ms=300, paused=False, pitched_ms=pitched_ms
        ) is (Action.CUT)
        assert JUDGE.during_reply(
            "okay", 300, voiced_ms=300, paused=False, pitched_ms=pitched_ms
        ) is (Action.NONE)


def test_the_remainder_is_what_follows_the_heard_words() -> None:
    assert unheard_remainder(REPLY, "We are open from") == (
        "noon to ten. We are closed on Mondays. Bookings are welcome."
    )


def test_the_assistant_document_sets_mode_backchannels_and_times() -> None:
    config = parse_assistant(
        {
            "id": "a",
            "interruption": {
                "mode": "pause",
                "backchannels": ["uh huh", "sure"],
                "backchannel_max_ms": 700,
                "resume_after_ms": 800,
            },
        }
    )
    assert config.interruption == InterruptionSettings(
        mode="pause", backchannels=("uh huh", "sure"), backchannel_max_ms=700, resume_after_ms=800
    )


@pytest.mark.parametrize(
    ("interruption", "field"),
    [
        ({"mode": "hold"}, "interruption.mode"),
        ({"backchannels": "okay"}, "interruption.backchannels"),
        ({"backchannels": [""]}, "interruption.backchannels"),
        ({"resume_after_ms": 0}, "interruption.resume_after_ms"),
    ],
)
def test_bad_interruption_settings_name_the_field(interruption: Any, field: str) -> None:
    with pytest.raises(AssistantConfigError) as error:
        parse_assistant({"id": "a", "interruption": interruption})
    assert error.value.field_path == field


# --- the flow, in the caller's audio -------------------------------------------------


class PlayingReply:
    paused_at: float | None = None

    def pause(self) -> None:
        self.paused_at = 0.0

    def unpause(self) -> None:
        self.paused_at = None


class Flow:
    """A BargeIn over one playing reply that records what it did to it."""

    def __init__(self, **interruption: Any) -> None:
        self.playing: PlayingReply | None = PlayingReply()
        self.done: list[str] = []
        settings = InterruptionSettings(min_speech_ms=300, **interruption)
        self.barge_in: BargeIn[str] = BargeIn(
            settings, reply=lambda: self.playing, cut=self._cut, resume=self._resume
        )

    async def _cut(self) -> HeldReply[str]:
        self.playing = None
        self.done.append("cut")
        return HeldReply(
            "r1", "we are open", "from noon", "turn", lambda: self.done.append("confirmed")
        )

    async def _resume(self, held: HeldReply[str]) -> None:
        self.playing = PlayingReply()
        self.done.append(f"resumed {held.remainder}")

    async def speech(
        self, hypothesis: str, until_ms: int, *, heard_lag_ms: int = 0, from_ms: int = 100
    ) -> None:
        """The utterance's frames from ``from_ms`` to ``until_ms``, all voiced, with the
        hypothesis ``heard_lag_ms`` behind them."""
        for ms in range(from_ms, until_ms + 1, 20):
            await self.barge_in.on_speech(
                lambda: hypothesis, ms, ms, ms, heard_ms=max(0, ms - heard_lag_ms)
            )


async def test_the_time_to_yield_words_is_the_callers_audio_not_the_clock() -> None:
    flow = Flow(resume_after_ms=600)
    await flow.speech("", 300)
    assert flow.done == ["cut"]
    await asyncio.sleep(0.7)  # a stalled machine: the clock runs, no audio came
    await flow.speech("", 880, from_ms=320)
    assert flow.done == ["cut"]  # 580 ms of the caller's audio since the cut
    await flow.speech("", 900, from_ms=900)
    assert flow.done == ["cut", "resumed from noon"]


async def test_no_words_counts_only_for_audio_the_hypothesis_has_heard() -> None:
    flow = Flow(resume_after_ms=600, backchannel_max_ms=5000)
    await flow.speech("", 1200, heard_lag_ms=400)  # a recognizer busy elsewhere
    assert flow.done == ["cut"]  # it has heard only 500 ms since the cut
    await flow.speech("where are", 1400, heard_lag_ms=400, from_ms=1220)  # it catches up
    assert flow.done == ["cut"]
    assert await flow.barge_in.on_speech_end("where are you located") is True


async def test_a_long_voice_resumed_for_lack_of_words_is_a_turn_if_its_final_has_words() -> None:
    flow = Flow(resume_after_ms=600, backchannel_max_ms=900)
    await flow.speech("", 1000)  # resumed at 900 ms: the voice went on past 900 ms
    assert flow.done == ["cut", "resumed from noon"]
    assert await flow.barge_in.on_speech_end("where are you located") is True


async def test_a_short_sound_resumed_for_lack_of_words_is_no_turn_whatever_its_final() -> None:
    flow = Flow(resume_after_ms=400, backchannel_max_ms=900)
    await flow.speech("", 700)
    assert flow.done == ["cut", "resumed from noon"]
    assert await flow.barge_in.on_speech_end("and mm") is False  # Whisper's word for a hum


async def test_a_pause_lasts_resume_after_ms_of_the_callers_audio() -> None:
    flow = Flow(resume_after_ms=600, mode="pause", backchannel_max_ms=5000)
    await flow.speech("", 880)
    assert flow.playing is not None and flow.playing.paused_at is not None
    await flow.speech("", 900, from_ms=900)
    assert flow.playing.paused_at is None and flow.done == []


# --- the pipeline ------------------------------------------------------------------------


class ScriptedStream:
    def __init__(self, partial: str, final: str) -> None:
        self._partial = partial
        self._final = final

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return self._partial

    async def finish(self) -> Recognition:
        return Recognition(self._final, 0.9)

    def cancel(self) -> None:
        return None


class EarlyFinalStream(ScriptedStream):
    """Also has an early final (PreparesFinal, ReadsEarlyFinal), done once silence began."""

    def __init__(self, partial: str, final: str, early: str) -> None:
        super().__init__(partial, final)
        self._early = early
        self._silent = False

    def silence_began(self) -> None:
        self._silent = True

    def speech_resumed(self) -> None:
        self._silent = False

    def early_text(self) -> str | None:
        return self._early if self._silent else None

    def early_alternatives(self) -> tuple[str, ...]:
        return ()


class ScriptedSpeech:
    """Each utterance is heard as the next (streaming hypothesis, final[, early final])."""

    line = "LINEAR16/16000"

    def __init__(self, *heard: tuple[str, ...]) -> None:
        self._heard = list(heard)

    def vad(self) -> ScriptedSpeech:
        return self

    frame_bytes = 640

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)

    def has_pitch(self, window: bytes) -> bool:
        return not window.endswith(NOISE[:2])

    def recognizer(self) -> ScriptedSpeech:
        return self

    def turn_detector(self) -> None:
        return None

    def start_utterance(self) -> ScriptedStream:
        heard = self._heard.pop(0)
        return EarlyFinalStream(*heard) if len(heard) == 3 else ScriptedStream(*heard)


class ReplyLlm:
    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str, None]:
        yield REPLY


class ToneTts:
    """400 ms of audio per sentence in 20 ms chunks."""

    sample_rate_hz = 16_000

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        for _ in range(20):
            yield b"\x01\x00" * 320
            await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, role: str, text: str, **kw: Any) -> None:
        self.entries.append({"role": role, "text": text, **kw})


class Call:
    def __init__(
        self, *heard: tuple[str, ...], end_silence_ms: int = 200, **interruption: Any
    ) -> None:
        settings = InterruptionSettings(min_speech_ms=100, **interruption)
        config = AssistantConfig(
            id="t",
            name="t",
            vad=VadSettings(min_speech_ms=60, end_silence_ms=end_silence_ms),
            interruption=settings,
        )
        self.events: list[ev.Event] = []
        self.recorder = Recorder()
        self._arrived: asyncio.Queue[ev.Event] = asyncio.Queue()
        self.pipeline = DuplexPipeline(
            config,
            llm=ReplyLlm(),
            synthesizer=ToneTts(),
            speech=ScriptedSpeech(*heard),
            recorder=self.recorder,
            emit=self._emit,
            audio_lead_ms=200,
        )

    async def _emit(self, event: ev.Event) -> None:
        self.events.append(event)
        self._arrived.put_nowait(event)

    async def wait_for(self, kind: type[ev.Event]) -> Any:
        async with asyncio.timeout(10):
            while True:
                event = await self._arrived.get()
                if isinstance(event, kind):
                    return event

    async def reply_playing(self) -> None:
        await self.pipeline.user_text("when are you open")
        await self.wait_for(ev.AudioChunk)

    async def sound(self, frames: int, then_silence: int = 12, *, frame: bytes = FRAME) -> None:
        for piece in [frame] * frames + [SILENCE] * then_silence:
            await self.pipeline.user_audio(piece)

    def of(self, kind: type[ev.Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def assistant_entries(self) -> list[dict[str, Any]]:
        return [e for e in self.recorder.entries if e["role"] == "assistant"]


async def test_a_noise_cuts_the_reply_then_it_resumes_from_what_was_not_heard() -> None:
    call = Call(("", ""))
    await call.reply_playing()
    await call.sound(frames=15)
    interrupted = await call.wait_for(ev.Interrupted)
    resumed = await call.wait_for(ev.ResponseResumed)
    assert resumed.resumed_response_id == interrupted.response_id
    assert join(resumed.heard_text, resumed.resumed_from_text) == REPLY
    assert resumed.resumed_from_text  # something was left to say
    done = await call.wait_for(ev.ResponseDone)
    while done.response_id != resumed.response_id:
        done = await call.wait_for(ev.ResponseDone)
    assert done.status is ev.ResponseStatus.COMPLETED
    assert done.text == resumed.resumed_from_text
    assert [c for c in call.of(ev.AudioChunk) if c.response_id == resumed.response_id]


async def test_a_resumed_reply_is_one_assistant_turn_with_what_was_heard() -> None:
    call = Call(("uh", "a"))  # fillers are no words
    await call.reply_playing()
    await call.sound(frames=15)
    resumed = await call.wait_for(ev.ResponseResumed)
    await call.pipeline.finish_input()
    [entry] = call.assistant_entries()
    assert entry["text"] == join(resumed.heard_text, resumed.resumed_from_text) == REPLY
    assert entry["interrupted"] is False
    assert [e["role"] for e in call.recorder.entries] == ["user", "assistant"]


async def test_a_backchannel_neither_cuts_the_reply_nor_becomes_a_turn() -> None:
    call = Call(("okay", "Okay."))
    await call.reply_playing()
    await call.sound(frames=15)
    await call.pipeline.finish_input()
    assert not call.of(ev.Interrupted) and not call.of(ev.ResponseResumed)
    [done] = call.of(ev.ResponseDone)
    assert done.status is ev.ResponseStatus.COMPLETED
    assert [e["role"] for e in call.recorder.entries] == ["user", "assistant"]


async def test_a_long_acknowledgement_is_no_longer_one() -> None:
    call = Call(("okay", "okay okay okay"), backchannel_max_ms=200)
    await call.reply_playing()
    await call.sound(frames=15)
    assert (await call.wait_for(ev.Interrupted)).response_id


async def test_a_real_interruption_cuts_for_good_and_is_answered() -> None:
    call = Call(("wait", "wait stop"), ("", ""))
    await call.reply_playing()
    await call.sound(frames=15)
    interrupted = await call.wait_for(ev.Interrupted)
    final = await call.wait_for(ev.Transcript)
    while not final.is_final or final.text != "wait stop":
        final = await call.wait_for(ev.Transcript)
    await call.pipeline.finish_input()
    assert not call.of(ev.ResponseResumed)
    after = call.events[call.events.index(interrupted) :]
    assert not [
        e
        for e in after
        if isinstance(e, ev.AudioChunk) and e.response_id == interrupted.response_id
    ]
    cut = call.assistant_entries()[0]
    assert cut["interrupted"] is True and cut["full_text"] == REPLY
    assert [e["text"] for e in call.recorder.entries if e["role"] == "user"][-1] == "wait stop"


async def test_a_wordless_sound_that_goes_on_resumes_the_reply_after_resume_after_ms() -> None:
    call = Call(("", ""), resume_after_ms=0)  # no time at all to yield words
    await call.reply_playing()
    await call.sound(frames=15, then_silence=0)  # the sound is still going on
    await call.wait_for(ev.Interrupted)
    assert (await call.wait_for(ev.ResponseResumed)).resumed_from_text


async def test_in_pause_mode_a_noise_only_pauses_the_reply() -> None:
    call = Call(("", ""), mode="pause")
    await call.reply_playing()
    await call.sound(frames=15)
    await call.pipeline.finish_input()
    assert not call.of(ev.Interrupted) and not call.of(ev.ResponseResumed)
    [done] = call.of(ev.ResponseDone)
    assert done.status is ev.ResponseStatus.COMPLETED and done.heard_text == REPLY


async def test_in_pause_mode_words_cut_the_reply() -> None:
    call = Call(("stop", "stop"), ("", ""), mode="pause")
    await call.reply_playing()
    await call.sound(frames=15)
    await call.wait_for(ev.Interrupted)
    await call.pipeline.finish_input()
    assert not call.of(ev.ResponseResumed)


async def test_an_explicit_interrupt_settles_a_held_reply_as_interrupted() -> None:
    call = Call(("", ""), resume_after_ms=60_000)
    await call.reply_playing()
    await call.sound(frames=15, then_silence=0)
    await call.wait_for(ev.Interrupted)
    await call.pipeline.close()
    [entry] = call.assistant_entries()
    assert entry["interrupted"] is True and not call.of(ev.ResponseResumed)


def join(before: str, after: str) -> str:
    return f"{before} {after}".strip()


async def test_a_sound_resumed_for_lack_of_words_is_no_turn_whatever_its_final() -> None:
    call = Call(("", "what are"), resume_after_ms=0)  # the recognizer's guess at a noise
    await call.reply_playing()
    await call.sound(frames=15)
    await call.wait_for(ev.ResponseResumed)
    await call.pipeline.finish_input()
    assert [e["role"] for e in call.recorder.entries] == ["user", "assistant"]


async def test_a_sound_without_a_voice_leaves_the_reply_alone_and_is_no_turn() -> None:
    call = Call(("what are", "thank you"))  # what a grammar and Whisper make of a cough
    await call.reply_playing()
    await call.sound(frames=15, frame=NOISE)
    await call.pipeline.finish_input()
    assert not call.of(ev.Interrupted) and not call.of(ev.ResponseResumed)
    [done] = call.of(ev.ResponseDone)
    assert done.status is ev.ResponseStatus.COMPLETED and done.heard_text == REPLY
    assert [e["role"] for e in call.recorder.entries] == ["user", "assistant"]


async def test_without_a_reply_a_sound_without_a_voice_is_a_turn_as_before() -> None:
    call = Call(("what are", "thank you"))
    await call.sound(frames=15, frame=NOISE)
    await call.pipeline.finish_input()
    assert [e["text"] for e in call.recorder.entries if e["role"] == "user"] == ["thank you"]


async def test_an_acknowledgement_in_the_early_final_resumes_the_reply_before_the_turn_ends() -> (
    None
):
    # The grammar's streaming hypothesis is phrase words; the early final, "okay".
    call = Call(("what are", "okay", "okay"), resume_after_ms=0, end_silence_ms=1000)
    await call.reply_playing()
    await call.sound(frames=15, then_silence=9)  # paused long enough for the early final
    await call.wait_for(ev.Interrupted)
    resumed = await call.wait_for(ev.ResponseResumed)
    assert not call.of(ev.SpeechStopped)  # resumed while the utterance was still open
    assert resumed.resumed_from_text
