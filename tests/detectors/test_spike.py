"""Spike / rate of change: exact scale, jumps up and down, quiet on smooth shapes and noise."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.ewma import z_to_score
from detectors.spike import Spike
from tests.detectors.helpers import feed, new_detector

make = partial(new_detector, Spike)


def test_hand_computed_first_points() -> None:
    det = make(alpha=0.5, warmup=3)
    out = feed(det, [10.0, 12.0, 11.0, 20.0])
    assert np.isnan(out.baseline[0]) and np.isnan(out.deviation[0]) and out.score[0] == 0.0
    # point 2: no jump seen yet, scale floored at 0.1% of |10| = 0.01; still warming up
    assert (out.baseline[1], out.deviation[1], out.score[1]) == (10.0, pytest.approx(200.0), 0.0)
    # point 4: typical jump = mean(2, 1) = 1.5 exactly, z = 9 / (1.2533 * 1.5)
    z = 9.0 / (1.2533 * 1.5)
    assert (out.baseline[3], out.deviation[3]) == (11.0, pytest.approx(z))
    assert out.score[3] == pytest.approx(float(z_to_score(np.array([z]), 8.0)[0]))
    state = det.export_state()
    # the 9 is winsorised at clip_z * 1.2533 * 1.5 before it is folded in with weight 0.5
    assert state["scale"][0] == pytest.approx(1.5 + 0.5 * (3.0 * 1.2533 * 1.5 - 1.5))
    assert (state["prev"][0], state["count"][0]) == (20.0, 4)


def test_score_is_zero_until_warm_whatever_the_values() -> None:
    det = make(warmup=6)
    out = feed(det, [1.0, 1e6, -1e6, 5.0, 1e5, 0.0, 1e9])
    assert out.score[:6].tolist() == [0.0] * 6
    assert out.score[6] == 1.0


def test_a_drop_to_zero_and_a_jump_up_fire_with_signed_deviation() -> None:
    rng = np.random.default_rng(5)
    det = make(2)
    feed(det, 100.0 + rng.normal(0.0, 1.0, 60), row=0)
    feed(det, 100.0 + rng.normal(0.0, 1.0, 60), row=1)
    prev = det.export_state()["prev"].tolist()
    out = det.update([0, 1], [60.0, 60.0], [0.0, 140.0])
    assert out.score.min() > 0.9999
    assert out.deviation[0] < -50.0 and out.deviation[1] > 20.0
    # the baseline of a jump is the point before it: "no change" was expected
    assert out.baseline.tolist() == prev


def test_a_smooth_daily_curve_with_noise_never_fires_but_its_sudden_break_does() -> None:
    rng = np.random.default_rng(9)
    n = 288 * 3  # three days of 5-minute points
    curve = 50.0 + 30.0 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0.0, 1.0, n)
    det = make()
    out = feed(det, curve)
    assert out.score.max() < 0.5
    broken = feed(det, [curve[-1] - 30.0], start=float(n))
    assert broken.score[0] >= 0.9 and broken.deviation[0] < -8.0


def test_gaussian_noise_never_crosses_the_threshold() -> None:
    rng = np.random.default_rng(42)
    n_series, n_points = 1000, 300
    det = make(n_series)
    rows = np.tile(np.arange(n_series), n_points)
    ts = np.repeat(np.arange(n_points, dtype=np.float64), n_series)
    out = det.update(rows, ts, 20.0 + rng.normal(0.0, 2.0, n_series * n_points))
    assert int((out.score >= 0.5).sum()) == 0
    assert out.score.mean() < 0.01


def test_both_edges_of_a_glitch_fire_and_barely_move_the_scale() -> None:
    rng = np.random.default_rng(2)
    det = make()
    feed(det, 10.0 + rng.normal(0.0, 0.1, 100))
    scale_before = float(det.export_state()["scale"][0])
    out = feed(det, [1e4, 10.0, 1e4], start=100.0)
    assert out.score.tolist() == [1.0, 1.0, 1.0]
    assert out.deviation[0] > 0 > out.deviation[1]
    # winsorised: each edge adds at most alpha * clip_z * 1.2533 * scale
    assert float(det.export_state()["scale"][0]) < scale_before * (1 + 0.01 * 3.76) ** 3


def test_constant_series_uses_the_relative_then_the_absolute_floor() -> None:
    det = make(warmup=5)
    # 0.1% of the nearer end of the jump, |500|: a step of 0.5 is z = 1
    out = feed(det, [500.0] * 5 + [500.5])
    assert out.deviation[5] == pytest.approx(1.0)
    zeros = make(warmup=5)
    out = feed(zeros, [0.0] * 5 + [-1e-6])
    assert out.deviation[5] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
        ({"alpha": 1.5}, "alpha must be in (0, 1], got 1.5"),
        ({"warmup": -1}, "warmup must be >= 0, got -1"),
        ({"z_threshold": -2.0}, "z_threshold must be > 0, got -2.0"),
        ({"min_scale": 0.0}, "min_scale must be > 0, got 0.0"),
        ({"rel_min_scale": -0.1}, "rel_min_scale must be >= 0, got -0.1"),
        ({"clip_z": 0.0}, "clip_z must be > 0, got 0.0"),
    ],
)
def test_bad_parameters_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        Spike(**params)
    assert str(err.value) == message
