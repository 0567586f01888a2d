"""Starting the reply early (engine process, event loop): the model and the first sentence's
speech begun on the caller's likely last words while they still pause.

When the caller pauses, the recognizer's early final is ready and nothing says the caller
goes on (``SpeechInput.likely_final``), a ``Speculation`` asks the model for the reply to
those words and synthesizes its first sentence, into buffers: nothing reaches the client,
the context or the history, and a tool call stops it there (a tool runs only for a turn
that happened; the committed turn asks the model again). When the turn ends with a final of
the same words that the assistant is sure of, in the same context, the response replays the
buffers and reads on from the same model stream, through the usual path and in the usual
order. Anything else (the caller speaks again, another final, an unsure or typed turn, a
reply or a tool in between, the session's end) cancels it unsent. One per pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from engine.runtime.context_window import trim_context
from engine.runtime.ports.providers import (
    ChatMessage,
    LanguageModel,
    ProviderError,
    SpeechSynthesizer,
    ToolCallRequest,
    ToolSpec,
)
from engine.runtime.text import SentenceSplitter, words_of

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Piece = str | ToolCallRequest


@dataclass(slots=True)
class EarlyReplyCounts:
    """Speculations of one engine process (for metrics): each started one ends up used or
    discarded."""

    started: int = 0
    used: int = 0
    discarded: int = 0


class _Tape(Generic[_T]):
    """What one producer task writes, played back once: the reader waits for more until the
    producer closes it; closing the reader early stops the producer."""

    def __init__(self) -> None:
        self.items: list[_T] = []
        self.error: BaseException | None = None
        self.closed = False
        self._changed = asyncio.Event()
        self.producer: asyncio.Task[None] | None = None

    def put(self, item: _T) -> None:
        self.items.append(item)
        self._changed.set()

    def close(self, error: BaseException | None = None) -> None:
        self.closed, self.error = True, error
        self._changed.set()

    async def play(self) -> AsyncGenerator[_T, None]:
        played = 0
        try:
            while True:
                if played < len(self.items):
                    played += 1
                    yield self.items[played - 1]
                elif self.closed:
                    if self.error is not None:
                        raise self.error
                    return
                else:
                    self._changed.clear()
                    await self._changed.wait()
        finally:
            if self.producer is not None and not self.producer.done():
                self.producer.cancel()  # the reply was cut: the model or the synthesis stops


class Speculation:
    """One early reply: the model's stream and the first sentence's audio, buffered."""

    def __init__(
        self,
        words: str,
        context: Sequence[ChatMessage],
        *,
        llm: LanguageModel,
        tools: Sequence[ToolSpec],
        synthesizer: SpeechSynthesizer | None,
        max_context_messages: int,
    ) -> None:
        self.words = tuple(words_of(words))
        self._context = tuple(context)
        self._synthesizer = synthesizer
        self._committed = False
        self.asked_tool = False  # the model called a tool: stopped, not to be used
        self._text: _Tape[Piece] = _Tape()
        self._sentence = ""  # the first sentence, once the model has written it
        self._speech: _Tape[bytes] | None = None
        messages = [*context, ChatMessage("user", words)]
        trim_context(messages, max_context_messages)
        self._text.producer = asyncio.create_task(
            self._generate(llm, messages, tools), name="early reply"
        )

    def matches(self, final: str, context: Sequence[ChatMessage]) -> bool:
        """Whether this is the reply to ``final`` in ``context``: the same words, the same
        context before them, and a generation that neither failed nor asked for a tool."""
        failed = self._text.error is not None
        return (
            not failed
            and not self.asked_tool
            and tuple(words_of(final)) == self.words
            and tuple(context) == self._context
        )

    def commit(self) -> None:
        """The turn happened: tool calls from here on are the reply's to make."""
        self._committed = True

    def stream(self) -> AsyncGenerator[Piece, None]:
        """The model's reply: what is buffered, then the rest as it comes (once)."""
        return self._text.play()

    def speech(self, synthesizer: SpeechSynthesizer | None) -> SpeechSynthesizer | None:
        """``synthesizer`` with the first sentence already synthesized."""
        if synthesizer is None or self._speech is None:
            return synthesizer
        return _PreparedSpeech(synthesizer, self._sentence, self._speech)

    def cancel(self) -> None:
        """Stop the model and the synthesis (nothing of them is used)."""
        for tape in (self._text, self._speech):
            if tape is not None and tape.producer is not None:
                tape.producer.cancel()

    async def wait_closed(self) -> None:
        """Wait until the cancelled tasks have let go (the model's stream closed)."""
        tasks = [t.producer for t in (self._text, self._speech) if t is not None and t.producer]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _generate(
        self, llm: LanguageModel, messages: list[ChatMessage], tools: Sequence[ToolSpec]
    ) -> None:
        splitter = SentenceSplitter()
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(llm.stream_reply(messages, tools)) as model:
                async for piece in model:
                    if isinstance(piece, ToolCallRequest) and not self._committed:
                        self.asked_tool = True  # the turn may not happen: no tool runs
                        return
                    self._text.put(piece)
                    if isinstance(piece, str) and not self._sentence:
                        self._first_sentence(splitter.push(piece))
            if not self._sentence:
                self._first_sentence([splitter.flush()])
        except ProviderError as exc:
            error = exc
        except asyncio.CancelledError:
            error = ProviderError("the early reply was cancelled")
            raise
        except Exception as exc:  # a bug in a model adapter: the committed turn meets it again
            log.warning("early reply: the model failed: %r", exc)
            error = ProviderError("the language model failed")
        finally:
            self._text.close(error)

    def _first_sentence(self, sentences: list[str]) -> None:
        # Once committed the response's own speech stage is as early as this would be.
        if not sentences or not sentences[0] or self._synthesizer is None or self._committed:
            return
        self._sentence = sentences[0]
        self._speech = _Tape()
        self._speech.producer = asyncio.create_task(
            self._synthesize(self._synthesizer, self._sentence, self._speech),
            name="early reply speech",
        )

    @staticmethod
    async def _synthesize(synthesizer: SpeechSynthesizer, text: str, tape: _Tape[bytes]) -> None:
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(synthesizer.synthesize(text)) as chunks:
                async for pcm in chunks:
                    tape.put(pcm)
        except ProviderError as exc:
            error = exc
        except asyncio.CancelledError:
            error = ProviderError("the early reply was cancelled")
            raise
        finally:
            tape.close(error)


