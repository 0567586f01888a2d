"""One assistant response: text deltas -> sentences -> speech, cancellable at any point.

Two stages joined by a queue: the text stage reads the LLM (or a fixed greeting) and
cuts sentences; the speech stage synthesizes each sentence as soon as it is complete,
so the first audio leaves long before the reply is finished. Cancelling the response
task (barge-in) cancels both stages; nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from engine.runtime.audio_out import OutputChunk, OutputChunker, Pcm16Passthrough
from engine.runtime.events import AssistantText, AudioChunk, ErrorEvent, Event
from engine.runtime.ports.audio import OutputEncoder
from engine.runtime.ports.providers import ProviderError, SpeechSynthesizer
from engine.runtime.text import SentenceSplitter, SpokenSpan, heard_text

log = logging.getLogger(__name__)

_SAFE_MESSAGES = {
    "llm_failed": "the language model failed for this turn; the reply is cut short",
    "tts_failed": "speech synthesis failed for this turn; the reply is cut short",
}

Emit = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EndCall:
    """In a response's stream: hang up once the reply has been spoken (end_call ran)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class SentenceBreak:
    """In a response's stream: speak the text so far now (a tool call is about to wait)."""


ResponseItem = str | EndCall | SentenceBreak


@dataclass(slots=True)
class ResponseState:
    """What a response has produced so far; read by the pipeline on barge-in."""

    response_id: str
    text: str = ""
    spans: list[SpokenSpan] = field(default_factory=list)
    audio_ms: int = 0  # audio sent, in the client's format
    spoken: bool = True  # False for a text-only session: the text is all there is
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    first_sentence_at: float | None = None
    first_audio_at: float | None = None
    failed: bool = False
    end_call: EndCall | None = None  # the model asked to hang up after this reply
    played_ms: int | None = None  # from the client's playback reports
    tool_ms: int | None = None  # time the turn waited for tools (None: none ran)
    text_in_context: str = ""  # reply text already in the context (with its tool calls)

    def playback_left_sec(self, now: float) -> float:
        """How much of the audio sent the client has still to play (estimated)."""
        if self.first_audio_at is None:
            return 0.0
        return max(0.0, self.first_audio_at + self.audio_ms / 1000 - now)

    def heard_ms(self, now: float) -> int:
        """Audio the caller heard: the client's report, else sent audio capped by time."""
        if self.played_ms is not None:
            return min(self.played_ms, self.audio_ms)
        if self.first_audio_at is None:
            return 0
        elapsed_ms = int((now - self.first_audio_at) * 1000)
        return max(0, min(self.audio_ms, elapsed_ms))

    def heard_text(self, heard_ms: int) -> str:
        """The words of the reply that fit in ``heard_ms`` of its audio.

        A text-only session has no audio: its caller got all the text generated.
        """
        if not self.spoken:
            return self.text.strip()
        return heard_text(self.spans, min(heard_ms, self.audio_ms))


# How long after a reply's first audio chunk the rest of its output lead is sent: the
# client is still far ahead of playback (5x real time for a 500 ms lead), and 40 replies
# that start together cost the loop 40 chunks at once instead of 200.
LEAD_RAMP_SEC = 0.1


