"""Barge-in decisions of one session (runs in the engine process, on the event loop).

Not every sound during a reply is an interruption. ``BargeInJudge`` tells, from the
recognizer's streaming hypothesis, the length of the speech and whether it has a pitch,
whether the caller is saying words (cut the reply), acknowledging ("mm hmm": leave the
reply alone) or making a noise (no pitch: leave the reply alone; no words yet: cut or
pause it, and let it go on once no words come). ``HeldReply`` is a reply cut by a
barge-in that may still turn out false: what was heard, and what is left to say.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from engine.runtime.assistant import InterruptionSettings
from engine.runtime.text import words_of

# What recognizers make of breath, coughs and clicks: not words. Not "oh": it is what
# Whisper makes of a clipped "stop" or "no" on a telephone line now and then, and a
# caller's own "oh" starts a correction as often as not ("oh, wait").
FILLERS = frozenset({"a", "ah", "eh", "er", "uh", "um", "hm", "mm", "the", "huh", "sh", "shh"})
# Less of the speech than this with a pitch, and it is no voice: a cough, a knock, hiss.
# Whatever the recognizer makes of it (a grammar forces phrase words on any sound, and
# Whisper hallucinates "thank you" on noise), it neither cuts the reply nor is a turn.
VOICE_MIN_MS = 40
log = logging.getLogger(__name__)
Turn = TypeVar("Turn")


class Sound(StrEnum):
    """What the caller's speech during a reply is, so far."""

    NOISE = "noise"  # no words: nothing recognized, or only fillers
    BACKCHANNEL = "backchannel"  # only listed acknowledgements
    WORDS = "words"  # anything else: a real interruption or a turn


class Action(StrEnum):
    """What to do with the reply in flight."""

    NONE = "none"  # let it play
    PAUSE = "pause"  # hold its audio back until the speech is judged
    CUT = "cut"  # interrupt it now


def voice(pitched_ms: int | None) -> bool:
    """Whether a sound with ``pitched_ms`` of pitched speech is a voice (None: unknown,
    taken as a voice, so that only the words decide)."""
    return pitched_ms is None or pitched_ms >= VOICE_MIN_MS


class BargeInJudge:
    """Classifies caller speech heard while the assistant talks."""

    def __init__(self, settings: InterruptionSettings) -> None:
        self.settings = settings
        self._backchannels = [words_of(phrase) for phrase in settings.backchannels]

    def sound(self, hypothesis: str) -> Sound:
        """What a hypothesis (streaming or final) holds."""
        heard = [w for w in words_of(hypothesis) if w not in FILLERS]
        if not heard:
            return Sound.NOISE
        return Sound.BACKCHANNEL if self._only_backchannels(heard) else Sound.WORDS

    def during_reply(
        self,
        hypothesis: str,
        speech_ms: int,
        *,
        voiced_ms: int,
        paused: bool,
        pitched_ms: int | None = None,
    ) -> Action:
        """The action for an utterance ``speech_ms`` long so far (``voiced_ms`` of it
        speech frames, ``pitched_ms`` of those with a pitch, None if not measured) while a
        reply plays."""
        if speech_ms < self.settings.min_speech_ms:
            return Action.PAUSE if paused else Action.NONE
        if not voice(pitched_ms):
            return Action.NONE  # a noise: the reply plays on, however long it lasts
        sound = self.sound(hypothesis)
        if sound is Sound.WORDS or voiced_ms >= self.settings.backchannel_max_ms:
            return Action.CUT  # words, or a sound too long for an acknowledgement
        if sound is Sound.BACKCHANNEL:
            return Action.PAUSE if paused else Action.NONE
        return Action.PAUSE if self.settings.mode == "pause" else Action.CUT

    def _only_backchannels(self, heard: list[str]) -> bool:
        # Repeated or joined acknowledgements ("yeah yeah", "okay mm hmm") count too.
        reachable = {0}
        for start in range(len(heard)):
            if start not in reachable:
                continue
            for phrase in self._backchannels:
                if phrase and heard[start : start + len(phrase)] == phrase:
                    reachable.add(start + len(phrase))
        return len(heard) in reachable


@dataclass(frozen=True, slots=True)
class HeldReply(Generic[Turn]):
    """A reply cut by a barge-in that may be false: resumed if no words come in time.

    Its history entry waits too: ``confirm`` records it as interrupted (the barge-in was
    real); a resumed reply records one entry, with everything heard, when it ends.
    """

    response_id: str
    heard: str  # everything the caller heard of the reply, earlier parts included
    remainder: str  # what the caller has not heard yet
    turn: Turn  # the turn the reply answers
    confirm: Callable[[], None]


def join_text(before: str, after: str) -> str:
    """Two parts of a reply, one space between them (``after`` as is when alone)."""
    if not before.strip():
        return after
    return " ".join(part for part in (before.strip(), after.strip()) if part)


def unheard_remainder(text: str, heard: str) -> str:
    """The words of ``text`` after the heard prefix (heard is a word prefix of text)."""
    return " ".join(text.split()[len(heard.split()) :])


class PausableReply(Protocol):
    """The reply in flight, as barge-in sees it (a ResponseRunner)."""

    @property
    def paused_at(self) -> float | None: ...

    def pause(self) -> None: ...

    def unpause(self) -> None: ...


