"""The assistant definition: one schema for local YAML files and backend documents."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.ports.providers import ProviderSpec
from engine.runtime.tool_config import (
    DEFAULT_TOOL_ROUNDS_MAX,
    ToolDeclaration,
    builtin_tool,
    parse_tool_rounds_max,
    parse_tools,
)

ASSISTANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_UNSURE_REPLY = "Sorry, I didn't catch that. Could you say it again?"
DEFAULT_UNSURE_CONFIDENCE = 0.6


class AssistantConfigError(ValueError):
    """An assistant definition breaks the schema; the message names the field."""

    def __init__(self, field_path: str, problem: str, origin: str = "") -> None:
        self.field_path = field_path
        self.problem = problem
        self.origin = origin
        where = f"{origin}: " if origin else ""
        super().__init__(f"{where}{field_path}: {problem}")


def is_valid_assistant_id(assistant_id: str) -> bool:
    """True when the id is safe to put in a path or a URL."""
    return bool(ASSISTANT_ID_PATTERN.fullmatch(assistant_id))


@dataclass(frozen=True, slots=True)
class VadSettings:
    """Voice activity detection and endpointing knobs."""

    aggressiveness: int = 2  # webrtcvad mode 0..3
    min_speech_ms: int = 120  # speech shorter than this is noise, not a turn
    end_silence_ms: int = 600  # silence after speech that ends the user's turn
    pre_speech_pad_ms: int = 300  # audio kept before speech start for the recognizer
    provider: str = "webrtc"  # the VAD adapter: webrtc (embedded) or testkit
    frame_ms: int = 20  # VAD frame length: 10, 20 or 30 ms

    def provider_spec(self) -> ProviderSpec:
        """The VAD provider and its options, as the provider factory takes them."""
        options = {"aggressiveness": self.aggressiveness, "frame_ms": self.frame_ms}
        return ProviderSpec(self.provider, options)


# Short acknowledgements a caller makes while listening: not barge-ins, not turns.
DEFAULT_BACKCHANNELS: tuple[str, ...] = (
    "mm hmm",
    "mhm",
    "hmm",
    "uh huh",
    "okay",
    "ok",
    "right",
    "yeah",
    "yep",
    "yes",
    "i see",
)
INTERRUPTION_MODES = ("cut", "pause")


# Words no English sentence ends with: articles, possessives, prepositions, conjunctions,
# auxiliaries and subject pronouns ("a table for", "do you have any", "could i"). Kept
# short: a word some sentences do end with ("have", "do", "that") would hold those turns
# to turn.max_silence_ms.
UNFINISHED_WORDS = (
    *("a", "an", "the", "my", "your", "our", "their", "its", "any"),
    *("for", "to", "of", "on", "at", "in", "with", "from", "about", "into"),
    *("and", "or", "but", "because", "if", "than"),
    *("is", "are", "was", "can", "could", "would", "i", "we"),
)


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Semantic end of turn: a turn detector asked early in each pause."""

    detector: str = "none"  # the detector: smart_turn, or none (the fixed end silence)
    check_after_ms: int = 200  # silence after which the detector is asked, once a pause
    complete_threshold: float = 0.5  # a probability at least this ends the turn at once
    max_silence_ms: int = 1500  # a turn judged incomplete ends after this much silence
    # A "complete" verdict on words ending in one of these is overruled (incomplete).
    unfinished_words: tuple[str, ...] = UNFINISHED_WORDS
    # Start the reply (model and first sentence's speech) on the early final's words while
    # the caller pauses; used only when the final has the same words (early_reply.py).
    early_reply: bool = True

    def provider_spec(self) -> ProviderSpec:
        """The detector, as the provider factory takes it."""
        return ProviderSpec(self.detector, {})


@dataclass(frozen=True, slots=True)
class InterruptionSettings:
    """Barge-in: may the caller cut the assistant off, after how much speech, and how.

    ``mode``: ``cut`` stops the reply at ``min_speech_ms`` of speech; ``pause`` first only
    holds back its audio and cuts once the speech turns out to be words. Either way a reply
    whose interruption yields no words within ``resume_after_ms`` goes on from what the
    caller has not heard, and ``backchannels`` (speech no longer than
    ``backchannel_max_ms``) neither cut it nor become turns.
    """

    enabled: bool = True
    min_speech_ms: int = 300
    mode: str = "cut"
    backchannels: tuple[str, ...] = DEFAULT_BACKCHANNELS
    backchannel_max_ms: int = 900
    resume_after_ms: int = 600


