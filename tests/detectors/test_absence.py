"""Absence: cadence learning, deadlines, once-per-silence ticks, re-arming, bad parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.absence import Absence
from detectors.errors import InputError
from detectors.ewma import z_to_score


def every(det: Absence, row: int, start: float, stop: float, step: float) -> None:
    ts = np.arange(start, stop, step)
    det.update(np.full(len(ts), row, np.intp), ts, np.ones(len(ts)))


def fresh(n_series: int = 1, **params: Any) -> Absence:
    det = Absence(**params)
    det.resize(n_series)
    return det


def test_silence_past_k_intervals_is_reported_with_its_evidence() -> None:
    det = fresh(min_silence_s=0.0)
    every(det, 0, 0.0, 100.0, 10.0)  # last point at 90, interval 10, threshold 50
    assert det.tick(140.0).rows.tolist() == []
    assert det.tick(140.0 - 1e-9).rows.tolist() == []
    out = det.tick(150.0)
    assert out.rows.tolist() == [0] and out.rows.dtype == np.intp
    assert out.baseline.tolist() == [10.0]
    assert out.deviation.tolist() == [6.0]  # 60 s of silence is six intervals
    assert out.score.tolist() == z_to_score(np.array([60.0 / 50.0]), 1.0).tolist()


def test_the_score_is_one_half_at_the_threshold_and_rises_with_the_silence() -> None:
    scores = []
    for now in (140.0 + 1e-9, 190.0, 240.0):
        det = fresh(min_silence_s=0.0)
        every(det, 0, 0.0, 100.0, 10.0)
        scores.append(float(det.tick(now).score[0]))
    assert scores[0] == pytest.approx(0.5, abs=1e-9)
    assert scores[1] == pytest.approx(1.0 - 0.5**4)  # twice the threshold
    assert scores[0] < scores[1] < scores[2] < 1.0


def test_the_floor_in_seconds_holds_fast_series_back() -> None:
    det = fresh()  # k=5, min_silence_s=30
    every(det, 0, 0.0, 20.0, 1.0)  # 1-second points up to 19: 5 intervals would be 5 s
    assert det.tick(49.0).rows.tolist() == []
    out = det.tick(49.5)
    assert out.rows.tolist() == [0] and out.deviation.tolist() == [30.5]


def test_one_silence_is_reported_once_and_a_new_point_rearms() -> None:
    det = fresh(min_silence_s=0.0)
    every(det, 0, 0.0, 100.0, 10.0)
    assert det.tick(150.0).rows.tolist() == [0]
    assert [det.tick(now).rows.tolist() for now in (151.0, 500.0, 1e6)] == [[], [], []]
    det.update([0], [1000.0], [1.0])
    assert det.tick(1000.0 + 49.0).rows.tolist() == []
    assert det.tick(2000.0).rows.tolist() == [0]


def test_a_straggler_from_before_the_silence_does_not_rearm() -> None:
    det = fresh(min_silence_s=0.0)
    every(det, 0, 0.0, 100.0, 10.0)
    assert det.tick(150.0).rows.tolist() == [0]
    before = det.export_state()
    det.update([0, 0], [50.0, 90.0], [1.0, 1.0])  # an old point and a duplicate of the last
    for key, value in det.export_state().items():
        np.testing.assert_array_equal(value, before[key])
    assert det.tick(500.0).rows.tolist() == []


def test_a_series_is_watched_only_after_warmup_intervals() -> None:
    det = fresh(2, min_silence_s=0.0, warmup=3)
    every(det, 0, 0.0, 30.0, 10.0)  # three points: two intervals
    every(det, 1, 0.0, 40.0, 10.0)  # four points: three intervals
    assert det.tick(1e6).rows.tolist() == [1]
    assert det.export_state()["gaps"].tolist() == [2, 3]


def test_the_interval_is_the_running_mean_of_the_first_gaps_then_an_ewma() -> None:
    det = fresh(min_silence_s=0.0, beta=0.1)
    det.update([0, 0, 0, 0], [0.0, 10.0, 30.0, 60.0], np.ones(4))  # gaps 10, 20, 30
    assert det.export_state()["interval"].tolist() == [20.0]
    det.update([0], [80.0], [1.0])  # 1/4 still above beta: exact mean of four gaps
    assert det.export_state()["interval"].tolist() == [20.0]
    every(det, 0, 100.0, 10000.0, 20.0)
    det.update([0], [9990.0], [1.0])  # gap 10 after many: weight beta
    assert det.export_state()["interval"][0] == pytest.approx(19.0, rel=1e-6)


def test_a_gap_that_was_an_outage_teaches_at_most_the_threshold() -> None:
    det = fresh(min_silence_s=0.0, k=5.0, beta=0.1)
    every(det, 0, 0.0, 1000.0, 10.0)  # interval 10 exactly
    det.update([0], [990.0 + 3600.0], [1.0])  # an hour-long gap counts as 50 s
    assert det.export_state()["interval"][0] == pytest.approx(10.0 + 0.1 * 40.0)


def test_points_score_zero_and_carry_the_gap_in_intervals() -> None:
    det = fresh(min_silence_s=0.0)
    out = det.update([0, 0, 0, 0], [0.0, 10.0, 20.0, 45.0], np.ones(4))
    assert out.score.tolist() == [0.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(out.baseline, [np.nan, np.nan, 10.0, 10.0])
    np.testing.assert_array_equal(out.deviation, [np.nan, np.nan, 1.0, 2.5])


def test_a_tick_over_many_series_reports_exactly_the_overdue_ones() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    det = fresh(n, min_silence_s=0.0, k=4.0, warmup=2)
    step = rng.uniform(1.0, 60.0, n)
    stop = rng.uniform(100.0, 1000.0, n)
    rows = np.repeat(np.arange(n), 3)
    ts = np.c_[stop - 2 * step, stop - step, stop].ravel()
    det.update(rows, ts, np.ones(len(ts)))
    now = 900.0
    expected = np.flatnonzero(now - stop > 4.0 * step.astype(np.float32))
    out = det.tick(now)
    np.testing.assert_array_equal(out.rows, expected)
    np.testing.assert_allclose(out.baseline, step[expected], rtol=1e-6)
    assert len(expected) > 100 and (out.score > 0.5).all() and (out.score <= 1.0).all()


def test_a_tick_before_any_point_is_empty_and_typed() -> None:
    out = fresh(3).tick(1e9)
    assert out.rows.dtype == np.intp and out.score.dtype == np.float64
    assert [len(a) for a in out] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 1.0}, "k must be > 1 (one interval is the ordinary gap), got 1.0"),
        ({"min_silence_s": -1.0}, "min_silence_s must be >= 0, got -1.0"),
        ({"warmup": 0}, "warmup must be in [1, 255], got 0"),
        ({"warmup": 256}, "warmup must be in [1, 255], got 256"),
        ({"beta": 0.0}, "beta must be in (0, 1], got 0.0"),
        ({"beta": 1.5}, "beta must be in (0, 1], got 1.5"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        Absence(**params)
    assert str(err.value) == message


def test_a_clock_that_is_not_finite_is_refused() -> None:
    with pytest.raises(InputError) as err:
        fresh().tick(float("inf"))
    assert str(err.value) == "now must be finite, got inf"
