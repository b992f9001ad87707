"""Seasonal baseline: slots, per-slot warm-up, time-weighted memory, layout, bad parameters."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.ewma import EwmaZScore
from detectors.seasonal import DEFAULT_BINS, SeasonalBaseline, profile_fields

DAY = 86400.0


def fresh(n_series: int = 1, **params: Any) -> SeasonalBaseline:
    det = SeasonalBaseline(**params)
    det.resize(n_series)
    return det


def traffic(days: float, step: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, days * DAY, step)
    return ts, 1000.0 + 800.0 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0.0, 20.0, len(ts))


def test_slots_divide_the_period_from_the_epoch() -> None:
    daily = SeasonalBaseline()
    assert daily.slot_of(np.array([0.0, 1799.9, 1800.0, DAY - 1e-9, DAY, 1.5 * DAY])).tolist() == [
        0, 0, 1, 47, 0, 24,
    ]
    weekly = SeasonalBaseline(period_s=7 * DAY, bins=168)
    assert weekly.slot_of(np.array([3600.0 * 25, 7 * DAY + 3600.0 * 167.5])).tolist() == [25, 167]


def test_the_layout_follows_bins_and_costs_ten_bytes_a_slot() -> None:
    for bins, size in ((DEFAULT_BINS, 488), (96, 968), (168, 1688)):
        det = fresh(3, bins=bins)
        state = det.export_state()
        assert len(state) == 1 + 3 * bins
        assert sum(a.nbytes for a in state.values()) == 3 * size
    assert dict(SeasonalBaseline.state_fields) == profile_fields(DEFAULT_BINS)


def test_the_daily_swing_is_expected_once_the_slots_are_warm() -> None:
    fired = warm = 0
    for seed in range(10):
        ts, values = traffic(days=4, step=300.0, seed=seed)
        det = fresh(warmup=12)  # 6 points a slot a day: warm after two days
        score = det.update(np.zeros(len(ts), np.intp), ts, values).score
        assert (score[: 2 * 288 - 6] == 0.0).all()
        fired += int((score[2 * 288 :] >= 0.5).sum())
        warm += len(score) - 2 * 288
    assert fired / warm < 0.005  # z from 12-24 points a slot is heavier-tailed than normal


def test_a_trough_at_the_daily_mean_fires_and_ewma_does_not_see_it() -> None:
    ts, values = traffic(days=4, step=300.0, seed=5)
    seasonal = fresh(warmup=12)
    ewma = EwmaZScore()
    ewma.resize(1)
    rows = np.zeros(len(ts), np.intp)
    seasonal.update(rows, ts, values)
    ewma.update(rows, ts, values)
    night = 4 * DAY + 0.75 * DAY
    assert seasonal.update([0], [night], [1000.0]).score[0] == pytest.approx(1.0)
    assert ewma.update([0], [night], [1000.0]).score[0] < 0.5  # its spread holds the swing
    # the other way round: at the peak hour, a drop to the night level
    peak = 5 * DAY + 0.25 * DAY
    dropped = seasonal.update([0], [peak], [200.0])
    assert dropped.score[0] == pytest.approx(1.0)
    assert dropped.baseline[0] == pytest.approx(1800.0, abs=30.0)
    normal = seasonal.update([0], [peak + 300.0], [1800.0])
    assert normal.score[0] < 0.5


def test_each_slot_warms_up_on_its_own_with_the_running_mean() -> None:
    det = fresh(bins=2, period_s=100.0, warmup=3, clip_z=1e9)
    # slot 0 is ts 0..49 of each period, slot 1 is 50..99
    out = det.update([0] * 5, [0.0, 10.0, 20.0, 60.0, 30.0], [1.0, 2.0, 3.0, 50.0, 9.0])
    np.testing.assert_array_equal(out.baseline, [np.nan, 1.0, 1.5, np.nan, 2.0])
    assert out.score[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    z = (9.0 - 2.0) / math.sqrt(2.0 / 3.0)  # against mean 2 and population variance 2/3
    assert out.score[4] == pytest.approx(1.0 - 0.5 ** ((z / 4.0) ** 2))
    assert out.deviation[4] == pytest.approx(z)
    state = det.export_state()
    assert state["count_0"].tolist() == [4] and state["count_1"].tolist() == [1]
    assert state["mean_1"].tolist() == [50.0]


def test_the_memory_is_in_periods_whatever_the_cadence() -> None:
    # one slot, period 100 s, memory one period: after one period at a new level a slot has
    # moved by 1 - 1/e, whether the points come every second or every five
    det = fresh(2, bins=1, period_s=100.0, memory_periods=1.0, warmup=0, clip_z=1e9)
    for row, step in ((0, 1.0), (1, 5.0)):
        before = np.arange(0.0, 2000.0, step)
        after = np.arange(2000.0, 2100.0, step)
        det.update(np.full(len(before), row, np.intp), before, np.zeros(len(before)))
        det.update(np.full(len(after), row, np.intp), after, np.ones(len(after)))
    np.testing.assert_allclose(det.export_state()["mean_0"], [1 - math.exp(-1)] * 2, rtol=1e-6)


def test_a_point_after_an_outage_weighs_one_slot_at_most() -> None:
    a = fresh(bins=1, period_s=100.0, memory_periods=1.0, warmup=0, clip_z=1e9)
    b = fresh(bins=1, period_s=100.0, memory_periods=1.0, warmup=0, clip_z=1e9)
    for det in (a, b):
        det.update(np.zeros(500, np.intp), np.arange(500.0), np.zeros(500))
    a.update([0], [599.0], [1.0])
    b.update([0], [599.0 + 1e6], [1.0])
    assert a.export_state()["mean_0"][0] == b.export_state()["mean_0"][0]
    assert a.export_state()["mean_0"][0] == pytest.approx(1 - math.exp(-1), rel=1e-6)


def test_an_absurd_value_leaves_finite_state_and_scores() -> None:
    det = fresh(bins=1, period_s=10.0, warmup=1)
    out = det.update([0, 0, 0], [0.0, 1.0, 2.0], [1.0, 1e300, -1e300])
    assert np.isfinite(out.score).all()
    assert all(np.isfinite(v).all() for v in det.export_state().values())


@pytest.mark.parametrize(
    ("ts", "slots"),
    [
        ([0.5, 1.0, 1.9], [0, 0, 0]),  # one slot: the shortcut that skips per-point slots
        ([7.5, 12.0, 15.4], [3, 2, 3]),  # ends share slot 3 across a period start
        ([1.0, 5.0, 17.0], [0, 2, 0]),  # ends share slot 0 two periods apart
    ],
)
def test_one_wave_files_each_point_under_its_own_slot(ts: list[float], slots: list[int]) -> None:
    det = fresh(3, period_s=8.0, bins=4)
    det.update([0, 1, 2], ts, [1.0, 2.0, 3.0])
    state = det.export_state()
    filed = [[int(state[f"count_{s}"][row]) for s in range(4)].index(1) for row in range(3)]
    assert filed == slots


def test_many_series_in_many_slots_in_one_call_equal_one_series_at_a_time() -> None:
    rng = np.random.default_rng(2)
    n = 50
    rows = rng.integers(0, n, 2000)
    ts = rng.uniform(0.0, 3 * DAY, 2000)
    values = rng.normal(100.0, 5.0, 2000)
    together = fresh(n, warmup=2)
    alone = [fresh(1, warmup=2) for _ in range(n)]
    out = together.update(rows, ts, values)
    for r in range(n):
        mine = rows == r
        single = alone[r].update(np.zeros(mine.sum(), np.intp), ts[mine], values[mine])
        np.testing.assert_array_equal(out.score[mine], single.score)
        np.testing.assert_array_equal(out.baseline[mine], single.baseline)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period_s": 0.0}, "period_s must be > 0, got 0.0"),
        ({"bins": 0}, "bins must be >= 1, got 0"),
        ({"memory_periods": -1.0}, "memory_periods must be > 0, got -1.0"),
        ({"warmup": -1}, "warmup must be in [0, 65535], got -1"),
        ({"warmup": 70000}, "warmup must be in [0, 65535], got 70000"),
        ({"z_threshold": 0.0}, "z_threshold must be > 0, got 0.0"),
        ({"min_std": 0.0}, "min_std must be > 0, got 0.0"),
        ({"rel_min_std": -0.1}, "rel_min_std must be >= 0, got -0.1"),
        ({"clip_z": 0.0}, "clip_z must be > 0, got 0.0"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        SeasonalBaseline(**params)
    assert str(err.value) == message
