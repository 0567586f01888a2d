"""The caller's speech: VAD, endpointing and streaming recognition of 16 kHz PCM16 (event loop).

A small state machine over VAD frames. Idle, it keeps ``pre_speech_pad_ms`` of audio
so the recognizer hears the start of the first word; after ``min_speech_ms`` of
speech it declares speech started and streams frames to the recognizer; in each pause
``EndOfTurn`` decides when the turn is over (a turn detector's verdict early in the
silence, else ``end_silence_ms``), and the transcript is finalized.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.runtime.assistant import TurnSettings, VadSettings
from engine.runtime.audio_clock import AudioClock
from engine.runtime.end_of_turn import EndOfTurn, TurnEnd
from engine.runtime.events import Event, SpeechStarted, SpeechStopped, Transcript
from engine.runtime.ports.providers import (
    INPUT_SAMPLE_RATE_HZ,
    ConfirmsPhrase,
    ContinuesCaller,
    FinishesInCallerTime,
    HearsPitch,
    LearnsLines,
    PreparesFinal,
    ProviderError,
    ReadsEarlyFinal,
    Recognition,
    RecognitionStream,
    SpeechRecognizer,
    TellsPartialLag,
    VoiceActivityDetector,
)
from engine.runtime.ports.turn import TurnDetector

log = logging.getLogger(__name__)

_BYTES_PER_MS = INPUT_SAMPLE_RATE_HZ * 2 // 1000
INTERIM_INTERVAL_SEC = 0.2
# Silence after which a recognizer that can (PreparesFinal) starts its final pass, so it
# runs during the rest of the end-silence wait instead of after it.
PREPARE_FINAL_AFTER_MS = 160
# With a turn detector the turn may end at its first check (~200 ms): the final pass starts
# sooner, so that it is ready then (one call, real time: end of speech -> final p50 491 and
# 406 ms against 576 ms from 160 ms; docs/BENCHMARKS.md). A gap between words this long
# withdraws it (a running pass is wasted), so without a detector it waits for 160 ms.
PREPARE_FINAL_WITH_DETECTOR_MS = 60
# The most recent audio of an utterance kept for the turn detector (Smart Turn reads 8 s).
TURN_AUDIO_MS = 8000
PITCH_WINDOW_MS = 40  # a frame and the ones before it, for HearsPitch: two 80 Hz periods


@dataclass(frozen=True, slots=True)
class FinishedUtterance:
    """A caller turn that ended: its transcript and when speech stopped."""

    utterance_id: str
    recognition: Recognition
    speech_ended_at: float  # monotonic
    transcribed_at: float  # monotonic
    ended_by: str = TurnEnd.SILENCE  # a TurnEnd, or "client" (END_OF_TURN, half-close)
    pitched_ms: int | None = None  # its speech frames with a pitch (None: not measured)


class SpeechInput:
    """Turns a stream of 16 kHz PCM16 into speech events and finished utterances."""

    def __init__(
        self,
        vad: VoiceActivityDetector,
        recognizer: SpeechRecognizer,
        settings: VadSettings,
        emit: Callable[[Event], Awaitable[None]],
        *,
        interim_transcripts: Callable[[], bool],
        line: str = "",
        clock: AudioClock | None = None,
        detector: TurnDetector | None = None,
        turn: TurnSettings | None = None,
        hear_pitch: Callable[[], bool] = lambda: False,
    ) -> None:
        """``hear_pitch``: whether to measure the pitch of speech frames now (barge-in
        asks while a reply plays; the VAD must be HearsPitch)."""
        self._line = line
        self._clock = clock or AudioClock()
        self._received_bytes = 0
        self._vad = vad
        self._asr = recognizer
        self._emit = emit
        self._interims = interim_transcripts
        self._frame_bytes = vad.frame_bytes
        frame_ms = self._frame_bytes // _BYTES_PER_MS
        self._frame_ms = frame_ms
        self._start_frames = max(1, settings.min_speech_ms // frame_ms)
        self._end_silence_ms = settings.end_silence_ms
        self._turn = EndOfTurn(turn or TurnSettings(), settings.end_silence_ms, detector)
        check_after = self._turn.check_after_ms
        prepare_ms = (
            PREPARE_FINAL_AFTER_MS
            if check_after is None
            else min(PREPARE_FINAL_WITH_DETECTOR_MS, check_after)
        )
        self._prepare_frames = max(1, prepare_ms // frame_ms)
        self._recent: deque[bytes] = deque(maxlen=max(1, TURN_AUDIO_MS // frame_ms))
        self._pad: deque[bytes] = deque(maxlen=max(1, settings.pre_speech_pad_ms // frame_ms))
        self._pending = b""
        self._offset_ms = 0  # stream position of the next frame
        self._voiced_run = 0
        self._silent_run = 0
        self._stream: RecognitionStream | None = None
        self._previous: RecognitionStream | None = None  # this caller's last utterance
        self._utterance_id = ""
        self._speech_ms = 0
        self._voiced_ms = 0  # of the open utterance: its speech frames only
        self._last_interim = 0.0
        self._last_voiced_at = 0.0  # monotonic time the last speech frame arrived
        self._last_partial = ""
        self._pitch = vad if isinstance(vad, HearsPitch) else None
        self._hear_pitch = hear_pitch
        self._window: deque[bytes] = deque(maxlen=max(1, PITCH_WINDOW_MS // frame_ms))
        self._pitched_run = 0  # pitched frames of the voiced run that may start speech
        self._pitched_ms: int | None = None  # of the open utterance (None: not measured)

    @property
    def speaking(self) -> bool:
        """True between speech start and end of turn."""
        return self._stream is not None

    @property
    def speech_ms(self) -> int:
        """Milliseconds of the current utterance so far (0 when not speaking)."""
        return self._speech_ms if self._stream is not None else 0

    @property
    def voiced_ms(self) -> int:
        """Milliseconds of speech frames in the current utterance (0 when not speaking)."""
        return self._voiced_ms if self._stream is not None else 0

    @property
    def pitched_ms(self) -> int | None:
        """Milliseconds of speech frames with a pitch (a voice) in the current utterance;
        None when not measured (a VAD that cannot tell, or ``hear_pitch`` was off)."""
        return self._pitched_ms if self._stream is not None else None

    @property
    def heard_ms(self) -> int:
        """How much of the open utterance (as ``speech_ms``) ``hypothesis()`` has heard:
        all of it but what a recognizer decoding elsewhere has not reached yet."""
        stream = self._stream
        if stream is None:
            return 0
        if isinstance(stream, ReadsEarlyFinal) and stream.early_text():
            return self._speech_ms
        lag = stream.partial_lag_ms() if isinstance(stream, TellsPartialLag) else 0
        return max(0, self._speech_ms - lag)

    def hypothesis(self) -> str:
        """The recognizer's best hypothesis of the open utterance so far ("" if none): its
        early final once that is done (ReadsEarlyFinal: the caller paused), else the
        streaming one."""
        stream = self._stream
        if stream is None:
            return ""
        if isinstance(stream, ReadsEarlyFinal) and (early := stream.early_text()):
            return early
        return stream.partial()

    def likely_final(self) -> str | None:
        """The words the open utterance will likely end with, while the caller pauses: the
        recognizer's early final once it is ready (ReadsEarlyFinal), unless the end of turn
        expects more (judged incomplete, or a last word no sentence ends with); else None."""
        stream = self._stream
        if not isinstance(stream, ReadsEarlyFinal) or self._silent_run < self._prepare_frames:
            return None
        early = stream.early_text()
        if not early or self._turn.expects_more((early, *stream.early_alternatives())):
            return None
        return early

    async def feed(self, pcm16k: bytes) -> FinishedUtterance | None:
        """Process audio; return the utterance it finished, if any.

        Never waits for the turn detector: while a check runs, frames the caller has
        reached go through as usual. Frames sent ahead of the caller (faster than real
        time) wait in the buffer until the verdict is in, so that it lands at the same
        point of the audio as it would in real time; a later feed (``b""`` will do) or
        ``end_turn`` takes them.
        """
        self._pending += pcm16k
        self._received_bytes += len(pcm16k)
        self._clock.received(self._received_bytes // _BYTES_PER_MS)
        return await self._drain(hold_ahead=True)

    async def end_turn(self, ended_by: str = "client") -> FinishedUtterance | None:
        """Finalize now: the client says the caller finished (client-side VAD), or the
        clock does (no audio for ``silence_needed_ms``: ``ended_by`` a TurnEnd)."""
        finished = await self._drain(hold_ahead=False)
        if self._stream is None:
            return finished
        return finished or await self._finish(ended_by)

    def silence_needed_ms(self) -> int:
        """How long without audio ends the turn: ``vad.end_silence_ms``, or
        ``turn.max_silence_ms`` once the detector (or the words) judged it incomplete."""
        return self._turn.silence_needed_ms(self._words, self._sure)

    def clock_end(self) -> TurnEnd:
        """Why a turn the clock ends (no audio for ``silence_needed_ms``) ended."""
        needed = self.silence_needed_ms()
        return TurnEnd.MAX_SILENCE if needed > self._end_silence_ms else TurnEnd.SILENCE

    def cancel(self) -> None:
        """Drop the utterance in progress (session end)."""
        self._turn.close()
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    @property
    def end_of_turn(self) -> EndOfTurn:
        """The pause logic of this caller (its check, for tests and benchmarks)."""
        return self._turn

    async def _drain(self, *, hold_ahead: bool) -> FinishedUtterance | None:
        """Process the buffered frames. While a decision is pending, frames ahead of the
        caller stay buffered (``hold_ahead``) or, at the end of input, wait for it."""
        finished: FinishedUtterance | None = None
        while len(self._pending) >= self._frame_bytes:
            if self._turn.deciding and self._ahead_of_caller():
                if hold_ahead:
                    break
                await self._turn.settle(self._words)
            frame = self._pending[: self._frame_bytes]
            self._pending = self._pending[self._frame_bytes :]
            done = await self._frame(frame)
            finished = finished or done
        return finished

    def _ahead_of_caller(self) -> bool:
        """The next frame arrived before the caller got to it (by more than a frame)."""
        ahead_ms = self._clock.ahead_sec(self._offset_ms + self._frame_ms) * 1000
        return ahead_ms > self._frame_ms

    def _words(self) -> tuple[str, ...] | None:
        """What the caller said so far, its likely readings (the best first): the early
        final's (None while it runs), else the latest interim (calling ``partial()``
        would start a live pass just for this)."""
        stream = self._stream
        if isinstance(stream, ReadsEarlyFinal) and (early := stream.early_text()) != "":
            return None if early is None else (early, *stream.early_alternatives())
        return (self._last_partial,)

    def _sure(self) -> bool | None:
        """Whether the recognizer heard a listed phrase for sure (None: still deciding)."""
        stream = self._stream
        return stream.phrase_confirmed() if isinstance(stream, ConfirmsPhrase) else False

    async def _frame(self, frame: bytes) -> FinishedUtterance | None:
        voiced = self._vad.is_speech(frame)
        self._offset_ms += self._frame_ms
        self._window.append(frame)
        pitched = voiced and self._pitched()
        if self._stream is None:
            self._pad.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            self._pitched_run = self._pitched_run + pitched if voiced else 0
            if self._voiced_run >= self._start_frames:
                await self._start()
            return None
        self._speech_ms += self._frame_ms
        self._recent.append(frame)
        await self._stream.feed(frame)
        if voiced:
            self._voiced_ms += self._frame_ms
            self._count_pitch(pitched)
            if self._silent_run >= self._prepare_frames:
                self._notify_early_final(self._stream, resumed=True)
            self._silent_run = 0
            self._turn.speech()
            self._last_voiced_at = time.monotonic()
        else:
            self._silent_run += 1
            if self._silent_run == self._prepare_frames:
                self._notify_early_final(self._stream, resumed=False)
            silent_ms = self._silent_run * self._frame_ms
            ended = self._turn.silence(
                silent_ms, lambda: b"".join(self._recent), self._words, self._sure
            )
            if ended is not None:
                return await self._finish(ended)
        await self._maybe_interim()
        return None

    def _pitched(self) -> bool:
        """Whether the latest frame has a pitch (False when not measured now)."""
        if self._pitch is None or not self._hear_pitch():
            return False
        return self._pitch.has_pitch(b"".join(self._window))

    def _count_pitch(self, pitched: bool) -> None:
        if self._pitched_ms is None:
            return
        if not self._hear_pitch():
            self._pitched_ms = None  # not measured all along: unknown
        elif pitched:
            self._pitched_ms += self._frame_ms

    @staticmethod
    def _notify_early_final(stream: RecognitionStream, *, resumed: bool) -> None:
        if isinstance(stream, PreparesFinal):
            if resumed:
                stream.speech_resumed()
            else:
                stream.silence_began()

    async def _start(self) -> None:
        self._utterance_id = f"u-{uuid.uuid4().hex[:12]}"
        started_ms = self._offset_ms - self._voiced_run * self._frame_ms
        previous = self._previous
        if isinstance(previous, ContinuesCaller):
            self._stream = previous.next_utterance()
        elif self._line and isinstance(self._asr, LearnsLines):
            self._stream = self._asr.start_utterance_on(self._line)
        else:
            self._stream = self._asr.start_utterance()
        self._speech_ms = self._voiced_ms = self._voiced_run * self._frame_ms
        measured = self._pitch is not None and self._hear_pitch()
        self._pitched_ms = self._pitched_run * self._frame_ms if measured else None
        self._pitched_run = 0
        self._silent_run = 0
        self._last_partial = ""
        self._last_interim = self._last_voiced_at = time.monotonic()
        await self._emit(SpeechStarted(self._utterance_id, max(0, started_ms)))
        padding = b"".join(self._pad)
        self._recent.clear()
        self._recent.extend(self._pad)
        self._turn.speech()
        self._pad.clear()
        self._voiced_run = 0
        await self._stream.feed(padding)

    async def _maybe_interim(self) -> None:
        if self._stream is None or not self._interims():
            return
        now = time.monotonic()
        if now - self._last_interim < INTERIM_INTERVAL_SEC:
            return
        self._last_interim = now
        partial = self._stream.partial()
        if partial and partial != self._last_partial:
            self._last_partial = partial
            await self._emit(Transcript(self._utterance_id, partial, is_final=False))

    async def _finish(self, ended_by: str) -> FinishedUtterance | None:
        stream, self._stream = self._stream, None
        assert stream is not None
        self._turn.close()
        log.debug(
            "turn ended (%s) at %d ms of silence", ended_by, self._silent_run * self._frame_ms
        )
        self._previous = stream
        stop_ms = self._offset_ms - self._silent_run * self._frame_ms
        await self._emit(SpeechStopped(self._utterance_id, max(0, stop_ms)))
        self._silent_run = 0
        try:
            if isinstance(stream, FinishesInCallerTime):
                recognition = await stream.finish_at(self._clock.live_at(self._offset_ms))
            else:
                recognition = await stream.finish()
        except ProviderError:
            stream.cancel()
            raise
        text = recognition.text.strip()
        if not text:
            return None
        await self._emit(
            Transcript(
                self._utterance_id,
                text,
                is_final=True,
                confidence=recognition.confidence,
                source=recognition.source,
            )
        )
        return FinishedUtterance(
            self._utterance_id,
            Recognition(text, recognition.confidence, recognition.source),
            # End of speech is when the last speech frame arrived, not when the
            # trailing silence confirmed it.
            speech_ended_at=self._last_voiced_at,
            transcribed_at=time.monotonic(),
            ended_by=ended_by,
            pitched_ms=self._pitched_ms,
        )
