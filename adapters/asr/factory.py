"""Builds the recognizer an assistant's ``asr:`` section asks for (engine event loop).

``asr.final`` chooses where each utterance's final transcript comes from:

- ``whisper`` (default): the hybrid recognizer (pocketsphinx interims and endpointing,
  Whisper tiny.en final, pocketsphinx's final as the fallback); see adapters/asr/hybrid.py.
- ``grammar``: pocketsphinx only, its final from one pass of the phrase grammar over the
  utterance (from the utterance's own cepstral mean; the phrase trigram if no phrase fits).
- ``none``: pocketsphinx only, one grammar pass from the initial cepstral mean and no
  trigram: the cheapest, less accurate on telephone audio (for very loaded hosts).

``asr.final_wait_ms`` (whisper only, default 700): how long after the caller reaches the
end of the turn to wait for a Whisper result still running or queued before using
pocketsphinx's final (not at all when the pool's recent pace says the pass cannot be done
by then). 700 ms covers one
pass of a several-second question on a loaded 2-core host (330-615 ms measured,
docs/BENCHMARKS.md): at one call the final is Whisper's, whatever the timing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.asr.pocketsphinx import PocketsphinxRecognizer
from adapters.asr.runtime import RecognizerRuntime
from engine.runtime.ports.providers import (
    ProviderConfigError,
    SpeechRecognizer,
    reject_unknown_options,
)

__all__ = ["FINAL_SOURCES", "recognizer_from_options"]

FINAL_SOURCES = ("whisper", "grammar", "none")
DEFAULT_FINAL_WAIT_MS = 700
_OPTION_KEYS = frozenset({"phrases", "final", "final_wait_ms"})


def recognizer_from_options(
    options: Mapping[str, Any], *, runtime: RecognizerRuntime
) -> SpeechRecognizer:
    """Build from an assistant's ``asr:`` options; raise ProviderConfigError if invalid.

    ``runtime``: the engine process's recognizer runtime (decoder process, Whisper pool).
    """
    reject_unknown_options("asr", "pocketsphinx", options, _OPTION_KEYS)
    final = options.get("final", "whisper")
    if final not in FINAL_SOURCES:
        raise ProviderConfigError(f"asr.final: must be one of {', '.join(FINAL_SOURCES)}")
    wait = options.get("final_wait_ms", DEFAULT_FINAL_WAIT_MS)
    if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= 10_000:
        raise ProviderConfigError("asr.final_wait_ms: must be an integer from 0 to 10000")
    phrases = options.get("phrases", [])
    if not isinstance(phrases, list | tuple) or not all(isinstance(p, str) for p in phrases):
        raise ProviderConfigError("asr.phrases: must be a list of strings")
    live = PocketsphinxRecognizer(
        phrases, runtime=runtime, refine=final != "none", confirm=final == "whisper"
    )
    if final != "whisper":
        return live
    from adapters.asr.hybrid import HybridRecognizer, phrase_prompt

    runtime.whisper_pool()  # starts loading the model in the background, not at a turn
    return HybridRecognizer(
        live,
        runtime.whisper_pool,
        prompt=phrase_prompt(list(phrases)),
        final_wait_ms=wait,
        counters=runtime.counters,
    )