class BargeIn(Generic[Turn]):
    """The barge-in flow of one session: cut, pause, resume or let the reply play.

    Driven by the pipeline after each piece of caller input; acts on the reply through
    ``reply`` (the one in flight, if any), ``cut`` (cut it, held for a possible resume)
    and ``resume`` (say a held reply's remainder).
    """

    def __init__(
        self,
        settings: InterruptionSettings,
        *,
        reply: Callable[[], PausableReply | None],
        cut: Callable[[], Awaitable[HeldReply[Turn] | None]],
        resume: Callable[[HeldReply[Turn]], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.judge = BargeInJudge(settings)
        self._reply = reply
        self._cut = cut
        self._resume = resume
        self._held: HeldReply[Turn] | None = None
        # Where in the open utterance (its speech_ms) the reply was cut or paused: the
        # time to yield words is counted in the caller's audio, not on the clock, which a
        # busy machine or audio sent in bursts runs ahead of what was heard.
        self._cut_ms: int | None = None
        self._paused_ms: int | None = None
        self._let_play = False  # the open utterance was judged no interruption
        self._wordless = False  # ... because it gave no words in time: it is no turn either
        self._voiced_ms = 0  # of the open utterance, as last told
        self._open = False  # an utterance is open (on_speech came since the last end)

    @property
    def engaged(self) -> bool:
        """True while a reply plays or is held: caller speech is judged."""
        return self._reply() is not None or self._held is not None

    async def on_speech(
        self,
        hypothesis: Callable[[], str],
        speech_ms: int,
        voiced_ms: int,
        pitched_ms: int | None = None,
        *,
        heard_ms: int | None = None,
    ) -> None:
        """The caller's utterance is open, ``speech_ms`` long so far, ``voiced_ms`` voiced
        (``pitched_ms`` of it with a pitch; None: not measured); the hypothesis has heard
        its first ``heard_ms`` (None: all of it)."""
        self._open = True
        self._voiced_ms = voiced_ms
        if not self.settings.enabled or not self.engaged:
            return
        heard = hypothesis()
        heard_to = speech_ms if heard_ms is None else min(heard_ms, speech_ms)
        reply = self._reply()
        if reply is not None and not self._let_play:
            paused = reply.paused_at is not None
            action = self.judge.during_reply(
                heard, speech_ms, voiced_ms=voiced_ms, paused=paused, pitched_ms=pitched_ms
            )
            if action is Action.CUT:
                log.debug("barge-in: cut at %d ms of speech (hypothesis %r)", speech_ms, heard)
                self._paused_ms = None
                self._held = await self._cut()
                self._cut_ms = speech_ms
            elif action is Action.PAUSE and self._due(self._paused_ms, heard_to):
                self._let_play = self._wordless = True  # paused long enough without words
                self._paused_ms = None
                reply.unpause()
            elif action is Action.PAUSE:
                reply.pause()
                if self._paused_ms is None:
                    self._paused_ms = speech_ms
        held = self._held
        if (
            held is not None
            and self._due(self._cut_ms, heard_to)
            and self.judge.sound(heard) != Sound.WORDS
        ):
            self._let_play = self._wordless = True
            log.debug("barge-in: no words in time (hypothesis %r): resumed", heard)
            await self._resume_held()

    async def on_speech_end(self, final: str | None, pitched_ms: int | None = None) -> bool:
        """The utterance ended (``final`` None: no words at all; ``pitched_ms`` of its
        speech with a pitch, None if not measured); True if it is a turn."""
        if not self._open and final is None:
            return False  # no utterance was open: nothing ended
        self._open = False
        wordless, self._wordless = self._wordless, False
        voiced_ms, self._voiced_ms = self._voiced_ms, 0
        self._let_play = False
        self._paused_ms = None
        if not self.settings.enabled or not self.engaged:
            return final is not None
        log.debug(
            "barge-in: the utterance ended as %r (wordless: %s, pitch: %s ms)",
            final,
            wordless,
            pitched_ms,
        )
        # A sound that gave no words in its first ``resume_after_ms`` was judged noise and
        # the reply resumed: what the recognizer makes of its end does not undo that (a
        # hum's final is often words: "and mm"), unless the voice went on for longer than
        # any acknowledgement, which is speech the hypothesis was slow to hear. Nor does
        # the recognizer make words of a sound without a voice.
        long = voiced_ms >= self.settings.backchannel_max_ms
        spoken = final is not None and (long or not wordless) and voice(pitched_ms)
        if spoken and self.judge.sound(final or "") is Sound.WORDS:
            return True
        # A noise or an acknowledgement while the assistant talks: not a turn.
        await self._resume_held()
        reply = self._reply()
        if reply is not None:
            reply.unpause()
        return False

    def settle(self) -> None:
        """The reply is cut for good (a new turn, an explicit interrupt, the end)."""
        held, self._held = self._held, None
        self._cut_ms = None
        if held is not None:
            held.confirm()

    async def _resume_held(self) -> None:
        held, self._held = self._held, None
        self._cut_ms = None
        if held is None:
            return
        if self._reply() is not None:
            held.confirm()  # another reply took its place
            return
        await self._resume(held)

    def _due(self, since_ms: int | None, heard_to_ms: int) -> bool:
        """Whether the hypothesis has heard ``resume_after_ms`` of the utterance since
        ``since_ms`` (both in its speech_ms)."""
        return since_ms is not None and heard_to_ms - since_ms >= self.settings.resume_after_ms
