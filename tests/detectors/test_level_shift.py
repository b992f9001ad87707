"""Level shift: sustained shifts fire once, glitches and noise do not, the baseline re-bases."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.ewma import EwmaZScore
from detectors.level_shift import LevelShift
from tests.detectors.helpers import feed, new_detector

make = partial(new_detector, LevelShift)


def test_hand_computed_cusum_run() -> None:
    det = make(alpha=0.5, warmup=2, k=1.0, h=5.0, clip_z=3.0)
    out = feed(det, [9.0, 11.0, 12.5, 13.0])
    assert out.score[:2].tolist() == [0.0, 0.0] and np.isnan(out.baseline[0])
    # warm-up gave the exact running mean 10 and (Welford) variance 1
    assert out.baseline[2] == 10.0
    # point 3: r = 2.5, up sum 2.5 - k = 1.5, a run of 1 point with mean residual 2.5
    assert out.deviation[2] == 2.5
    assert out.score[2] == pytest.approx(1 - 0.5 ** ((1.5 / 5.0) ** 2))
    # then mean 10 + 0.5 * 2.5 = 11.25, variance 0.5 * (1 + 2.5 * 1.25) = 2.0625
    assert out.baseline[3] == 11.25
    r = (13.0 - 11.25) / np.sqrt(2.0625)
    assert out.deviation[3] == pytest.approx((2.5 + r) / 2)
    state = det.export_state()
    assert state["up"][0] == pytest.approx(1.5 + r - 1.0, rel=1e-6)
    assert (state["up_n"][0], state["down_n"][0], state["down"][0]) == (2, 0, 0.0)


def test_a_sustained_shift_an_ewma_z_score_adapts_to_fires_exactly_once() -> None:
    rng = np.random.default_rng(4)
    calm = 100.0 + rng.normal(0.0, 1.0, 300)
    shifted = 102.0 + rng.normal(0.0, 1.0, 300)
    det, ewma = make(), EwmaZScore()
    ewma.resize(1)
    feed(det, calm)
    feed(ewma, calm)
    out = feed(det, shifted, start=300.0)
    fired = np.flatnonzero(out.score >= 0.5)
    # ~h / (2 - k) = 10 points, slowed as the slow baseline leans towards the new level
    assert len(fired) == 1 and fired[0] < 40
    # the run's mean residual: above k, below the true 2 std as the baseline leaned over
    assert 1.0 < out.deviation[fired[0]] < 2.0
    # the EWMA z-score never sees a 2-std step as 4 std, and then adapts away from it
    assert feed(ewma, shifted, start=300.0).score.max() < 0.5
    # re-based: the next point's baseline is near the new level
    assert out.baseline[fired[0] + 1] == pytest.approx(102.0, abs=0.6)


def test_a_downward_shift_has_a_negative_deviation_and_a_big_one_scores_near_one() -> None:
    rng = np.random.default_rng(8)
    det = make()
    feed(det, 50.0 + rng.normal(0.0, 1.0, 200))
    out = feed(det, 40.0 + rng.normal(0.0, 1.0, 50), start=200.0)
    fired = np.flatnonzero(out.score >= 0.5)
    # clipped at 3 std, each point adds at most 2 to the sum: h = 10 takes 5 points
    assert fired.tolist() == [4]
    assert out.deviation[4] < -8.0 and out.score[4] > 0.99


def test_a_single_glitch_does_not_fire() -> None:
    rng = np.random.default_rng(1)
    det = make()
    feed(det, 50.0 + rng.normal(0.0, 1.0, 200))
    out = feed(det, np.r_[1e6, 50.0 + rng.normal(0.0, 1.0, 50)], start=200.0)
    assert out.score.max() < 0.5
    # the glitch was clipped: one point adds clip_z - k = 2 to the sum
    assert out.score[0] == pytest.approx(1 - 0.5 ** ((2.0 / 10.0) ** 2))


def test_score_is_zero_until_warm_whatever_the_values() -> None:
    det = make(warmup=6, h=1.0)
    out = feed(det, [1.0, 1e6, -1e6, 5.0, 1e5, 0.0, 1e9, 1e9])
    assert out.score[:6].tolist() == [0.0] * 6
    assert out.score[6] > 0.0


def test_gaussian_noise_never_fires() -> None:
    rng = np.random.default_rng(42)
    n_series, n_points = 1000, 300
    det = make(n_series)
    rows = np.tile(np.arange(n_series), n_points)
    ts = np.repeat(np.arange(n_points, dtype=np.float64), n_series)
    out = det.update(rows, ts, 20.0 + rng.normal(0.0, 2.0, n_series * n_points))
    assert int((out.score >= 0.5).sum()) == 0
    assert out.score.mean() < 0.01


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
        ({"warmup": -3}, "warmup must be >= 0, got -3"),
        ({"k": -1.0}, "k must be >= 0, got -1.0"),
        ({"h": 0.0}, "h must be > 0, got 0.0"),
        ({"k": 3.0, "clip_z": 3.0}, "clip_z must be > k (3.0), got 3.0"),
        ({"min_std": 0.0}, "min_std must be > 0, got 0.0"),
        ({"rel_min_std": -1.0}, "rel_min_std must be >= 0, got -1.0"),
    ],
)
def test_bad_parameters_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        LevelShift(**params)
    assert str(err.value) == message
