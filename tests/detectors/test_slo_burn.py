"""SLO burn rate: window averaging over real gaps, pair logic, warm-up, evidence, parameters."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.slo_burn import PAIRS, WINDOWS, SloBurnRate

BUDGET = 0.001


def fresh(n_series: int = 1, **params: Any) -> SloBurnRate:
    # at scale 1/60 the windows are 5 s, 30 s, 60 s, 360 s and 4320 s
    det = SloBurnRate(**{"objective": 0.999, "scale": 1.0 / 60.0, **params})
    det.resize(n_series)
    return det


def feed(det: SloBurnRate, ts: np.ndarray, ratio: np.ndarray) -> Any:
    return det.update(np.zeros(len(ts), np.intp), ts, ratio)


def burns(det: SloBurnRate) -> dict[str, float]:
    state = det.export_state()
    return {w: float(state[f"avg_{w}"][0]) / det.budget for w in WINDOWS}


def test_the_workbook_pairs_and_windows() -> None:
    assert PAIRS == (("1h", "5m", 14.4), ("6h", "30m", 6.0), ("3d", "6h", 1.0))
    assert dict(WINDOWS) == {
        "5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0, "3d": 259200.0,
    }
    assert SloBurnRate(objective=0.99).budget == pytest.approx(0.01)


def test_a_fast_burn_fires_when_the_1h_window_reaches_14_4() -> None:
    det = fresh()
    ts = np.arange(0.0, 2300.0, 1.0)
    out = feed(det, ts, np.where(ts < 2000.0, 0.0, 20 * BUDGET))  # 20x from ts 2000
    first = int(np.flatnonzero(out.score >= 0.5)[0])
    # 1 s points: the 1h (60 s) average after n burning seconds is 20 (1 - exp(-n / 60))
    n = math.ceil(-60.0 * math.log(1.0 - 14.4 / 20.0))
    assert ts[first] == 2000.0 + n - 1  # the point at 2000 stands for the second before it
    multiple = 20 * (1 - math.exp(-n / 60)) / 14.4
    assert out.score[first] == pytest.approx(1.0 - 0.5 ** (multiple**2))
    assert out.deviation[first] == pytest.approx(20.0 * (1 - math.exp(-n / 5.0)))
    assert (out.baseline == det.budget).all()


def test_the_short_window_stops_the_alert_soon_after_recovery() -> None:
    det = fresh()
    ts = np.arange(0.0, 26.0, 1.0)  # 26 s: only the 1h/5m pair is warm (span >= 5 s)
    out = feed(det, ts, np.full(26, 20 * BUDGET))
    assert out.score[:5].tolist() == [0.0] * 5  # warming up, however bad
    assert out.score[5:] == pytest.approx(1.0 - 0.5 ** ((20.0 / 14.4) ** 2))
    recovered = feed(det, np.array([26.0, 27.0]), np.zeros(2))
    assert recovered.score[0] >= 0.5 > recovered.score[1]
    assert recovered.deviation[1] == pytest.approx(20.0 * math.exp(-2.0 / 5.0))
    assert burns(det)["1h"] > 14.4  # the long window alone does not keep it firing


def test_a_pair_is_warm_once_the_series_spans_its_short_window() -> None:
    det = fresh()
    out = feed(det, np.arange(0.0, 8.0, 1.0), np.ones(8))
    assert out.score.tolist() == [0.0] * 5 + [1.0] * 3


def test_windows_are_time_weighted_over_the_real_gaps() -> None:
    det = fresh()
    feed(det, np.array([0.0, 1.0, 3.0]), np.array([0.5, 0.2, 0.8]))
    # the first point is replaced by the second (it stands for no time); then the 2 s gap
    # weighs 2/3 of the 3 s span: every window shorter or longer is the time-weighted mean
    # of what was seen, as 1 - exp(-2 / 5) = 0.33 is below 2/3 even for the 5 s window
    assert burns(det) == pytest.approx(dict.fromkeys(WINDOWS, (0.2 + 2.0 / 3.0 * 0.6) / BUDGET))
    # later, an irregular gap of 7 s in a 5 s window: weight 1 - exp(-7 / 5)
    feed(det, np.arange(4.0, 100.0, 1.0), np.zeros(96))
    before = burns(det)["5m"] * BUDGET
    feed(det, np.array([106.0]), np.array([0.3]))
    expected = before + (1 - math.exp(-1.4)) * (0.3 - before)
    assert burns(det)["5m"] * BUDGET == pytest.approx(expected)


def test_duplicates_and_stragglers_stand_for_no_time() -> None:
    det = fresh()
    feed(det, np.arange(0.0, 50.0, 1.0), np.full(50, 0.01))
    before = det.export_state()
    feed(det, np.array([49.0, 10.0]), np.array([1.0, 1.0]))
    for key, value in det.export_state().items():
        np.testing.assert_array_equal(value, before[key])


def test_ratios_outside_the_unit_interval_count_as_its_ends() -> None:
    wild, tame = fresh(), fresh()
    ts = np.arange(0.0, 40.0, 1.0)
    wild_out = feed(wild, ts, np.where(ts < 20.0, -3.0, 7.0))
    tame_out = feed(tame, ts, np.where(ts < 20.0, 0.0, 1.0))
    for a, b in zip(wild_out, tame_out, strict=True):
        np.testing.assert_array_equal(a, b)


def test_many_series_are_independent() -> None:
    det = fresh(3)
    ts = np.arange(0.0, 40.0, 1.0)
    rows = np.repeat([0, 1, 2], len(ts))
    out = det.update(rows, np.tile(ts, 3), np.r_[np.zeros(40), np.full(40, 0.5), np.zeros(40)])
    assert (out.score[:40] == 0.0).all() and (out.score[80:] == 0.0).all()
    assert (out.score[45:80] == 1.0).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": 1.0}, "objective must be in (0, 1), got 1.0"),
        ({"objective": 0.0}, "objective must be in (0, 1), got 0.0"),
        ({"scale": 0.0}, "scale must be finite and > 0, got 0.0"),
        ({"scale": math.inf}, "scale must be finite and > 0, got inf"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        SloBurnRate(**params)
    assert str(err.value) == message
