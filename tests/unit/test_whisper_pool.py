"""The Whisper pool's order: a caller already waiting goes first; when a pass may start now."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

import numpy as np
import pytest

from adapters.asr.whisper import WhisperPool, WhisperResult

SPEECH = np.zeros(1600, dtype="<i2").tobytes()  # what is heard does not matter here


class _GatedModel:
    """Stands in for Whisper: each pass waits for the gate, then reports its prompt."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.order: list[str] = []
        self.started = threading.Semaphore(0)
        self._prompts: dict[int, str] = {}

    def prompt_tokens(self, prompt: str) -> list[int]:
        token = len(self._prompts)
        self._prompts[token] = prompt
        return [token]

    def transcribe_batch(
        self, features: Sequence[object], prompts: Sequence[list[int]], *, audio_sec: float
    ) -> list[WhisperResult]:
        self.started.release()
        assert self.gate.wait(30), "the test never opened the gate"
        said = [self._prompts[p[0]] for p in prompts]
        self.order += said
        return [WhisperResult(text, False, -0.1) for text in said]


@pytest.fixture
def held() -> Iterator[tuple[WhisperPool, _GatedModel]]:
    """A one-worker pool whose worker is busy with a first pass until the gate opens."""
    model = _GatedModel()
    pool = WhisperPool(lambda: model, workers=1, max_pending=8, max_batch=1)  # type: ignore[arg-type, return-value]
    assert pool.wait_loaded(30) is model
    assert pool.idle()
    first = pool.submit(SPEECH, "running")
    assert first is not None
    assert model.started.acquire(timeout=30)  # the worker took it
    yield pool, model
    model.gate.set()
    pool.close()


def _submit(pool: WhisperPool, prompt: str) -> Future[WhisperResult]:
    future = pool.submit(SPEECH, prompt)
    assert future is not None
    return future


def test_a_caller_waiting_for_its_pass_goes_before_passes_begun_in_a_silence(
    held: tuple[WhisperPool, _GatedModel],
) -> None:
    pool, model = held
    assert not pool.idle()  # the worker is busy: a pass submitted now would wait
    early = [_submit(pool, name) for name in ("silence-1", "silence-2")]
    waiting = _submit(pool, "waiting-1")
    later = _submit(pool, "waiting-2")
    assert pool.expedite(waiting) == 0  # next
    assert pool.expedite(later) == 1  # after the caller who was waiting before it
    assert pool.expedite(waiting) == 0  # asking again changes nothing
    model.gate.set()
    for future in [*early, waiting, later]:
        future.result(timeout=30)
    assert model.order == ["running", "waiting-1", "waiting-2", "silence-1", "silence-2"]


def test_a_pass_no_longer_waiting_cannot_be_expedited(
    held: tuple[WhisperPool, _GatedModel],
) -> None:
    pool, model = held
    withdrawn = _submit(pool, "withdrawn")
    assert withdrawn.cancel()
    assert pool.expedite(withdrawn) == 0  # still in the queue, but counts for nothing
    model.gate.set()
    done = _submit(pool, "done")
    done.result(timeout=30)
    assert pool.expedite(done) is None
    assert pool.idle()


def test_withdrawn_passes_before_an_expedited_one_are_not_counted(
    held: tuple[WhisperPool, _GatedModel],
) -> None:
    pool, model = held
    first = _submit(pool, "first")
    second = _submit(pool, "second")
    assert pool.expedite(first) == 0
    assert first.cancel()  # its caller spoke again
    assert pool.expedite(second) == 0
    model.gate.set()
    second.result(timeout=30)
    assert model.order == ["running", "second"]


class _SlowModel(_GatedModel):
    """Every pass takes at least ``delay_sec``: a slow host."""

    def __init__(self, delay_sec: float) -> None:
        super().__init__()
        self.gate.set()
        self._delay_sec = delay_sec

    def transcribe_batch(
        self, features: Sequence[object], prompts: Sequence[list[int]], *, audio_sec: float
    ) -> list[WhisperResult]:
        threading.Event().wait(self._delay_sec)
        return super().transcribe_batch(features, prompts, audio_sec=audio_sec)


def test_the_pace_follows_the_passes_the_host_runs() -> None:
    model = _SlowModel(delay_sec=0.8)
    pool = WhisperPool(lambda: model, workers=1, max_pending=8, max_batch=1)  # type: ignore[arg-type, return-value]
    try:
        assert pool.wait_loaded(30) is model
        before = pool.pass_sec()
        assert before < 0.8  # an idle host's pass
        for future in [_submit(pool, f"p{i}") for i in range(2)]:
            future.result(timeout=30)
        assert pool.pass_sec() > before
    finally:
        pool.close()


def test_a_pass_further_back_is_due_later(held: tuple[WhisperPool, _GatedModel]) -> None:
    pool, model = held
    first = _submit(pool, "first")
    second = _submit(pool, "second")
    assert pool.eta(second) > pool.eta(first) > 0
    pool.expedite(second)  # its caller is waiting
    assert pool.eta(first) > pool.eta(second)
    model.gate.set()
    second.result(timeout=30)
    assert pool.eta(second) == 0


def test_a_pool_is_quiet_only_some_time_after_its_last_pass(
    held: tuple[WhisperPool, _GatedModel],
) -> None:
    pool, model = held
    assert not pool.idle()  # a pass runs
    model.gate.set()
    _submit(pool, "next").result(timeout=30)
    assert pool.idle()  # a pass submitted now starts now
    assert not pool.idle(for_sec=60)  # but the pool is not one that has been quiet
