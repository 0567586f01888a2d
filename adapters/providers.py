"""The provider factory: which adapter serves each provider name an assistant uses.

Embedded providers need nothing but pip: `scripted` (LLM), `espeak` (TTS),
`pocketsphinx` (ASR), `webrtc` (VAD). `openai` is any OpenAI-compatible streaming
chat-completions server (OpenAI, vLLM, Ollama, llama.cpp), reached through one pooled
HTTP client per process. Built providers are cached per spec where building is costly
(a recognizer's language model) and the object is shareable.

`testkit` (VAD, ASR, LLM and TTS) names the near-zero-cost stand-ins of `adapters/testkit/`
for load tests that measure the engine alone.

The factory owns what its providers share for the life of the engine process: the
recognizer runtime (decoder process, Whisper pool, counters; adapters/asr/runtime.py), the
eSpeak engine (its worker thread and sentence cache) and the HTTP client. ``close()`` stops
them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from adapters.asr.runtime import RecognizerRuntime
from engine.runtime.ports.provider_stats import RecognizerStats
from engine.runtime.ports.providers import (
    LanguageModel,
    ProviderConfigError,
    ProviderSpec,
    SpeechRecognizer,
    SpeechSynthesizer,
    VoiceActivityDetector,
    reject_unknown_options,
)
from engine.runtime.ports.turn import TurnDetector, TurnDetectorError

if TYPE_CHECKING:
    from adapters.tts.espeak import EspeakEngine

log = logging.getLogger(__name__)
WHISPER_LOAD_TIMEOUT_SEC = 60.0


def _key(spec: ProviderSpec) -> str:
    return spec.provider + json.dumps(spec.options, sort_keys=True, default=str)


class EmbeddedProviderFactory:
    """ProviderFactory over the embedded, offline adapters.

    ``recognizer_runtime``: the engine process's recognizer runtime (bootstrap builds it);
    without one the factory builds its own. Either way the factory owns and closes it.
    """

    def __init__(
        self,
        *,
        llm_api_key: str | None = None,
        llm_allowed_base_urls: tuple[str, ...] = (),
        engine_processes: int = 1,
        recognizer_runtime: RecognizerRuntime | None = None,
    ) -> None:
        # Engine processes sharing this host's cores: model threads are sized from it.
        self._engine_processes = engine_processes
        self._asr = recognizer_runtime or RecognizerRuntime(engine_processes=engine_processes)
        self._espeak: EspeakEngine | None = None  # built with the first espeak synthesizer
        self._llm_api_key = llm_api_key
        self._llm_allowed_base_urls = llm_allowed_base_urls
        self._http: httpx.AsyncClient | None = None
        self._recognizers: dict[str, SpeechRecognizer] = {}
        self._synthesizers: dict[str, SpeechSynthesizer] = {}
        self._turn_detector: TurnDetector | None = None  # one model session per process
        self._close_turn_detector: Callable[[], None] | None = None

    def language_model(self, spec: ProviderSpec) -> LanguageModel:
        if spec.provider == "testkit":
            from adapters.testkit.llm import FixedReplyLanguageModel

            return FixedReplyLanguageModel.from_options(spec.options)
        if spec.provider == "scripted":
            from adapters.llm.scripted import ScriptedLanguageModel

            return ScriptedLanguageModel.from_options(spec.options)
        if spec.provider == "openai":
            from adapters.llm.openai_compatible import OpenAICompatibleLanguageModel

            return OpenAICompatibleLanguageModel.from_options(
                spec.options,
                client=self._http_client(),
                api_key=self._llm_api_key,
                allowed_base_urls=self._llm_allowed_base_urls,
            )
        raise ProviderConfigError(
            f"llm.provider: unknown provider {spec.provider!r} (scripted, openai)"
        )

    def _http_client(self) -> httpx.AsyncClient:
        # One pooled client for every session's LLM requests; built on first use so
        # engines that only use embedded providers open no HTTP machinery.
        if self._http is None:
            self._http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                trust_env=False,
            )
        return self._http

    async def warm_up(self) -> None:
        """Load the Whisper model and the turn detector, and start pocketsphinx's decoder
        process now: off the loop, before the port opens, not on the first call's turn."""
        await self._asr.warm_up(WHISPER_LOAD_TIMEOUT_SEC)
        try:  # the turn detector's model too: not on the event loop at the first call's start
            await asyncio.to_thread(self.turn_detector, ProviderSpec("smart_turn", {}))
        except TurnDetectorError as exc:
            log.warning("the turn detector did not load (%s): turns end on silence", exc)

    def recognizer_stats(self) -> RecognizerStats:
        """The recognizer runtime's counters (metrics read them at scrape time)."""
        return self._asr.stats()

    async def close(self) -> None:
        """Release the HTTP client; stop the decoder process and the Whisper, eSpeak and turn
        detector workers."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await asyncio.to_thread(self._asr.close)
        if self._espeak is not None:
            await asyncio.to_thread(self._espeak.close)
            self._espeak = None
        if self._close_turn_detector is not None:
            self._close_turn_detector()
            self._turn_detector = self._close_turn_detector = None

    def synthesizer(self, spec: ProviderSpec) -> SpeechSynthesizer:
        key = _key(spec)
        cached = self._synthesizers.get(key)
        if cached is not None:
            return cached
        if spec.provider == "testkit":
            from adapters.testkit.tts import FixedDurationSynthesizer

            testkit_tts: SpeechSynthesizer = FixedDurationSynthesizer.from_options(spec.options)
            self._synthesizers[key] = testkit_tts
            return testkit_tts
        if spec.provider != "espeak":
            raise ProviderConfigError(f"tts.provider: unknown provider {spec.provider!r} (espeak)")
        from adapters.tts.espeak import EspeakEngine, EspeakSynthesizer

        if self._espeak is None:
            self._espeak = EspeakEngine()
        built = EspeakSynthesizer.from_options(spec.options, engine=self._espeak)
        self._synthesizers[key] = built
        return built

    def recognizer(self, spec: ProviderSpec) -> SpeechRecognizer:
        key = _key(spec)
        cached = self._recognizers.get(key)
        if cached is not None:
            return cached
        if spec.provider == "testkit":
            from adapters.testkit.asr import CarriedTranscriptRecognizer

            testkit_asr: SpeechRecognizer = CarriedTranscriptRecognizer.from_options(spec.options)
            self._recognizers[key] = testkit_asr
            return testkit_asr
        if spec.provider != "pocketsphinx":
            raise ProviderConfigError(
                f"asr.provider: unknown provider {spec.provider!r} (pocketsphinx)"
            )
        from adapters.asr.factory import recognizer_from_options

        built: SpeechRecognizer = recognizer_from_options(spec.options, runtime=self._asr)
        self._recognizers[key] = built
        return built

    def vad(self, spec: ProviderSpec) -> VoiceActivityDetector:
        if spec.provider == "testkit":
            from adapters.testkit.vad import SignalVad

            return SignalVad.from_options(spec.options)
        if spec.provider != "webrtc":
            raise ProviderConfigError(f"vad.provider: unknown provider {spec.provider!r} (webrtc)")
        from adapters.vad.webrtc import WebRtcVad

        options: dict[str, Any] = dict(spec.options)
        return WebRtcVad.from_options(options)

    def turn_detector(self, spec: ProviderSpec) -> TurnDetector:
        """The process's one turn detector, shared by every session (built on first use).

        ``smart_turn`` (Smart Turn v3.2 on onnxruntime) takes no options: when to ask and
        what to make of the answer belong to the speech input. TurnDetectorError when the
        model file is not installed.
        """
        if spec.provider != "smart_turn":
            raise ProviderConfigError(
                f"turn.provider: unknown provider {spec.provider!r} (smart_turn)"
            )
        reject_unknown_options("turn", spec.provider, spec.options, ())
        if self._turn_detector is None:
            from adapters.turn.smart_turn import SmartTurnDetector, default_workers

            workers = default_workers(self._engine_processes)
            detector = SmartTurnDetector(workers=workers, max_waiting=2 * workers)
            self._turn_detector, self._close_turn_detector = detector, detector.close
        return self._turn_detector

    def validate(self, llm: ProviderSpec, tts: ProviderSpec) -> None:
        """Build the cheap providers once to surface option errors (no requests made)."""
        self.language_model(llm)
        self.synthesizer(tts)
