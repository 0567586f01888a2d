"""Provider ports: the speech and language engines a session talks through.

Audio crossing these ports is always signed 16-bit little-endian mono PCM ("PCM16").
Speech input is 16 kHz; synthesized speech comes at the synthesizer's own rate and
is converted to the client's format at the protocol edge.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from engine.runtime.ports.turn import TurnDetector

INPUT_SAMPLE_RATE_HZ = 16_000


class ProviderError(Exception):
    """A provider failed for one turn; the session reports it and goes on."""


class ProviderConfigError(ValueError):
    """A provider's options in an assistant definition are invalid."""


def reject_unknown_options(
    section: str, provider: str, options: Mapping[str, Any], allowed: Collection[str]
) -> None:
    """Raise ProviderConfigError naming the first option ``provider`` does not know."""
    unknown = sorted(str(key) for key in options if key not in allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ProviderConfigError(
            f"{section}.{unknown[0]}: unknown option for {provider} (allowed: {known})"
        )


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model has finished emitting: ``arguments_json`` is complete.

    ``id`` is the model's tool call id (unique within the call); the runtime executes a
    request only once it has been yielded whole, never a fragment of one.
    """

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation context handed to a language model.

    An ``assistant`` message may carry the ``tool_calls`` it made; each is answered by a
    ``tool`` message with the call's ``tool_call_id`` and its JSON result as ``content``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str = ""
    # For a spoken user turn: how sure the recognizer is of ``content`` (None: typed, or
    # not a user turn). A model that can use it is told; the scripted one ignores it.
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model is offered it: name, what it does, its arguments' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


class LanguageModel(Protocol):
    """A streaming chat model: messages (and the tools it may call) in, text deltas out."""

    def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """Yield the reply as text deltas and, each once complete, the tool calls it makes.

        Raise ProviderError on failure. Closing the generator (barge-in) must stop all
        work at once.
        """
        ...


class SpeechSynthesizer(Protocol):
    """Text to speech: one sentence in, PCM16 chunks out."""

    @property
    def sample_rate_hz(self) -> int:
        """The rate of the PCM this synthesizer yields."""
        ...

    def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        """Yield PCM16 mono audio for ``text``; raise ProviderError on failure."""
        ...


class VoiceActivityDetector(Protocol):
    """Frame-level speech/non-speech classification of 16 kHz PCM16."""

    @property
    def frame_bytes(self) -> int:
        """Size of the frames ``is_speech`` accepts (10, 20 or 30 ms of 16 kHz PCM16)."""
        ...

    def is_speech(self, frame: bytes) -> bool:
        """True when the frame holds speech."""
        ...


@runtime_checkable
class HearsPitch(Protocol):
    """A VoiceActivityDetector that can also tell a voice from a noise.

    Optional. Coughs, knocks, hiss and clatter trip a VAD as speech does, but have no
    pitch: barge-in lets a reply play on over a sound without one.
    """

    def has_pitch(self, window: bytes) -> bool:
        """True when ``window`` (16 kHz PCM16: a frame and the ones before it, 40 ms in
        all) sounds voiced: periodic, as vowels are."""
        ...


@dataclass(frozen=True, slots=True)
class Recognition:
    """A final transcript of one utterance."""

    text: str
    confidence: float  # 0.0 .. 1.0
    # Where the text came from, for clients and history: e.g. "whisper", "grammar",
    # "grammar_fallback" (the cheap pass stood in for the full one: often a guess).
    source: str = ""


class RecognitionStream(Protocol):
    """One utterance being recognized while the caller speaks."""

    async def feed(self, pcm16k: bytes) -> None:
        """Decode more audio (may run off the event loop)."""
        ...

    def partial(self) -> str:
        """The best hypothesis so far (cheap; no decoding)."""
        ...

    async def finish(self) -> Recognition:
        """End the utterance and return its final transcript."""
        ...

    def cancel(self) -> None:
        """Drop the utterance without a result."""
        ...


@runtime_checkable
class ContinuesCaller(Protocol):
    """A RecognitionStream whose caller's next utterance can start from what it learnt.

    Optional. The speech input starts a session's next utterance from its last one, so
    a recognizer can carry over what belongs to the caller and the line rather than to
    one utterance (pocketsphinx: the channel's cepstral mean).
    """

    def next_utterance(self) -> RecognitionStream:
        """A new utterance of the same caller (this one must be finished or cancelled)."""
        ...


@runtime_checkable
class LearnsLines(Protocol):
    """A SpeechRecognizer that starts a new caller from what callers on such lines taught it.

    Optional. ``line`` names the kind of line the audio came over (the client's input
    encoding and rate, e.g. "MULAW/8000"); what belongs to the line rather than to the
    speaker (pocketsphinx: the channel's cepstral mean) is shared by its callers, so a
    caller's first utterance costs no more than the next ones.
    """

    def start_utterance_on(self, line: str) -> RecognitionStream:
        """The first utterance of a caller on ``line``."""
        ...


@runtime_checkable
class PreparesFinal(Protocol):
    """A RecognitionStream that can start its final pass early, while the end silence runs.

    Optional: streams that lack these methods simply finalize in ``finish()``.
    """

    def silence_began(self) -> None:
        """The caller has been silent a while: the turn is probably over (not certainly)."""
        ...

    def speech_resumed(self) -> None:
        """The caller spoke again after ``silence_began``: drop the early final pass."""
        ...


@runtime_checkable
class ReadsEarlyFinal(Protocol):
    """A RecognitionStream whose early final pass (``PreparesFinal``) can be read once done.

    Optional. The end of turn reads the words heard so far when a turn detector says
    "complete"; the early final, when ready, says them better than the streaming partial.
    """

    def early_text(self) -> str | None:
        """The early final pass's text; None while it runs; "" when there is none (or it
        will not be ready in time: the final will not wait for it either).

        Never waits.
        """
        ...

    def early_alternatives(self) -> tuple[str, ...]:
        """Other likely readings of the early final's text (its last word heard another
        way, or not there: audio cut at a pause often gets a word added); () if none.

        Never waits.
        """
        ...


@runtime_checkable
class ConfirmsPhrase(Protocol):
    """A RecognitionStream that can tell, once its early final pass is done, that the
    caller said one of the assistant's listed phrases, heard for sure.

    Optional. The end of turn takes such a phrase as a whole question.
    """

    def phrase_confirmed(self) -> bool | None:
        """True: a listed phrase, heard for sure; False: not (or no such pass); None while
        the pass decides. Never waits."""
        ...


@runtime_checkable
class TellsPartialLag(Protocol):
    """A RecognitionStream whose streaming hypothesis may lag behind the audio fed to it.

    Optional. A recognizer decoding elsewhere (another process, a busy machine) answers
    ``partial()`` for audio some time back; what is judged from the hypothesis ("no words
    yet") then waits until the hypothesis has heard that far. Streams without it are
    taken as up to date.
    """

    def partial_lag_ms(self) -> int:
        """Milliseconds of the audio fed so far that ``partial()`` has not heard yet."""
        ...


@runtime_checkable
class FinishesInCallerTime(Protocol):
    """A RecognitionStream whose final may wait while its caller is not waiting yet.

    Optional. Audio sent faster than real time reaches the end of a turn before the
    caller does: a recognizer with a deadline for its final counts it from when the
    caller gets there, so the transcript does not depend on the send rate.
    """

    async def finish_at(self, caller_at_end: float) -> Recognition:
        """``finish()`` for a turn whose end the caller reaches at ``caller_at_end``.

        ``caller_at_end`` is a ``time.monotonic()`` value, later than now when the audio
        arrived ahead of real time; deadlines count from the later of the two.
        """
        ...


class SpeechRecognizer(Protocol):
    """Streaming speech recognition of 16 kHz PCM16."""

    def start_utterance(self) -> RecognitionStream:
        """Begin a new utterance."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider named in an assistant definition: ``provider`` plus its options."""

    provider: str
    options: Mapping[str, Any]


class ProviderFactory(Protocol):
    """Builds providers from an assistant's specs; wired in at start-up."""

    def language_model(self, spec: ProviderSpec) -> LanguageModel: ...

    def synthesizer(self, spec: ProviderSpec) -> SpeechSynthesizer: ...

    def recognizer(self, spec: ProviderSpec) -> SpeechRecognizer: ...

    def vad(self, spec: ProviderSpec) -> VoiceActivityDetector: ...

    def turn_detector(self, spec: ProviderSpec) -> TurnDetector: ...
