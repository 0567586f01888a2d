"""The pocketsphinx recognizer (SpeechRecognizer port; engine event loop): PocketSphinx 5
with the en-US model in its wheel, decoding in the engine's decoder process.

Domain model. The generic en-US trigram is poor on synthetic voices, so an assistant may
list the phrases it expects. From them a small dictionary, a grammar accepting exactly one
phrase and a phrase trigram are built (adapters/asr/domain_model.py, decoders.py). One
phrase, not ``<phrase>+``: with repetition allowed, 8 kHz speech of "what are your
opening hours" came out as "when are you open when are you open". Words missing from the
dictionary are dropped from the phrases with a warning.

One pass per utterance, decoded while the caller speaks. With a domain model the final
transcript comes from one grammar pass over the utterance: the phrase grammar from the
utterance's cepstral mean (CMN), then the phrase trigram if the grammar found no path.
The mean matters (a fresh decoder's is off for a new caller or channel), so the pass
starts from the caller's own mean from their last utterance (ContinuesCaller) or, for a
new caller, the last one learnt on the same kind of line (LearnsLines: encoding and
rate). From a known mean the pass starts with the caller's first word as a live pass and
the final job, sent when the caller has been silent ~160 ms (``silence_began``), only
decodes the tail: when many turns end together they do not queue behind each other's
whole passes. The generic model (no phrases) has no grammar pass: it decodes live and
its final is that pass's result; interims (``partial()``) read the live pass.

Where it runs. ``Decoder.process_raw`` holds the GIL for the whole call, so every
decoding job runs in the engine process's decoder process (adapters/asr/decode_process.py,
jobs in decoder_jobs.py); the stream (pocketsphinx_stream.py) only sends audio and reads
answers. The runtime (runtime.py) owns the decoder process. docs/ARCHITECTURE.md has the
picture; docs/benchmarks/recognition.md the measurements behind these choices.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from adapters.asr.decoders import DecoderPool, DecoderPoolStats
from adapters.asr.domain_model import words
from adapters.asr.pocketsphinx_stream import PocketsphinxStream, StreamSetup
from adapters.asr.runtime import RecognizerRuntime
from engine.runtime.ports.providers import (
    ProviderConfigError,
    ProviderError,
    RecognitionStream,
    reject_unknown_options,
)

__all__ = ["DecoderPoolStats", "PocketsphinxRecognizer", "PocketsphinxStream"]

_log = logging.getLogger(__name__)
_OPTION_KEYS = frozenset({"phrases"})


class PocketsphinxRecognizer:
    """SpeechRecognizer port on PocketSphinx with the en-US model shipped in its wheel.

    With ``phrases`` it recognizes with a domain model built from them (see the module
    docstring), else with the generic en-US trigram; a domain model that cannot be built
    falls back to the generic one with a warning. Transcripts are lower case.

    Construction is slow the first time for a phrase set in a runtime (it builds the model
    and one decoder, ~0.1-0.5 s). Every stream must end with ``finish()`` or ``cancel()``,
    which return its decoder.
    """

    def __init__(
        self,
        phrases: Sequence[str] = (),
        *,
        runtime: RecognizerRuntime,
        # False: the final pass starts from a fresh decoder's cepstral mean and has no
        # trigram fallback (``asr.final: none``): cheaper, worse on telephone audio.
        refine: bool = True,
        # True: a grammar phrase is confirmed with the phrase trigram (the hybrid skips
        # Whisper for a confirmed one).
        confirm: bool = False,
    ) -> None:
        key = tuple(" ".join(words(phrase)) for phrase in phrases)
        key = tuple(phrase for phrase in dict.fromkeys(key) if phrase)  # order kept, deduped
        self.phrases: tuple[str, ...] = key
        """The phrases (lower case, normalized) the domain model was built from."""
        self._runtime = runtime
        self._pool = self._checked_pool(key)
        if key and self._pool.model is None:
            _log.warning("asr.phrases: no usable phrase; using the generic model")
        self._setup = StreamSetup(
            key=self._pool.key,
            domain=self._pool.model is not None,
            cmn_init=self._pool.cmn_init,
            refine=refine,
            decoder=runtime.decoder,
            count=runtime.counters.add,
            live_ids=runtime.next_live_id,
            confirm=confirm and refine,
        )
        if self._pool.model is not None:
            # The decoder process builds its own copy of the model: now, not at the first turn.
            runtime.decoder.warm(self._pool.key).add_done_callback(_log_failed_warm_up)

    def _checked_pool(self, key: tuple[str, ...]) -> DecoderPool:
        try:
            return self._runtime.decoder_pool(key)
        except Exception as exc:
            if not key:
                raise ProviderError(f"pocketsphinx: cannot load the en-US model: {exc}") from exc
            _log.warning("asr.phrases: domain model failed (%s); using the generic model", exc)
            return self._runtime.decoder_pool(())

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, runtime: RecognizerRuntime
    ) -> PocketsphinxRecognizer:
        """Build from an assistant's ``asr:`` options; raise ProviderConfigError if invalid."""
        reject_unknown_options("asr", "pocketsphinx", options, _OPTION_KEYS)
        phrases = options.get("phrases", [])
        if not isinstance(phrases, list | tuple) or not all(isinstance(p, str) for p in phrases):
            raise ProviderConfigError("asr.phrases: must be a list of strings")
        return cls(phrases, runtime=runtime)

    @property
    def uses_domain_model(self) -> bool:
        """True when recognizing with a model built from the assistant's phrases."""
        return self._pool.model is not None

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Words the domain decoder can recognize (empty with the generic model)."""
        if self._pool.model is None:
            return frozenset()
        lines = self._pool.model.dictionary.splitlines()
        return frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in lines if line)

    async def decoder_process_pool_stats(self) -> DecoderPoolStats:
        """This model's decoders in the decoder process (where live and final passes run)."""
        return await asyncio.wrap_future(self._runtime.decoder.pool_stats(self._pool.key))

    def pool_stats(self) -> DecoderPoolStats:
        """This model's decoders on the engine's side (one, built to check the model)."""
        return self._pool.stats()

    def start_utterance(self) -> RecognitionStream:
        return self.open_stream()

    def start_utterance_on(self, line: str) -> RecognitionStream:
        """LearnsLines: a new caller starts from the mean the last one on ``line`` left."""
        return self.open_stream(line)

    def open_stream(self, line: str = "") -> PocketsphinxStream:
        """``start_utterance`` with the concrete type (its ``finish`` takes options)."""
        # Cheap: the decoder is borrowed by the first feed, in the decoder process.
        return PocketsphinxStream(self._setup, line=line)


def _log_failed_warm_up(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("asr: the decoder process could not load the model: %s", future.exception())