@dataclass(frozen=True, slots=True)
class AssistantConfig:
    """A validated assistant definition."""

    id: str
    name: str
    greeting: str = ""
    system_prompt: str = ""
    language: str = "en-US"
    llm: ProviderSpec = field(default_factory=lambda: ProviderSpec("scripted", {}))
    tts: ProviderSpec = field(default_factory=lambda: ProviderSpec("espeak", {}))
    asr: ProviderSpec = field(default_factory=lambda: ProviderSpec("pocketsphinx", {}))
    vad: VadSettings = field(default_factory=VadSettings)
    interruption: InterruptionSettings = field(default_factory=InterruptionSettings)
    tools: tuple[ToolDeclaration, ...] = ()
    tool_rounds_max: int = DEFAULT_TOOL_ROUNDS_MAX
    turn: TurnSettings = field(default_factory=TurnSettings)
    # A spoken final below this confidence is a guess: the assistant says ``unsure_reply``
    # instead of answering what it may have misheard.
    unsure_reply: str = DEFAULT_UNSURE_REPLY
    unsure_confidence: float = DEFAULT_UNSURE_CONFIDENCE

    def tool(self, name: str) -> ToolDeclaration | None:
        """The declared tool ``name``; the built-in end_call even when undeclared."""
        for tool in self.tools:
            if tool.name == name:
                return tool
        return builtin_tool(name) if name == "end_call" else None


# The top-level fields of an assistant definition (docs/control-plane.openapi.yaml lists them too).
ASSISTANT_FIELDS = {
    "id",
    "name",
    "greeting",
    "system_prompt",
    "language",
    "llm",
    "tts",
    "asr",
    "vad",
    "interruption",
    "tools",
    "tool_rounds_max",
    "turn",
    "unsure_reply",
    "unsure_confidence",
}


def parse_assistant(
    document: Any, *, expected_id: str | None = None, origin: str = ""
) -> AssistantConfig:
    """Validate a raw document (parsed YAML or JSON) into an AssistantConfig."""
    if not isinstance(document, Mapping):
        raise AssistantConfigError("(document)", "must be a mapping of fields", origin)
    unknown = sorted(set(map(str, document)) - ASSISTANT_FIELDS)
    if unknown:
        raise AssistantConfigError(unknown[0], "unknown field", origin)

    def err(path: str, problem: str) -> AssistantConfigError:
        return AssistantConfigError(path, problem, origin)

    assistant_id = _string(document, "id", err, required=expected_id is None)
    if not assistant_id:
        assistant_id = expected_id or ""
    if not is_valid_assistant_id(assistant_id):
        raise err("id", f"must match {ASSISTANT_ID_PATTERN.pattern}")
    if expected_id is not None and assistant_id != expected_id:
        raise err("id", f"is {assistant_id!r} but the assistant was asked for as {expected_id!r}")

    vad_doc = _mapping(document, "vad", err)
    vad = VadSettings(
        aggressiveness=_int(vad_doc, "vad.aggressiveness", "aggressiveness", 2, 0, 3, err),
        min_speech_ms=_int(vad_doc, "vad.min_speech_ms", "min_speech_ms", 120, 0, 5000, err),
        end_silence_ms=_int(vad_doc, "vad.end_silence_ms", "end_silence_ms", 600, 100, 10000, err),
        pre_speech_pad_ms=_int(
            vad_doc, "vad.pre_speech_pad_ms", "pre_speech_pad_ms", 300, 0, 2000, err
        ),
        provider=_vad_provider(vad_doc, err),
        frame_ms=_vad_frame_ms(vad_doc, err),
    )
    _reject_unknown(vad_doc, "vad", set(VadSettings.__dataclass_fields__), err)
    intr_doc = _mapping(document, "interruption", err)
    interruption = InterruptionSettings(
        enabled=_flag(intr_doc, "interruption.enabled", True, err),
        min_speech_ms=_int(
            intr_doc, "interruption.min_speech_ms", "min_speech_ms", 300, 0, 10000, err
        ),
        mode=_interruption_mode(intr_doc, err),
        backchannels=_backchannels(intr_doc, err),
        backchannel_max_ms=_int(
            intr_doc, "interruption.backchannel_max_ms", "backchannel_max_ms", 900, 0, 5000, err
        ),
        resume_after_ms=_int(
            intr_doc, "interruption.resume_after_ms", "resume_after_ms", 600, 100, 10000, err
        ),
    )
    _reject_unknown(intr_doc, "interruption", set(InterruptionSettings.__dataclass_fields__), err)

    return AssistantConfig(
        turn=_turn(_mapping(document, "turn", err), vad, err),
        id=assistant_id,
        name=_string(document, "name", err, required=False) or assistant_id,
        greeting=_string(document, "greeting", err, required=False),
        system_prompt=_string(document, "system_prompt", err, required=False),
        language=_string(document, "language", err, required=False) or "en-US",
        llm=_provider(document, "llm", "scripted", err),
        tts=_provider(document, "tts", "espeak", err),
        asr=_provider(document, "asr", "pocketsphinx", err),
        vad=vad,
        interruption=interruption,
        tools=parse_tools(document.get("tools"), err),
        tool_rounds_max=parse_tool_rounds_max(document.get("tool_rounds_max"), err),
        unsure_reply=_string(document, "unsure_reply", err, required=False) or DEFAULT_UNSURE_REPLY,
        unsure_confidence=_fraction(document, "unsure_confidence", DEFAULT_UNSURE_CONFIDENCE, err),
    )