class _PreparedSpeech:
    """A SpeechSynthesizer whose first request for ``sentence`` plays the prepared audio."""

    def __init__(self, synthesizer: SpeechSynthesizer, sentence: str, audio: _Tape[bytes]) -> None:
        self._synthesizer = synthesizer
        self._sentence = sentence
        self._audio: _Tape[bytes] | None = audio

    @property
    def sample_rate_hz(self) -> int:
        return self._synthesizer.sample_rate_hz

    def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        audio = self._audio
        if audio is not None and text == self._sentence:
            self._audio = None
            return audio.play()
        return self._synthesizer.synthesize(text)


class EarlyReply:
    """The early reply of one session's pauses; the pipeline drives it.

    ``pause`` after each piece of caller input while an utterance is open, ``take`` when a
    turn is answered, ``discard`` when the utterance ends without a turn or the session ends.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        llm: LanguageModel,
        tools: Sequence[ToolSpec],
        synthesizer: SpeechSynthesizer | None,
        max_context_messages: int,
        counts: EarlyReplyCounts,
    ) -> None:
        self._enabled = enabled
        self._llm = llm
        self._tools = tuple(tools)
        self._synthesizer = synthesizer
        self._max_context_messages = max_context_messages
        self.counts = counts
        self._current: Speculation | None = None
        self._pause_used = False  # one speculation per pause
        self._closing: set[asyncio.Task[None]] = set()

    def pause(self, words: str | None, context: Sequence[ChatMessage], *, free: bool) -> None:
        """The open utterance's likely final ``words`` (None: the caller speaks, or is
        expected to go on); ``free``: nothing else answers or acts now (no reply, no tool)."""
        if words is None:
            self._pause_used = False
            self.discard()
            return
        current = self._current
        if current is not None and (not free or not current.matches(words, context)):
            self.discard()  # the words or the context changed within this pause
        if not self._enabled or not free or self._pause_used:
            return
        self._pause_used = True
        self._current = Speculation(
            words,
            context,
            llm=self._llm,
            tools=self._tools,
            synthesizer=self._synthesizer,
            max_context_messages=self._max_context_messages,
        )
        self.counts.started += 1
        log.debug("early reply started on %r", words)

    def take(self, final: str | None, context: Sequence[ChatMessage]) -> Speculation | None:
        """The speculation made for this turn, when ``final`` (None: a turn not to answer
        from it) in ``context`` is what it was made for; anything else is discarded."""
        current, self._current = self._current, None
        self._pause_used = False
        if current is None:
            return None
        if final is None or not current.matches(final, context):
            self._drop(current)
            return None
        current.commit()
        self.counts.used += 1
        log.debug("early reply used")
        return current

    def discard(self) -> None:
        """Cancel the speculation, if any: unsent, unrecorded."""
        current, self._current = self._current, None
        if current is not None:
            self._drop(current)

    async def close(self) -> None:
        """Session end: discard, and wait until the model's stream is closed."""
        self.discard()
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _drop(self, speculation: Speculation) -> None:
        speculation.cancel()
        self.counts.discarded += 1
        log.debug("early reply discarded")
        waiting = asyncio.create_task(speculation.wait_closed(), name="early reply closing")
        self._closing.add(waiting)
        waiting.add_done_callback(self._closing.discard)
