"""In-memory fakes of the runtime's ports, for unit tests of Session and SessionManager.

Each implements the same Protocol as the real adapter; none talks to a network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from engine.runtime.assistant import parse_assistant
from engine.runtime.ports.control_plane import (
    AssistantNotFound,
    CallRecord,
    CallSummary,
    FetchedAssistant,
    ToolFailed,
    ToolInvocation,
    TranscriptEntry,
)
from engine.runtime.ports.history import HistoryStatus
from engine.runtime.ports.provider_stats import RecognizerStats
from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderConfigError,
    ProviderSpec,
    Recognition,
    ToolSpec,
)
from engine.runtime.ports.turn import TurnDetectorError, TurnVerdict

TTS_RATE = 16_000


class FakeControlPlane:
    """Serves assistant documents from a dict; keeps the history writes it gets."""

    def __init__(self, assistants: Mapping[str, Mapping[str, Any]]) -> None:
        self._assistants = dict(assistants)
        self.calls: list[CallRecord] = []
        self.entries: list[TranscriptEntry] = []
        self.summaries: list[CallSummary] = []
        self.closed = False

    async def create_call(self, call: CallRecord, *, timeout_sec: float | None = None) -> None:
        self.calls.append(call)

    async def append_transcript(
        self, entry: TranscriptEntry, *, timeout_sec: float | None = None
    ) -> None:
        self.entries.append(entry)

    async def finalize_call(
        self, summary: CallSummary, *, timeout_sec: float | None = None
    ) -> None:
        self.summaries.append(summary)

    async def execute_tool(self, invocation: ToolInvocation, *, timeout_sec: float) -> Any:
        raise ToolFailed(f"the fake backend runs no tool {invocation.name!r}", "unavailable")

    async def close(self) -> None:
        self.closed = True

    async def fetch_assistant(self, assistant_id: str) -> FetchedAssistant:
        try:
            document = self._assistants[assistant_id]
        except KeyError:
            raise AssistantNotFound(assistant_id) from None
        return FetchedAssistant(parse_assistant(document, expected_id=assistant_id), "local")


class WordsLlm:
    """Replies with a fixed text, word by word."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str, None]:
        for word in self.reply.split(" "):
            yield word + " "
            await asyncio.sleep(0)


class ToneTts:
    """``ms_per_sentence`` of a constant tone per sentence, in 50 ms chunks."""

    sample_rate_hz = TTS_RATE

    def __init__(self, ms_per_sentence: int = 1000) -> None:
        self.ms_per_sentence = ms_per_sentence

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        for _ in range(self.ms_per_sentence // 50):
            yield b"\x01\x00" * (TTS_RATE // 20)
            await asyncio.sleep(0)


class EnergyVad:
    """Any non-zero 20 ms frame is speech."""

    frame_bytes = 640

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


class _FixedStream:
    def __init__(self, text: str) -> None:
        self.text = text

    async def feed(self, pcm16k: bytes) -> None:
        return None

    def partial(self) -> str:
        return ""

    async def finish(self) -> Recognition:
        return Recognition(self.text, 0.9)

    def cancel(self) -> None:
        return None


class FixedRecognizer:
    """Recognizes every utterance as ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def start_utterance(self) -> _FixedStream:
        return _FixedStream(self.text)


class FakeProviders:
    """A ProviderFactory (closable, as bootstrap wants); ``broken`` has invalid options."""

    def __init__(self, reply: str = "Hello there. How can I help?", heard: str = "hello") -> None:
        self.reply = reply
        self.heard = heard
        self.built: list[str] = []
        self.recognizer_figures = RecognizerStats()  # what metrics read; a test may set it

    def _check(self, section: str, spec: ProviderSpec) -> None:
        if spec.provider == "broken":
            raise ProviderConfigError(f"{section}.provider: broken on purpose")
        self.built.append(section)

    def language_model(self, spec: ProviderSpec) -> WordsLlm:
        self._check("llm", spec)
        return WordsLlm(self.reply)

    def synthesizer(self, spec: ProviderSpec) -> ToneTts:
        self._check("tts", spec)
        return ToneTts()

    def recognizer(self, spec: ProviderSpec) -> FixedRecognizer:
        self._check("asr", spec)
        return FixedRecognizer(self.heard)

    def vad(self, spec: ProviderSpec) -> EnergyVad:
        self._check("vad", spec)
        return EnergyVad()

    def turn_detector(self, spec: ProviderSpec) -> ScriptedTurnDetector:
        # Not recorded in `built`; with nothing scripted every check fails (fixed silence).
        if spec.provider == "broken":
            raise ProviderConfigError("turn.provider: broken on purpose")
        return ScriptedTurnDetector()

    async def warm_up(self) -> None:
        """Nothing to load."""

    def recognizer_stats(self) -> RecognizerStats:
        return self.recognizer_figures

    async def close(self) -> None:
        return None


class MemoryCallHistory:
    """One call's entries, kept in memory."""

    def __init__(self, record: CallRecord) -> None:
        self.record_ = record
        self.entries: list[dict[str, Any]] = []
        self.end_reason: str | None = None

    def record(self, role: Literal["user", "assistant", "tool"], text: str, **fields: Any) -> None:
        assert self.end_reason is None, "recorded after finalize"
        self.entries.append({"role": role, "text": text, **fields})

    async def finalize(self, end_reason: str) -> HistoryStatus:
        self.end_reason = end_reason
        n = len(self.entries)
        return HistoryStatus(True, n, n, 0, 0, 0, 0, True)


class MemoryHistory:
    """A history service that keeps every call it opened."""

    def __init__(self) -> None:
        self.calls: list[MemoryCallHistory] = []

    def open_call(self, record: CallRecord) -> MemoryCallHistory:
        self.calls.append(MemoryCallHistory(record))
        return self.calls[-1]


class ScriptedTurnDetector:
    """A TurnDetector answering from a script: per check, a probability or an exception.

    ``heard`` keeps the audio of every check. With ``gate`` set, a check waits for it
    (a slow model, so a test can resume speech or cancel meanwhile). A check past the end
    of the script raises TurnDetectorError, as an unavailable model would.
    """

    def __init__(self, *verdicts: float | Exception, gate: asyncio.Event | None = None) -> None:
        self._script = list(verdicts)
        self.gate = gate
        self.heard: list[bytes] = []

    def add(self, *verdicts: float | Exception) -> None:
        self._script.extend(verdicts)

    async def predict(self, pcm16k: bytes) -> TurnVerdict:
        self.heard.append(pcm16k)
        if self.gate is not None:
            await self.gate.wait()
        if not self._script:
            raise TurnDetectorError("no verdict scripted")
        verdict = self._script.pop(0)
        if isinstance(verdict, Exception):
            raise verdict
        return TurnVerdict(complete_probability=verdict, inference_ms=1.0)