class ResponseRunner:
    """Runs one response to completion; cancel its task to stop it."""

    def __init__(
        self,
        state: ResponseState,
        deltas: AsyncGenerator[ResponseItem, None],
        synthesizer: SpeechSynthesizer | None,
        emit: Emit,
        *,
        audio_lead_ms: int,
        encoder: Callable[[int], OutputEncoder] | None = None,
    ) -> None:
        self.state = state
        self._lead_sec = audio_lead_ms / 1000
        self._deltas = deltas
        self._tts = synthesizer
        self._encoder = encoder
        state.spoken = synthesizer is not None
        self._emit = emit
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._flowing = asyncio.Event()  # cleared while a barge-in holds the audio back
        self._flowing.set()
        self._paused_at: float | None = None

    @property
    def paused_at(self) -> float | None:
        """When the audio was paused (monotonic); None while it flows."""
        return self._paused_at

    def pause(self) -> None:
        """Hold the audio back (the text goes on); the client plays out what it has."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            self._flowing.clear()

    def unpause(self) -> None:
        """Send the audio again; the pacing restarts where the client's playback stands."""
        if self._paused_at is None:
            return
        paused_sec = time.monotonic() - self._paused_at
        if self.state.first_audio_at is not None:
            # The client played its lead out during the pause, then heard silence: the
            # schedule moves on by that silence, so the lead is refilled, not exceeded.
            self.state.first_audio_at += max(0.0, paused_sec - self._lead_sec)
        self._paused_at = None
        self._flowing.set()

    async def run(self) -> None:
        """Produce the whole response; raises CancelledError when interrupted."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._text_stage())
                group.create_task(self._speech_stage())
        except* ProviderError as errors:
            self.state.failed = True
            for error in errors.exceptions:
                code = "tts_failed" if isinstance(error, _SpeechFailure) else "llm_failed"
                log.warning("response %s: %s: %s", self.state.response_id, code, error)
                # The provider's words (URLs, bodies) stay in the log; the client gets a
                # stable code and a safe message.
                await self._emit(ErrorEvent(code, _SAFE_MESSAGES[code], self.state.response_id))

    async def _text_stage(self) -> None:
        splitter = SentenceSplitter()
        try:
            async with contextlib.aclosing(self._deltas) as deltas:
                async for delta in deltas:
                    if isinstance(delta, EndCall):
                        self.state.end_call = delta
                        continue
                    if isinstance(delta, SentenceBreak):
                        if rest := splitter.flush():
                            self._queue_sentence(rest)
                        continue
                    if not delta:
                        continue
                    if self.state.first_token_at is None:
                        self.state.first_token_at = time.monotonic()
                    self.state.text += delta
                    await self._emit(AssistantText(self.state.response_id, delta))
                    for sentence in splitter.push(delta):
                        self._queue_sentence(sentence)
            rest = splitter.flush()
            if rest:
                self._queue_sentence(rest)
        finally:
            self._sentences.put_nowait(None)

    def _queue_sentence(self, sentence: str) -> None:
        if self.state.first_sentence_at is None:
            self.state.first_sentence_at = time.monotonic()
        self._sentences.put_nowait(sentence)

    async def _speech_stage(self) -> None:
        synthesized_ms = 0.0  # of all sentences so far; sentence spans are cut from it
        chunker: OutputChunker | None = None
        rate = 0
        if self._tts is not None:
            rate = self._tts.sample_rate_hz
            encoder = self._encoder(rate) if self._encoder is not None else None
            chunker = OutputChunker(encoder or Pcm16Passthrough(rate))
        while (sentence := await self._sentences.get()) is not None:
            if self._tts is None or chunker is None:  # text-only session
                self.state.spans.append(SpokenSpan(sentence, 0, 0))
                continue
            span = SpokenSpan(sentence, round(synthesized_ms), round(synthesized_ms))
            self.state.spans.append(span)
            try:
                # aclosing: a barge-in must abort the synthesis now, not at GC time.
                async with contextlib.aclosing(self._tts.synthesize(sentence)) as chunks:
                    async for pcm in chunks:
                        synthesized_ms += len(pcm) * 1000 / (2 * rate)
                        span.end_ms = round(synthesized_ms)
                        for chunk in chunker.push(pcm):
                            await self._send_audio(chunk)
            except ProviderError as exc:
                raise _SpeechFailure(str(exc)) from exc
        if chunker is not None:
            for chunk in chunker.finish():
                await self._send_audio(chunk)

    async def _send_audio(self, chunk: OutputChunk) -> None:
        await self._flowing.wait()
        if self.state.first_audio_at is None:
            self.state.first_audio_at = time.monotonic()
        else:
            # Real-time pacing: keep the client at most ``audio_lead_ms`` ahead of
            # playback, so a barge-in finds the response still in flight and the
            # client never buffers more than the lead. The lead itself is spread over
            # LEAD_RAMP_SEC after the first chunk (which leaves at once): when many
            # turns end together their leads then do not reach the loop as one burst.
            offset = chunk.offset_ms / 1000
            lead = self._lead_sec
            ramp = min(offset, lead) * LEAD_RAMP_SEC / lead if lead > 0 else 0.0
            delay = self.state.first_audio_at + max(offset - lead, ramp) - time.monotonic()
            if delay > 0.001:
                await asyncio.sleep(delay)
        self.state.audio_ms = chunk.offset_ms + chunk.duration_ms
        await self._emit(
            AudioChunk(self.state.response_id, chunk.data, chunk.offset_ms, chunk.duration_ms)
        )


class _SpeechFailure(ProviderError):
    """A synthesizer failure (told apart from a language-model failure)."""


async def fixed_text(text: str) -> AsyncGenerator[str, None]:
    """A one-delta stream, for greetings and other scripted lines."""
    yield text
