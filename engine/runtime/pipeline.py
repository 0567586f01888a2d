"""DuplexPipeline: audio in -> VAD -> ASR -> turn -> LLM -> TTS -> out, with barge-in.

One per session. Input (caller audio or typed text) is processed in order by the
session's reader; each user turn starts a response task; speech from the caller, a
new typed turn or an explicit interrupt cancels the response in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable

from engine.runtime.assistant import AssistantConfig
from engine.runtime.barge_in import BargeIn, HeldReply, PausableReply, join_text, unheard_remainder
from engine.runtime.context_window import trim_context
from engine.runtime.early_reply import EarlyReply, EarlyReplyCounts, Speculation
from engine.runtime.events import (
    AudioChunk,
    ErrorEvent,
    Event,
    Interrupted,
    ResponseDone,
    ResponseResumed,
    ResponseStatus,
    Transcript,
    TurnMetrics,
)
from engine.runtime.ports.audio import OutputEncoder
from engine.runtime.ports.history import SpeechProviders, TurnRecorder
from engine.runtime.ports.providers import (
    ChatMessage,
    LanguageModel,
    ProviderError,
    Recognition,
    SpeechSynthesizer,
)
from engine.runtime.response import (
    EndCall,
    ResponseItem,
    ResponseRunner,
    ResponseState,
    fixed_text,
)
from engine.runtime.speech_input import FinishedUtterance, SpeechInput
from engine.runtime.tool_turn import ToolTurn, not_yet_in_context
from engine.runtime.tools import ToolBackend, ToolRunner

log = logging.getLogger(__name__)

# Endpointing by the clock waits this much longer when its timer fired late.
CLOCK_LAG_TOLERANCE_SEC = 0.2


def _ms(start: float | None, end: float | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start) * 1000))


class _ActiveResponse:
    def __init__(
        self, runner: ResponseRunner, task: asyncio.Task[None], turn: _TurnTiming, heard_before: str
    ) -> None:
        self.runner = runner
        self.task = task
        self.turn = turn
        self.heard_before = heard_before  # of the reply this one resumes ("" if none)


class _TurnTiming:
    def __init__(self, utterance_id: str, turn_started_at: float, transcript_ms: int | None):
        self.utterance_id = utterance_id
        self.turn_started_at = turn_started_at  # end of speech, or typed text received
        self.transcript_ms = transcript_ms
        self.wall_started_at = time.time()
        self.ended_by = ""  # how a spoken turn ended (speech_input.TurnEnd, "client")


class DuplexPipeline:
    """The conversation machinery of one session."""

    def __init__(
        self,
        config: AssistantConfig,
        *,
        llm: LanguageModel,
        synthesizer: SpeechSynthesizer | None,
        speech: SpeechProviders,
        recorder: TurnRecorder,
        emit: Callable[[Event], Awaitable[None]],
        interim_transcripts: bool = False,
        audio_lead_ms: int = 500,
        on_end_call: Callable[[EndCall, float], None] | None = None,
        encoder: Callable[[int], OutputEncoder] | None = None,
        overtake: Callable[[str, Callable[[list[Event]], list[Event]]], object] | None = None,
        max_context_messages: int = 50,
        call_id: str = "",
        tool_backend: ToolBackend | None = None,
        early_counts: EarlyReplyCounts | None = None,
    ) -> None:
        self._max_context_messages = max_context_messages
        self._on_end_call = on_end_call
        self._encoder = encoder
        self._overtake = overtake
        self._audio_lead_ms = audio_lead_ms
        self.config = config
        self._llm = llm
        self._tts = synthesizer
        self._speech_providers = speech
        self._recorder = recorder
        self._emit = emit
        self.interim_transcripts = interim_transcripts
        self._speech: SpeechInput | None = None
        self._context: list[ChatMessage] = []
        if config.system_prompt:
            self._context.append(ChatMessage("system", config.system_prompt))
        self._tools = ToolRunner(
            config,
            call_id=call_id,
            backend=tool_backend,
            emit=emit,
            recorder=recorder,
            context=self._context,
        )
        self._active: _ActiveResponse | None = None
        self._early = EarlyReply(
            enabled=config.turn.early_reply,
            llm=llm,
            tools=[tool.spec for tool in config.tools],
            synthesizer=synthesizer,
            max_context_messages=max_context_messages,
            counts=early_counts or EarlyReplyCounts(),
        )
        self._barge_in: BargeIn[_TurnTiming] = BargeIn(
            config.interruption, reply=self._reply, cut=self._cut_held, resume=self._resume
        )
        self._last_task: asyncio.Task[None] | None = None
        # Caller audio is processed by the reader and, when it stops arriving, by the
        # clock (endpointing): one at a time.
        self._input = asyncio.Lock()
        self._last_audio_at = 0.0
        self._clock: asyncio.Task[None] | None = None

    # --- input -------------------------------------------------------------------

    async def start(self) -> None:
        """Speak the greeting, if the assistant has one."""
        if self.config.greeting:
            self._start_response(
                fixed_text(self.config.greeting), _TurnTiming("", time.monotonic(), None)
            )

    async def user_text(self, text: str) -> None:
        """A typed user turn: echo it as a final transcript and answer it."""
        received = time.monotonic()
        utterance_id = f"u-{uuid.uuid4().hex[:12]}"
        await self._emit(
            Transcript(utterance_id, text, is_final=True, confidence=1.0, source="text")
        )
        await self._user_turn(
            Recognition(text, 1.0, "text"), _TurnTiming(utterance_id, received, None)
        )

    async def user_audio(self, pcm16k: bytes) -> None:
        """Caller audio, 16 kHz PCM16: detect speech, barge in, end turns."""
        speech = self._speech_input()
        async with self._input:
            self._last_audio_at = time.monotonic()
            try:
                finished = await speech.feed(pcm16k)
            except ProviderError as exc:
                await self._emit(ErrorEvent("asr_failed", str(exc)))
                return
            finally:
                # The clock counts from when input was last handled: a slow feed (the
                # recognizer on a busy machine) is not a caller who stopped sending.
                self._last_audio_at = time.monotonic()
            await self._after_input(speech, finished)
            if finished is None and speech.speaking and (self._clock is None or self._clock.done()):
                self._clock = asyncio.create_task(self._endpoint_by_clock(), name="endpointing")

    async def end_of_turn(self) -> None:
        """Client-side VAD says the caller finished speaking."""
        async with self._input:
            await self._end_turn()

    async def _end_turn(self, ended_by: str = "client") -> None:
        if self._speech is None:
            return
        try:
            finished = await self._speech.end_turn(ended_by)
        except ProviderError as exc:
            await self._emit(ErrorEvent("asr_failed", str(exc)))
            return
        await self._after_input(self._speech, finished)

    async def _endpoint_by_clock(self) -> None:
        # An utterance is open and audio stopped arriving (silence suppression, a file
        # that ended): after the silence the turn needs with no audio (the end silence,
        # or the longest one once the turn detector judged it incomplete), end the turn
        # as if that silence had been received.
        while self._speech is not None and self._speech.speaking:
            due = self._last_audio_at + self._speech.silence_needed_ms() / 1000
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if time.monotonic() - due > CLOCK_LAG_TOLERANCE_SEC:
                    # The event loop was stalled: audio that arrived meanwhile may still
                    # be queued behind this timer. Let it be handled before judging.
                    await asyncio.sleep(CLOCK_LAG_TOLERANCE_SEC)
                continue
            async with self._input:
                speech = self._speech
                silent_sec = time.monotonic() - self._last_audio_at
                if speech.speaking and silent_sec >= speech.silence_needed_ms() / 1000:
                    await self._end_turn(speech.clock_end())
                    return
            # Audio came meanwhile, or a verdict asked for a longer silence: look again.

    async def finish_input(self) -> None:
        """No more input will come (half-close): end the open utterance, await the reply.

        Cancelling this wait leaves the reply running (the session's end cuts it).
        """
        await self.end_of_turn()
        task = self._last_task
        if task is not None and not task.done():
            await asyncio.wait({task})

    def playback(self, response_id: str, played_ms: int) -> None:
        """The client reports how much of a response it has played."""
        if self._active is not None and self._active.runner.state.response_id == response_id:
            state = self._active.runner.state
            state.played_ms = max(state.played_ms or 0, played_ms)

    async def interrupt(self) -> bool:
        """Cut off the response in flight for good; False when there is none."""
        self._barge_in.settle()
        cutting = self._active is not None
        await self._cut(hold=False)
        return cutting

    async def _cut_held(self) -> HeldReply[_TurnTiming] | None:
        return await self._cut(hold=True)

    async def _cut(self, *, hold: bool) -> HeldReply[_TurnTiming] | None:
        """Cut off the response in flight; ``hold``: it may resume if no words follow.

        Returns what is held for a resume (None: nothing to resume).
        """
        active = self._active
        if active is None:
            return None
        self._active = None
        active.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await active.task
        state = active.runner.state
        now = time.monotonic()
        heard = ""

        def cut(dropped: list[Event]) -> list[Event]:
            # Audio still queued when the response was cut never reaches the client:
            # what was sent ends where the first dropped chunk starts.
            nonlocal heard
            unsent = [e.offset_ms for e in dropped if isinstance(e, AudioChunk)]
            sent_ms = min(unsent, default=state.audio_ms)
            state.audio_ms = sent_ms
            heard_ms = min(state.heard_ms(now), sent_ms)
            heard = state.heard_text(heard_ms)
            return [
                Interrupted(state.response_id, heard_ms),
                ResponseDone(
                    state.response_id, ResponseStatus.INTERRUPTED, state.text, heard, sent_ms
                ),
            ]

        if self._overtake is not None:
            # The fast lane: these overtake the response's audio still queued.
            self._overtake(state.response_id, cut)
        else:
            for event in cut([]):
                await self._emit(event)
        metrics = self._metrics(state, active.turn)
        heard_all = join_text(active.heard_before, heard)
        full_text = join_text(active.heard_before, state.text)

        def confirm() -> None:
            self._remember_assistant(heard_all, metrics, active.turn, state, full_text=full_text)

        remainder = unheard_remainder(state.text, heard)
        if hold and state.spoken and remainder:
            return HeldReply(state.response_id, heard_all, remainder, active.turn, confirm)
        confirm()
        return None

    async def close(self) -> None:
        """Session end: stop everything; an unfinished reply is kept as interrupted."""
        if self._clock is not None:
            self._clock.cancel()
        if self._speech is not None:
            self._speech.cancel()
        await self._early.close()
        await self.interrupt()  # a reply held by a barge-in is settled as interrupted
        # A response that finished generating may still be recording its history entry;
        # let it, so that nothing reaches the history after the call is finalized.
        if self._last_task is not None and not self._last_task.done():
            await self._last_task
        # Tools with side effects run to their result (bounded by their timeouts) and
        # are recorded before the call's history is finalized.
        await self._tools.close()

    def tool_result(self, tool_call_id: str, result_json: str, error: str) -> str | None:
        """A client's result for a ``tool_call``; None when taken, else why it was not."""
        return self._tools.client_result(tool_call_id, result_json, error)

    @property
    def synthesizer(self) -> SpeechSynthesizer | None:
        """The session's synthesizer; None for a text-only session."""
        return self._tts

    @property
    def responding(self) -> bool:
        """True while a response is being generated or spoken."""
        return self._active is not None

    # --- turns ---------------------------------------------------------------------

    def _speech_input(self) -> SpeechInput:
        if self._speech is None:
            self._speech = SpeechInput(
                self._speech_providers.vad(),
                self._speech_providers.recognizer(),
                self.config.vad,
                self._emit,
                line=self._speech_providers.line,
                interim_transcripts=lambda: self.interim_transcripts,
                detector=self._speech_providers.turn_detector(),
                turn=self.config.turn,
                hear_pitch=lambda: self._barge_in.engaged,
            )
        return self._speech

    async def _after_input(self, speech: SpeechInput, finished: FinishedUtterance | None) -> None:
        """Barge-in judges what the caller says over a reply; a finished turn is answered;
        while the caller pauses with nothing else going on, the reply may start early."""
        # One piece of audio may end an utterance and start the next (long chunks, audio
        # sent fast): the one that ended is judged and answered first.
        if finished is not None:
            if await self._barge_in.on_speech_end(finished.recognition.text, finished.pitched_ms):
                await self._utterance_done(finished)
        elif not speech.speaking:
            await self._barge_in.on_speech_end(None)
        if speech.speaking:
            await self._barge_in.on_speech(
                speech.hypothesis,
                speech.speech_ms,
                speech.voiced_ms,
                speech.pitched_ms,
                heard_ms=speech.heard_ms,
            )
            free = not self._barge_in.engaged and self._tools.idle
            self._early.pause(speech.likely_final(), self._context, free=free)
        else:
            self._early.discard()  # the utterance was no turn (a turn has taken it already)

    def _reply(self) -> PausableReply | None:
        return self._active.runner if self._active is not None else None

    async def _resume(self, held: HeldReply[_TurnTiming]) -> None:
        """A false interruption: say the rest of the reply the caller did not hear."""
        state = ResponseState(response_id=f"r-{uuid.uuid4().hex[:12]}")
        # Announced first: the client hears of the resume before any of its text or audio.
        await self._emit(
            ResponseResumed(state.response_id, held.response_id, held.remainder, held.heard)
        )
        self._start_response(fixed_text(held.remainder), held.turn, state, heard_before=held.heard)

    async def _utterance_done(self, finished: FinishedUtterance) -> None:
        timing = _TurnTiming(
            finished.utterance_id,
            finished.speech_ended_at,
            _ms(finished.speech_ended_at, finished.transcribed_at),
        )
        timing.ended_by = finished.ended_by
        await self._user_turn(finished.recognition, timing)

    async def _user_turn(self, heard: Recognition, timing: _TurnTiming) -> None:
        # A new turn while the assistant talks (typed, or speech with barge-in off but
        # a finished utterance) replaces the reply in flight.
        await self.interrupt()
        typed = heard.source == "text"
        # A guess (the recognizer's stand-in when short of CPU, a low-confidence decode)
        # is not answered: the caller is asked again rather than answered on a question
        # they may not have asked. It stays out of the model's context.
        unsure = not typed and heard.confidence < self.config.unsure_confidence
        # An early reply is the answer only to the words and context it was begun on.
        sure = None if typed or unsure or not self._tools.idle else heard.text
        early = self._early.take(sure, self._context)
        if not unsure:
            confidence = None if typed else round(heard.confidence, 3)
            self._context.append(ChatMessage("user", heard.text, confidence=confidence))
            trim_context(self._context, self._max_context_messages)
        self._recorder.record(
            "user",
            heard.text,
            started_at=timing.wall_started_at,
            ended_at=time.time(),
            metadata={
                "confidence": round(heard.confidence, 3),
                "source": heard.source,
                "unsure": unsure,
                "utterance_id": timing.utterance_id,
                **({"ended_by": timing.ended_by} if timing.ended_by else {}),
            },
        )
        if unsure:
            self._start_response(fixed_text(self.config.unsure_reply), timing)
            return
        state = ResponseState(response_id=f"r-{uuid.uuid4().hex[:12]}")
        first_round = early.stream() if early is not None else None
        turn = ToolTurn(
            self.config, self._llm, self._tools, self._context, state, first_round=first_round
        )
        self._start_response(turn.items(), timing, state, early=early)

    def _start_response(
        self,
        deltas: AsyncGenerator[ResponseItem, None],
        timing: _TurnTiming,
        state: ResponseState | None = None,
        *,
        heard_before: str = "",
        early: Speculation | None = None,
    ) -> None:
        state = state or ResponseState(response_id=f"r-{uuid.uuid4().hex[:12]}")
        runner = ResponseRunner(
            state,
            deltas,
            early.speech(self._tts) if early is not None else self._tts,
            self._emit,
            audio_lead_ms=self._audio_lead_ms,
            encoder=self._encoder,
        )
        task = asyncio.create_task(
            self._run(runner, timing, heard_before), name=f"response {state.response_id}"
        )
        if early is not None:
            task.add_done_callback(lambda _: early.cancel())  # what the reply left unread
        self._active = _ActiveResponse(runner, task, timing, heard_before)
        self._last_task = task

    async def _run(self, runner: ResponseRunner, timing: _TurnTiming, heard_before: str) -> None:
        await runner.run()
        state = runner.state
        # Completed (or failed): from here on, barge-in has nothing to cancel.
        if self._active is not None and self._active.runner is runner:
            self._active = None
        status = ResponseStatus.FAILED if state.failed else ResponseStatus.COMPLETED
        await self._emit(
            ResponseDone(state.response_id, status, state.text, state.text, state.audio_ms)
        )
        metrics = self._metrics(state, timing)
        await self._emit(metrics)
        if state.text:
            said = join_text(heard_before, state.text)
            self._remember_assistant(said, metrics, timing, state, failed=state.failed)
        if state.end_call is not None and not state.failed and self._on_end_call is not None:
            # Spoken to the end: hang up once the client has played it out.
            self._on_end_call(state.end_call, state.playback_left_sec(time.monotonic()))

    def _remember_assistant(
        self,
        heard: str,
        metrics: TurnMetrics,
        timing: _TurnTiming,
        state: ResponseState,
        *,
        full_text: str | None = None,
        failed: bool = False,
    ) -> None:
        """History and context get what was heard; ``full_text`` is set on barge-in."""
        if rest := not_yet_in_context(heard, state.text_in_context):
            self._context.append(ChatMessage("assistant", rest))
        if not heard and not full_text:
            return
        latency = {
            name: value
            for name, value in dataclasses.asdict(metrics).items()
            if name.endswith("_ms") and value is not None
        }
        self._recorder.record(
            "assistant",
            heard,
            started_at=timing.wall_started_at,
            ended_at=time.time(),
            interrupted=failed or full_text is not None,
            full_text=full_text,
            metadata={
                "utterance_id": timing.utterance_id,
                "response_id": state.response_id,
                "audio_ms": state.audio_ms,
                "latency_ms": latency,
            },
        )

    def _metrics(self, state: ResponseState, timing: _TurnTiming) -> TurnMetrics:
        return TurnMetrics(
            response_id=state.response_id,
            utterance_id=timing.utterance_id,
            end_of_speech_to_final_transcript_ms=timing.transcript_ms,
            llm_first_token_ms=_ms(state.started_at, state.first_token_at),
            tts_first_audio_ms=_ms(state.first_sentence_at, state.first_audio_at),
            end_of_speech_to_first_audio_ms=_ms(timing.turn_started_at, state.first_audio_at),
            tool_ms=state.tool_ms,
        )
