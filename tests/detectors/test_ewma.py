"""EWMA z-score: warm-up, sensitivity, false-positive rate, std floor, winsorised update."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.ewma import EwmaZScore, z_to_score
from tests.detectors.helpers import feed, new_detector

make = partial(new_detector, EwmaZScore)


def test_hand_computed_first_points() -> None:
    det = make(alpha=0.5, warmup=2)
    out = feed(det, np.array([1.0, 3.0, 5.0]))
    # point 1: nothing to compare with
    assert np.isnan(out.baseline[0]) and np.isnan(out.deviation[0]) and out.score[0] == 0.0
    # point 2: spread 0, floored at 0.1% of |mean| = 1e-3; still warming up, so score 0
    assert (out.baseline[1], out.deviation[1], out.score[1]) == (1.0, pytest.approx(2000.0), 0.0)
    # point 3: running mean 2 and variance 1 (exact, weight 1/(count+1) >= alpha), z = 3
    assert (out.baseline[2], out.deviation[2]) == (2.0, 3.0)
    assert out.score[2] == pytest.approx(1 - 0.5 ** (9 / 16))
    state = det.export_state()
    assert (state["mean"][0], state["var"][0], state["count"][0]) == (3.5, 2.75, 3)


def test_score_is_zero_until_warm_whatever_the_values() -> None:
    det = make(warmup=10)
    wild = np.array([1.0, 1e6, -1e6, 5.0, 1e5, 0.0, 3.0, 1e6, -7.0, 2.0, 1e9])
    out = feed(det, wild)
    assert out.score[:10].tolist() == [0.0] * 10
    assert out.score[10] > 0.0


def test_step_right_after_warm_up_scores_high_on_a_low_noise_series() -> None:
    rng = np.random.default_rng(11)
    det = make(warmup=30)
    calm = feed(det, 100.0 + rng.normal(0.0, 0.5, 30))
    assert calm.score.max() == 0.0
    step = feed(det, 110.0 + rng.normal(0.0, 0.5, 3), start=30.0)
    assert step.score.min() >= 0.9
    assert step.deviation.min() > 8.0


def test_gaussian_noise_rarely_crosses_the_threshold() -> None:
    rng = np.random.default_rng(42)
    n_series, n_points = 1000, 200
    det = make(n_series)
    rows = np.tile(np.arange(n_series), n_points)
    ts = np.repeat(np.arange(n_points, dtype=np.float64), n_series)
    out = det.update(rows, ts, rng.normal(50.0, 2.0, n_series * n_points))
    warm = ts >= 30
    # A true gaussian exceeds 4 sigma 6e-5 of the time; an EW estimate from ~40 effective
    # points fattens the tails (measured 5e-4 with this seed), so 0.2% leaves a 4x margin.
    assert (out.score[warm] >= 0.5).mean() <= 0.002


def test_a_flat_series_with_float_jitter_does_not_score() -> None:
    rng = np.random.default_rng(3)
    det = make(warmup=5)
    out = feed(det, 250.0 + rng.normal(0.0, 1e-9, 100))
    assert out.score.max() < 0.01
    # the floor is 0.1% of the level: a 0.1% move is one floor-sigma, not 1e6 sigmas
    nudge = feed(det, np.array([250.25]), start=100.0)
    assert nudge.deviation[0] == pytest.approx(1.0, rel=1e-3)
    assert nudge.score[0] < 0.05


def test_a_single_huge_outlier_does_not_blind_the_series() -> None:
    rng = np.random.default_rng(5)
    det = make(warmup=30)
    feed(det, 100.0 + rng.normal(0.0, 1.0, 60))
    var_before = det.export_state()["var"][0]
    glitch = feed(det, np.array([1e6]), start=60.0)
    assert glitch.score[0] == 1.0
    assert det.export_state()["var"][0] < 2.0 * var_before
    later = feed(det, np.r_[100.0 + rng.normal(0.0, 1.0, 5), 110.0], start=61.0)
    assert later.score[-1] >= 0.9


def test_a_lasting_level_shift_is_absorbed() -> None:
    rng = np.random.default_rng(9)
    det = make(warmup=30)
    feed(det, 100.0 + rng.normal(0.0, 1.0, 60))
    shifted = feed(det, 130.0 + rng.normal(0.0, 1.0, 200), start=60.0)
    assert shifted.score[0] == 1.0
    assert shifted.score[-50:].max() < 0.5


def test_series_are_independent() -> None:
    det = make(2, warmup=3)
    rows = np.array([0, 1] * 5)
    ts = np.repeat(np.arange(5.0), 2)
    values = np.array([10.0, -5.0] * 4 + [10.0, 500.0])
    out = det.update(rows, ts, values)
    assert out.score[-2] == 0.0 and out.score[-1] == 1.0
    assert out.baseline[-2:].tolist() == [10.0, -5.0]


def test_score_mapping_is_half_at_the_threshold_and_monotone() -> None:
    z = np.linspace(0.0, 40.0, 4001)
    score = z_to_score(z, 4.0)
    assert np.all(np.diff(score) >= 0.0)
    assert score[0] == 0.0 and score[400] == pytest.approx(0.5) and score[-1] == 1.0
    np.testing.assert_array_equal(z_to_score(-z, 4.0), score)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
        ({"alpha": 1.5}, "alpha must be in (0, 1], got 1.5"),
        ({"warmup": -1}, "warmup must be >= 0, got -1"),
        ({"z_threshold": 0.0}, "z_threshold must be > 0, got 0.0"),
        ({"min_std": 0.0}, "min_std must be > 0, got 0.0"),
        ({"rel_min_std": -0.1}, "rel_min_std must be >= 0, got -0.1"),
        ({"clip_z": float("nan")}, "clip_z must be > 0, got nan"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, float], message: str) -> None:
    with pytest.raises(InputError) as err:
        EwmaZScore(**params)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_state_is_three_plain_arrays() -> None:
    state = make(3).export_state()
    assert {k: (v.dtype.name, v.shape) for k, v in state.items()} == {
        "mean": ("float64", (3,)),
        "var": ("float64", (3,)),
        "count": ("int64", (3,)),
    }
