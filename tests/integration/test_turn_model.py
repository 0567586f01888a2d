"""Smart Turn v3.2 on onnxruntime behind the turn-detector port: the real model, loaded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from adapters.providers import EmbeddedProviderFactory
from adapters.turn.smart_turn import SmartTurnDetector
from engine.runtime.ports.providers import ProviderConfigError, ProviderSpec
from engine.runtime.ports.turn import TurnDetectorBusy, TurnVerdict
from tests.helpers.signals import voice_like
from tests.helpers.turn_clips import pause_after, speech

# (question, where the cut falls) on which the model tells a finished question from one cut
# off, in this voice and these pauses; many eSpeak clips it cannot tell (docs/BENCHMARKS.md).
QUESTIONS = [
    ("Is the restaurant open on Christmas Eve?", 0.6),
    ("What time do you open on Sundays?", 0.6),
    ("I would like to book a table for four people.", 0.6),
]
VOICE = "en-us+f3"


@pytest.fixture(scope="module")
def detector() -> Iterator[SmartTurnDetector]:
    built = SmartTurnDetector()
    yield built
    built.close()


class GatedDetector(SmartTurnDetector):
    """A detector whose checks wait for ``gate`` once a worker has taken them."""

    def __init__(self, *, workers: int, max_waiting: int) -> None:
        super().__init__(workers=workers, max_waiting=max_waiting)
        self.taken = threading.Event()
        self.gate = threading.Event()

    def _check(self, pcm16k: bytes) -> TurnVerdict:
        self.taken.set()
        assert self.gate.wait(30)
        return super()._check(pcm16k)


async def test_scores_a_clip_as_the_reference_pipeline_does(detector: SmartTurnDetector) -> None:
    # Pipecat's analyzer (transformers' features, onnxruntime) gave 0.029157 on this clip.
    verdict = await detector.predict(voice_like(3.0, seed=1))
    assert verdict.complete_probability == pytest.approx(0.029157, abs=2e-3)
    assert verdict.inference_ms > 0


async def test_complete_questions_score_higher_than_cut_ones(
    detector: SmartTurnDetector,
) -> None:
    # eSpeak draws its fricatives' noise anew in each process, so scores move between runs
    # (a complete question from 0.44 to 0.91): each pair is compared, and the means.
    complete, cut = [], []
    for question, cut_at in QUESTIONS:
        spoken = await speech(question, VOICE)
        complete.append((await detector.predict(pause_after(spoken))).complete_probability)
        cut.append(
            (await detector.predict(pause_after(spoken, cut_at=cut_at))).complete_probability
        )
        assert complete[-1] > cut[-1], question
    assert sum(complete) / len(complete) - sum(cut) / len(cut) > 0.4, (complete, cut)


async def test_a_full_pool_refuses_at_once_and_a_withdrawn_check_frees_its_place() -> None:
    detector = GatedDetector(workers=1, max_waiting=1)
    try:
        running = asyncio.create_task(detector.predict(voice_like(1.0)))
        waiting = asyncio.create_task(detector.predict(voice_like(1.0)))
        assert await asyncio.to_thread(detector.taken.wait, 30)  # both tasks have asked
        with pytest.raises(TurnDetectorBusy):
            await detector.predict(voice_like(1.0))
        waiting.cancel()
        again = asyncio.create_task(detector.predict(voice_like(1.0)))
        detector.gate.set()
        verdicts = await asyncio.gather(running, again)
        assert all(0.0 <= v.complete_probability <= 1.0 for v in verdicts)
        assert waiting.cancelled()
    finally:
        detector.gate.set()
        detector.close()


def test_the_provider_factory_builds_one_detector_per_process() -> None:
    factory = EmbeddedProviderFactory()
    spec = ProviderSpec("smart_turn", {})
    first = factory.turn_detector(spec)
    assert factory.turn_detector(spec) is first
    assert isinstance(first, SmartTurnDetector)
    assert EmbeddedProviderFactory().turn_detector(spec) is not first
    first.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ProviderSpec("silence", {}), "unknown provider 'silence'"),
        (ProviderSpec("smart_turn", {"threshold": 0.5}), r"turn\.threshold: unknown option"),
    ],
)
def test_the_factory_rejects_unknown_turn_specs(spec: ProviderSpec, message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        EmbeddedProviderFactory().turn_detector(spec)
