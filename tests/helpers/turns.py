"""A speech input over the signal VAD, a recording recognizer and a scripted turn detector.

For the end-of-turn tests: 20 ms frames of non-zero samples are speech, all-zero frames
silence. ``RealTime`` is an audio clock whose time moves 20 ms a frame fed, as if the client
sent in real time; without it every frame arrives ahead of the caller (sent fast).
"""

from __future__ import annotations

from adapters.testkit.vad import SignalVad
from engine.runtime.assistant import TurnSettings, VadSettings
from engine.runtime.audio_clock import AudioClock
from engine.runtime.events import Event
from engine.runtime.ports.providers import Recognition
from engine.runtime.speech_input import FinishedUtterance, SpeechInput
from tests.helpers.fakes import ScriptedTurnDetector

SPEECH = b"\x01\x00" * 320  # 20 ms of non-zero samples: speech to the signal VAD
SILENCE = bytes(640)
TURN = TurnSettings(
    detector="scripted", check_after_ms=200, complete_threshold=0.5, max_silence_ms=1500
)


class WordsStream:
    """A RecognitionStream (PreparesFinal, ReadsEarlyFinal, ConfirmsPhrase) whose early
    final a test sets.

    ``early`` is what ``early_text`` says: None while the early final "runs";
    ``alternatives`` its other likely readings; ``confirmed`` what ``phrase_confirmed``
    says (a listed phrase heard for sure; None while deciding).
    """

    def __init__(
        self,
        early: str | None = "",
        alternatives: tuple[str, ...] = (),
        confirmed: bool | None = False,
    ) -> None:
        self.prepared = 0  # silence_began calls
        self.fed = 0  # bytes fed
        self.early = early
        self.alternatives = alternatives
        self.confirmed = confirmed

    async def feed(self, pcm16k: bytes) -> None:
        self.fed += len(pcm16k)

    def partial(self) -> str:
        return ""

    async def finish(self) -> Recognition:
        return Recognition("words", 0.9, "whisper")

    def cancel(self) -> None:
        return None

    def silence_began(self) -> None:
        self.prepared += 1

    def speech_resumed(self) -> None:
        return None

    def early_text(self) -> str | None:
        return self.early

    def early_alternatives(self) -> tuple[str, ...]:
        return self.alternatives if self.early is not None else ()

    def phrase_confirmed(self) -> bool | None:
        return self.confirmed


class WordsRecognizer:
    """Starts WordsStreams whose early final is ``early`` (other readings ``alternatives``,
    a listed phrase heard for sure: ``confirmed``)."""

    def __init__(
        self,
        early: str | None = "",
        alternatives: tuple[str, ...] = (),
        confirmed: bool | None = False,
    ) -> None:
        self.early = early
        self.alternatives = alternatives
        self.confirmed = confirmed
        self.streams: list[WordsStream] = []

    def start_utterance(self) -> WordsStream:
        self.streams.append(WordsStream(self.early, self.alternatives, self.confirmed))
        return self.streams[-1]


class RealTime:
    """Time for an AudioClock that passes 20 ms for each frame a test feeds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 0.02


async def _ignore(_: Event) -> None:
    return None


def speech_input(
    detector: ScriptedTurnDetector | None,
    recognizer: WordsRecognizer | None = None,
    *,
    turn: TurnSettings = TURN,
    clock: AudioClock | None = None,
) -> SpeechInput:
    return SpeechInput(
        SignalVad(),
        recognizer or WordsRecognizer(),
        VadSettings(end_silence_ms=600),
        _ignore,
        interim_transcripts=lambda: False,
        detector=detector,
        turn=turn,
        clock=clock,
    )


async def feed(
    speech: SpeechInput, frame: bytes, time: RealTime | None = None
) -> FinishedUtterance | None:
    """One frame, then the verdict of a check it started (an ungated scripted detector
    answers at once): the next frame applies it, as when frames come in real time."""
    if time is not None:
        time.tick()
    done = await speech.feed(frame)
    await speech.end_of_turn.verdict()
    return done


async def silence_until_done(
    speech: SpeechInput, most_ms: int = 3000, time: RealTime | None = None
) -> tuple[int, FinishedUtterance]:
    """Feed silence until the turn ends: how much it took, and the utterance."""
    for n in range(1, most_ms // 20 + 1):
        if (done := await feed(speech, SILENCE, time)) is not None:
            return n * 20, done
    raise AssertionError(f"no end of turn within {most_ms} ms of silence")


async def say(speech: SpeechInput, ms: int, time: RealTime | None = None) -> None:
    for _ in range(ms // 20):
        assert await feed(speech, SPEECH, time) is None
