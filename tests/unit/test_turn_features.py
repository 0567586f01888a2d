"""Smart Turn's input features match the reference (transformers' WhisperFeatureExtractor).

The golden figures were computed once with transformers 5.24.0
(``WhisperFeatureExtractor(chunk_length=8)``, called as Pipecat's Smart Turn analyzer calls
it: the last 8 s, zero-padded at the front, ``do_normalize=True``) on the clips below;
Pipecat 1.14.0's own numpy copy gave the same figures to 1.2e-7.
"""

from __future__ import annotations

import numpy as np
import pytest

from adapters.turn.features import FRAMES, MEL_BINS, smart_turn_features
from tests.helpers.signals import voice_like

GOLDEN = {
    (3.0, 1): {
        "mean": 0.197472,
        "std": 0.476730,
        "points": {
            (0, 0): 0.032891,
            (0, 799): 1.599399,
            (10, 500): 1.301964,
            (20, 700): 1.445007,
            (40, 760): 0.546500,
            (60, 790): 0.580489,
            (79, 799): 0.604336,
            (5, 450): -0.134473,
        },
    },
    (9.5, 2): {
        "mean": 0.633399,
        "std": 0.351124,
        "points": {
            (0, 0): 0.007349,
            (0, 799): 0.028114,
            (10, 500): 0.495640,
            (20, 700): 0.396540,
            (40, 760): 0.402995,
            (60, 790): 0.435922,
            (79, 799): 0.463253,
            (5, 450): 1.463955,
        },
    },
}
TOLERANCE = 1e-5  # the figures are rounded to 1e-6; float32 noise is ~1e-7


@pytest.mark.parametrize(("seconds", "seed"), list(GOLDEN))
def test_features_match_the_reference(seconds: float, seed: int) -> None:
    golden = GOLDEN[(seconds, seed)]
    features = smart_turn_features(voice_like(seconds, seed))
    assert features.shape == (MEL_BINS, FRAMES) and features.dtype == np.float32
    assert features.mean() == pytest.approx(golden["mean"], abs=TOLERANCE)
    assert features.std() == pytest.approx(golden["std"], abs=TOLERANCE)
    for (mel, frame), value in golden["points"].items():
        assert features[mel, frame] == pytest.approx(value, abs=TOLERANCE), (mel, frame)


def test_short_audio_is_zero_padded_at_the_front() -> None:
    clip = voice_like(2.0)
    assert np.array_equal(smart_turn_features(clip), smart_turn_features(bytes(32_000) + clip))


def test_only_the_last_eight_seconds_count() -> None:
    last = voice_like(8.0, seed=4)
    assert np.array_equal(smart_turn_features(last), smart_turn_features(voice_like(3.0) + last))


def test_a_stray_odd_byte_is_ignored() -> None:
    clip = voice_like(1.0)
    assert np.array_equal(smart_turn_features(clip), smart_turn_features(clip + b"\x01"))
