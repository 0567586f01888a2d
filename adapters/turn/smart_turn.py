"""Smart Turn v3.2 (ONNX, CPU int8) as the turn detector of one engine process.

Built once per engine process by the provider factory; ``predict`` is awaited on the event
loop, while the features and the model run on this detector's own worker threads (a small
fixed pool, like the Whisper pool). A check that would have to wait behind more than
``max_waiting`` others is refused at once (TurnDetectorBusy): by the time it ran the pause
would be over, and the speech input falls back to the fixed end silence instead.

The model file is not in any wheel we install: ``scripts/fetch_turn_model.py`` takes it,
pinned by hash, from the ``pipecat-ai`` wheel at install time and puts it in
``<sys.prefix>/share/voice-engine/models/`` (see ``installed_model_path``), with its
licence (BSD-2-Clause) beside it. Nothing of pipecat is installed or imported.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from adapters.turn.features import smart_turn_features
from engine.cpus import usable_cpus
from engine.runtime.ports.turn import TurnDetectorBusy, TurnDetectorError, TurnVerdict

__all__ = ["MODEL_FILE", "SmartTurnDetector", "default_workers", "installed_model_path"]

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
# Relative to sys.prefix; scripts/fetch_turn_model.py writes to the same place.
MODEL_DIR = Path("share", "voice-engine", "models")
_INSTALL_HINT = (
    "install it with the engine's Python: `python scripts/fetch_turn_model.py` "
    "(scripts/run.sh, scripts/test.sh and the Dockerfile run it)"
)


def installed_model_path() -> Path:
    """Where the install step puts the model: inside the running Python's environment."""
    return Path(sys.prefix) / MODEL_DIR / MODEL_FILE


def default_workers(processes: int = 1) -> int:
    """Worker threads for one engine process: the usable cores shared among ``processes``."""
    return max(1, usable_cpus() // max(1, processes))


def _session(path: Path) -> Any:
    """One single-threaded, sequential onnxruntime session over the model file."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


class SmartTurnDetector:
    """The turn-detector port over Smart Turn v3.2: P(the caller's turn is complete).

    ``workers`` threads share one onnxruntime session (it is safe to run concurrently);
    at most ``max_waiting`` checks wait for a free worker, more raise TurnDetectorBusy.
    A missing or unreadable model raises TurnDetectorError here, at construction.
    """

    def __init__(
        self, model_path: Path | None = None, *, workers: int = 1, max_waiting: int = 2
    ) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError(f"workers must be >= 1 and max_waiting >= 0: {workers}, {max_waiting}")
        path = model_path if model_path is not None else installed_model_path()
        if not path.is_file():
            raise TurnDetectorError(f"the Smart Turn model is missing at {path}: {_INSTALL_HINT}")
        try:
            self._session = _session(path)
        except Exception as exc:  # onnxruntime raises its own (untyped) errors
            raise TurnDetectorError(
                f"the Smart Turn model at {path} did not load ({exc}): {_INSTALL_HINT}"
            ) from exc
        self.model_path = path
        self._capacity = workers + max_waiting
        self._in_flight = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smart-turn")

    async def predict(self, pcm16k: bytes) -> TurnVerdict:
        """Judge the pause at the end of ``pcm16k`` (the model hears its last 8 s).

        Cancelling the awaiting task withdraws a check that has not started yet.
        """
        with self._lock:
            if self._in_flight >= self._capacity:
                raise TurnDetectorBusy(f"{self._in_flight} turn checks in flight")
            self._in_flight += 1
        try:
            job: Future[TurnVerdict] = self._pool.submit(self._check, pcm16k)
        except RuntimeError as exc:  # the pool was shut down
            self._release()
            raise TurnDetectorError("the turn detector is closed") from exc
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def check(self, pcm16k: bytes) -> TurnVerdict:
        """One check on the calling thread (benchmarks and tools; the engine uses predict)."""
        return self._check(pcm16k)

    def close(self) -> None:
        """Stop the workers once the checks already taken are done."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _release(self, _job: object = None) -> None:
        with self._lock:
            self._in_flight -= 1

    def _check(self, pcm16k: bytes) -> TurnVerdict:
        started = time.thread_time()  # one thread does it all: intra-op threads are 1
        features = smart_turn_features(pcm16k)
        try:
            outputs = self._session.run(None, {"input_features": features[np.newaxis]})
        except Exception as exc:
            raise TurnDetectorError(f"Smart Turn inference failed: {exc}") from exc
        # The graph ends in a sigmoid: its output (named "logits") is already P(complete).
        probability = float(np.asarray(outputs[0]).reshape(-1)[0])
        return TurnVerdict(
            complete_probability=min(1.0, max(0.0, probability)),
            inference_ms=(time.thread_time() - started) * 1000.0,
        )
