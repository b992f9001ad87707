"""Robust median/MAD: exact statistics, robustness to glitches, floors, the ring's state."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError, StateError
from detectors.ewma import z_to_score
from detectors.mad import RobustMad
from tests.detectors.helpers import feed, new_detector

make = partial(new_detector, RobustMad)


def test_hand_computed_median_mad_and_z() -> None:
    det = make(window=5, warmup=3)
    out = feed(det, [1.0, 2.0, 4.0, 8.0, 16.0, 3.0])
    # point 1: nothing to compare with
    assert np.isnan(out.baseline[0]) and np.isnan(out.deviation[0]) and out.score[0] == 0.0
    # point 4 against [1, 2, 4]: median 2, MAD median(1, 0, 2) = 1, z = 6 / 1.4826
    assert out.baseline[3] == 2.0
    assert out.deviation[3] == pytest.approx(6.0 / 1.4826)
    assert out.score[3] == pytest.approx(float(z_to_score(np.array([6.0 / 1.4826]), 6.0)[0]))
    # point 6 against the full ring [1, 2, 4, 8, 16]: median 4, MAD median(3, 2, 0, 4, 12) = 3
    assert (out.baseline[5], out.deviation[5]) == (4.0, pytest.approx(-1.0 / (3 * 1.4826)))
    # the 6th point overwrote the oldest slot
    assert det.export_state()["ring"][0].tolist() == [3.0, 2.0, 4.0, 8.0, 16.0]


def test_score_is_zero_until_warm_whatever_the_values() -> None:
    det = make(window=8, warmup=6)
    out = feed(det, [1.0, 1e6, -1e6, 5.0, 1e5, 0.0, 1e9])
    assert out.score[:6].tolist() == [0.0] * 6
    assert out.score[6] == 1.0


def test_a_glitch_moves_neither_median_nor_mad_so_the_next_glitch_still_fires() -> None:
    rng = np.random.default_rng(3)
    det = make()
    feed(det, 50.0 + rng.normal(0.0, 1.0, 40))
    before = det.export_state()["ring"][0].astype(np.float64)
    out = feed(det, [5e4, 50.0, 5e4], start=40.0)
    assert out.score.round(6).tolist() == [1.0, pytest.approx(0.0, abs=0.05), 1.0]
    # the median after the glitch is within a point's noise of the one before it
    assert abs(out.baseline[1] - np.median(before)) < 0.2
    assert out.deviation[2] > 1e4


def test_step_scores_high_and_the_window_adapts_after_half_of_it_has_moved() -> None:
    rng = np.random.default_rng(11)
    det = make(window=32, warmup=32)
    feed(det, 100.0 + rng.normal(0.0, 0.5, 32))
    out = feed(det, 110.0 + rng.normal(0.0, 0.5, 40), start=32.0)
    assert out.score[:8].min() >= 0.99
    # the ring mixes both levels, so the MAD widens and the score fades as the step ages;
    # once more than half the ring holds the new level, the median has followed it
    assert out.baseline[17:].min() > 105.0
    assert out.score[20:].max() < 0.5


def test_gaussian_noise_rarely_crosses_the_threshold() -> None:
    rng = np.random.default_rng(42)
    n_series, n_points = 1000, 300
    det = make(n_series)
    rows = np.tile(np.arange(n_series), n_points)
    ts = np.repeat(np.arange(n_points, dtype=np.float64), n_series)
    out = det.update(rows, ts, 20.0 + rng.normal(0.0, 2.0, n_series * n_points))
    # a gaussian |z| > 6 is 2e-9; the MAD of 32 points wanders enough to allow ~6e-5
    assert int((out.score >= 0.5).sum()) <= 30
    assert out.score.mean() < 0.03


def test_mad_of_zero_falls_back_to_the_mean_absolute_deviation() -> None:
    det = make(window=8, warmup=8)
    # six 10s and two 12s: MAD 0, mean absolute deviation 4 / 8 = 0.5
    out = feed(det, [10.0, 10.0, 12.0, 10.0, 10.0, 12.0, 10.0, 10.0, 13.0])
    assert out.baseline[8] == 10.0
    assert out.deviation[8] == pytest.approx(3.0 / (0.5 * 1.2533))


def test_constant_series_uses_the_relative_then_the_absolute_floor() -> None:
    det = make(window=8, warmup=8)
    # scale floored at 0.1% of |median| = 0.5: a wiggle of 0.5 is z = 1
    out = feed(det, [500.0] * 8 + [500.5])
    assert out.deviation[8] == pytest.approx(1.0)
    zeros = make(window=8, warmup=8)
    out = feed(zeros, [0.0] * 8 + [1e-6])
    assert out.deviation[8] == pytest.approx(1.0)


def test_values_beyond_float32_are_clipped_and_keep_the_row_finite() -> None:
    det = make(window=8, warmup=2)
    out = feed(det, [1.0, 1e300, 2.0, -1e300, 3.0, 4.0])
    assert np.isfinite(out.score).all()
    ring = det.export_state()["ring"][0]
    top = float(np.finfo(np.float32).max)
    assert ring[:6].tolist() == [1.0, top, 2.0, -top, 3.0, 4.0]
    assert np.isnan(ring[6:]).all()


def test_resize_grows_the_ring_with_cold_rows() -> None:
    det = make(2, window=4, warmup=1)
    feed(det, [1.0, 2.0], row=1)
    det.resize(200)
    ring = det.export_state()["ring"]
    assert ring.shape == (200, 4) and ring.dtype == np.float32
    assert ring[1, :2].tolist() == [1.0, 2.0]
    assert np.isnan(ring[2:]).all()


def test_load_state_checks_the_ring_and_leaves_the_detector_as_it_was() -> None:
    det = make(3, window=4, warmup=1)
    feed(det, [1.0, 2.0, 3.0])
    good = det.export_state()
    cases = [
        ({k: v for k, v in good.items() if k != "ring"}, "state key 'ring': missing"),
        (
            {**good, "ring": good["ring"][:, :3]},
            "state key 'ring': expected shape (rows, 4), got (3, 3)",
        ),
        (
            {**good, "ring": good["ring"].astype(np.float64)},
            "state key 'ring': expected dtype float32, got float64",
        ),
        (
            {**good, "ring": good["ring"][:2]},
            "state key 'ring': has 2 rows, 'count' has 3",
        ),
        ({"ring": good["ring"]}, "state key 'count': missing"),
    ]
    for state, message in cases:
        with pytest.raises(StateError) as err:
            det.load_state(state)
        assert str(err.value) == message
    after = det.export_state()
    assert after.keys() == good.keys()
    for key, arr in good.items():
        np.testing.assert_array_equal(after[key], arr)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": 2}, "window must be >= 3, got 2"),
        ({"warmup": -1}, "warmup must be >= 0, got -1"),
        ({"z_threshold": 0.0}, "z_threshold must be > 0, got 0.0"),
        ({"min_scale": 0.0}, "min_scale must be > 0, got 0.0"),
        ({"rel_min_scale": -0.1}, "rel_min_scale must be >= 0, got -0.1"),
        ({"z_threshold": float("nan")}, "z_threshold must be > 0, got nan"),
    ],
)
def test_bad_parameters_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        RobustMad(**params)
    assert str(err.value) == message