def _turn(doc: Mapping[str, Any], vad: VadSettings, err: Any) -> TurnSettings:
    _reject_unknown(doc, "turn", set(TurnSettings.__dataclass_fields__), err)
    detector = doc.get("detector", "none")
    if not isinstance(detector, str) or not detector:
        raise err("turn.detector", "must be a detector name (smart_turn) or none")
    check_after = _int(doc, "turn.check_after_ms", "check_after_ms", 200, 20, 5000, err)
    longest = _int(doc, "turn.max_silence_ms", "max_silence_ms", 1500, 100, 10000, err)
    if detector != "none" and not check_after < vad.end_silence_ms <= longest:
        raise err(
            "turn",
            "check_after_ms must be shorter than vad.end_silence_ms, "
            "and max_silence_ms at least as long",
        )
    return TurnSettings(
        detector=detector,
        check_after_ms=check_after,
        complete_threshold=_fraction(doc, "turn.complete_threshold", 0.5, err),
        max_silence_ms=longest,
        unfinished_words=_unfinished_words(doc, err),
        early_reply=_flag(doc, "turn.early_reply", True, err),
    )


def _flag(doc: Mapping[str, Any], path: str, default: bool, err: Any) -> bool:
    value = doc.get(path.rsplit(".", 1)[-1], default)
    if not isinstance(value, bool):
        raise err(path, "must be true or false")
    return value


def _interruption_mode(doc: Mapping[str, Any], err: Any) -> str:
    mode = doc.get("mode", "cut")
    if mode not in INTERRUPTION_MODES:
        raise err("interruption.mode", f"must be one of {', '.join(INTERRUPTION_MODES)}")
    return str(mode)


def _backchannels(doc: Mapping[str, Any], err: Any) -> tuple[str, ...]:
    value = doc.get("backchannels", list(DEFAULT_BACKCHANNELS))
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise err("interruption.backchannels", "must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _unfinished_words(doc: Mapping[str, Any], err: Any) -> tuple[str, ...]:
    value = doc.get("unfinished_words", UNFINISHED_WORDS)
    if not isinstance(value, list | tuple) or not all(
        isinstance(w, str) and w.strip() for w in value
    ):
        raise err("turn.unfinished_words", "must be a list of words ([] turns the rule off)")
    return tuple(w.strip().lower() for w in value)


def _vad_provider(vad_doc: Mapping[str, Any], err: Any) -> str:
    name = vad_doc.get("provider", "webrtc")
    if not isinstance(name, str) or not name:
        raise err("vad.provider", "must be a provider name")
    return name


def _vad_frame_ms(vad_doc: Mapping[str, Any], err: Any) -> int:
    value = vad_doc.get("frame_ms", 20)
    if isinstance(value, bool) or value not in (10, 20, 30):
        raise err("vad.frame_ms", "must be 10, 20 or 30")
    return int(value)


def _fraction(doc: Mapping[str, Any], path: str, default: float, err: Any) -> float:
    value = doc.get(path.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise err(path, "must be a number from 0 to 1")
    return float(value)


def _string(doc: Mapping[str, Any], key: str, err: Any, *, required: bool) -> str:
    value = doc.get(key)
    if value is None:
        if required:
            raise err(key, "is required")
        return ""
    if not isinstance(value, str):
        raise err(key, "must be a string")
    return value.strip()


def _mapping(doc: Mapping[str, Any], key: str, err: Any) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise err(key, "must be a mapping")
    return value


def _int(
    doc: Mapping[str, Any], path: str, key: str, default: int, lo: int, hi: int, err: Any
) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise err(path, f"must be an integer from {lo} to {hi}")
    return value


def _reject_unknown(doc: Mapping[str, Any], path: str, known: set[str], err: Any) -> None:
    unknown = sorted(set(map(str, doc)) - known)
    if unknown:
        raise err(f"{path}.{unknown[0]}", "unknown field")


def _provider(doc: Mapping[str, Any], key: str, default: str, err: Any) -> ProviderSpec:
    section = _mapping(doc, key, err)
    name = section.get("provider", default)
    if not isinstance(name, str) or not name:
        raise err(f"{key}.provider", "must be a provider name")
    options = {str(k): v for k, v in section.items() if k != "provider"}
    return ProviderSpec(provider=name, options=options)
