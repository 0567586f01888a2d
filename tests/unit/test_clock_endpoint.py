"""Audio that stops arriving mid-turn: the clock ends the turn as the silence would have."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.runtime import events as ev
from engine.runtime.assistant import AssistantConfig, TurnSettings, VadSettings
from engine.runtime.pipeline import DuplexPipeline
from tests.helpers.fakes import EnergyVad, FixedRecognizer, ScriptedTurnDetector, ToneTts, WordsLlm

SPEECH = b"\x01\x00" * 320  # 20 ms: speech to the energy VAD
SILENCE = bytes(640)


class _Speech:
    line = "LINEAR16/16000"

    def __init__(self, detector: ScriptedTurnDetector) -> None:
        self.detector = detector

    def vad(self) -> EnergyVad:
        return EnergyVad()

    def recognizer(self) -> FixedRecognizer:
        return FixedRecognizer("i would like to book a table for four")

    def turn_detector(self) -> ScriptedTurnDetector:
        return self.detector


class _Recorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, role: str, text: str, **fields: Any) -> None:
        self.entries.append({"role": role, "text": text, **fields})


async def _turn_ended_by_the_clock(verdict: float) -> dict[str, Any]:
    """Speech, silence past the check, then no audio at all: the user turn's metadata."""
    config = AssistantConfig(
        id="t",
        name="t",
        vad=VadSettings(min_speech_ms=60, end_silence_ms=200),
        turn=TurnSettings(detector="scripted", check_after_ms=60, max_silence_ms=400),
    )
    detector = ScriptedTurnDetector(verdict)
    finals: asyncio.Queue[ev.Transcript] = asyncio.Queue()

    async def emit(event: ev.Event) -> None:
        if isinstance(event, ev.Transcript) and event.is_final:
            finals.put_nowait(event)

    recorder = _Recorder()
    pipeline = DuplexPipeline(
        config,
        llm=WordsLlm("Sure."),
        synthesizer=ToneTts(100),
        speech=_Speech(detector),
        recorder=recorder,
        emit=emit,
    )
    for _ in range(20):
        await pipeline.user_audio(SPEECH)
    for _ in range(3):  # 60 ms: the check is asked at the last frame
        await pipeline.user_audio(SILENCE)
    await asyncio.wait_for(finals.get(), timeout=10)  # no more audio: the clock decides
    await pipeline.close()
    assert len(detector.heard) == 1
    return next(e["metadata"] for e in recorder.entries if e["role"] == "user")


async def test_the_clock_honours_an_incomplete_verdict() -> None:
    turn = await _turn_ended_by_the_clock(0.1)
    assert turn["ended_by"] == "max_silence"  # waited for turn.max_silence_ms


async def test_the_clock_ends_a_turn_judged_complete_after_the_end_silence() -> None:
    turn = await _turn_ended_by_the_clock(0.9)
    assert turn["ended_by"] == "silence"
