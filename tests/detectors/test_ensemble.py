"""Ensemble: fusion, hysteresis (one alert per incident, re-alert, clear), state, errors."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import pytest

from detectors.base import Detector, DetectorOutput, StateField
from detectors.ensemble import Ensemble, default_ensemble
from detectors.errors import InputError, StateError
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds

NAN = float("nan")


class ValueAsScore(Detector):
    """A test detector whose score is the value itself, so hysteresis tests read as tables."""

    name: ClassVar[str] = "value"
    state_fields: ClassVar[dict[str, StateField]] = {"seen": StateField(np.int64, 0)}

    @classmethod
    def example(cls, n_series: int) -> Self:
        det = cls()
        det.resize(n_series)
        return det

    def _update_wave(self, rows: Any, ts: Any, values: Any) -> DetectorOutput:
        self._state["seen"][rows] += 1
        score = np.clip(values, 0.0, 1.0)
        return DetectorOutput(score, np.full(len(values), 0.25), values * 10.0)


def echo(n_series: int = 1, **params: Any) -> Ensemble:
    return Ensemble([ValueAsScore.example(n_series)], **params)


def run(ens: Ensemble, confidences: list[float], ts: list[float] | None = None) -> Any:
    n = len(confidences)
    stamps = [float(t) for t in range(n)] if ts is None else ts
    return ens.update(np.zeros(n, np.intp), stamps, confidences)


def test_hysteresis_table() -> None:
    out = run(echo(), [0.9, 0.9, 0.4, 0.9, 0.2, 0.35, 0.6, 0.1])
    assert out.alert.tolist() == [True, False, False, False, False, False, True, False]
    assert out.active.tolist() == [True, True, True, True, False, False, True, False]
    np.testing.assert_array_equal(out.since, [0, 0, 0, 0, NAN, NAN, 6, NAN])


def test_realert_after_realert_s_while_still_active() -> None:
    ts = [0.0, 100.0, 299.0, 300.0, 450.0, 599.0, 600.0]
    out = run(echo(realert_s=300.0), [0.9] * 7, ts)
    assert out.alert.tolist() == [True, False, False, True, False, False, True]
    assert out.since.tolist() == [0.0] * 7


def test_hysteresis_carries_over_between_batches() -> None:
    ens = echo()
    assert run(ens, [0.9, 0.9]).alert.tolist() == [True, False]
    assert run(ens, [0.9, 0.1], [2.0, 3.0]).alert.tolist() == [False, False]
    assert run(ens, [0.9], [4.0]).alert.tolist() == [True]


def test_points_of_many_series_in_any_order() -> None:
    ens = echo(3)
    rows = np.array([2, 0, 1, 0, 2, 1, 0])
    ts = np.array([1.0, 2.0, 0.0, 1.0, 0.0, 1.0, 3.0])
    conf = np.array([0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9])
    out = ens.update(rows, ts, conf)
    # series 0 at ts 1,2,3: fires at ts 1; series 1 at ts 0,1: fires at 1; series 2 fires at 0
    assert out.alert.tolist() == [False, False, False, True, True, True, False]
    np.testing.assert_array_equal(out.since, [0.0, 1.0, NAN, 1.0, 0.0, 1.0, 1.0])


def series(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(values)
    return np.zeros(n, np.intp), np.arange(n, dtype=np.float64), values


def test_a_step_of_twenty_anomalous_points_alerts_exactly_once() -> None:
    rng = np.random.default_rng(21)
    ens = default_ensemble()
    ens.resize(1)
    values = np.r_[100.0 + rng.normal(0.0, 1.0, 40), 1000.0 + rng.normal(0.0, 1.0, 20)]
    out = ens.update(*series(values))
    assert out.alert.nonzero()[0].tolist() == [40]
    assert out.confidence[40:].min() >= 0.5
    assert out.active[40:].all() and not out.active[:40].any()
    assert out.since[40:].tolist() == [40.0] * 20
    assert (out.top[40:] == 0).all() and (out.baseline[40] == pytest.approx(100.0, abs=1.0))


def test_real_detectors_realert_then_clear_and_fire_again() -> None:
    ens = default_ensemble(realert_s=10.0)
    ens.resize(1)
    static = StaticBounds()
    static.resize(1)
    static.set_bounds([0], [NAN], [50.0])
    ens.load_state({**ens.export_state(), **{f"static.{k}": v for k, v in
                                            static.export_state().items()}})
    values = np.r_[np.full(25, 80.0), np.full(5, 20.0), np.full(3, 80.0)]
    out = ens.update(*series(values))
    assert out.alert.nonzero()[0].tolist() == [0, 10, 20, 30]
    assert (out.top[:25] == 1).all()  # EWMA is cold: the bound is the evidence
    assert out.baseline[0] == 50.0 and out.deviation[0] == 30.0
    assert out.agreed[0].tolist() == [False, True]
    assert out.scores.shape == (33, 2)


def test_ties_go_to_the_first_detector_and_evidence_follows_the_top_score() -> None:
    a, b = ValueAsScore.example(1), StaticBounds.example(1)  # row 0: bounds [-10, 10]
    ens = Ensemble([a, b])
    out = ens.update([0, 0, 0], [0.0, 1.0, 2.0], [0.4, 20.0, -11.0])
    assert out.top.tolist() == [0, 0, 1]  # 20 is 1.0 for both: the first wins the tie
    assert out.baseline.tolist() == [0.25, 0.25, -10.0]
    assert out.deviation.tolist() == [4.0, 200.0, -1.0]
    assert out.confidence.tolist() == [0.4, 1.0, 1.0]


def test_state_is_namespaced_and_round_trips() -> None:
    ens = default_ensemble()
    ens.resize(2)
    ens.update([0, 1], [0.0, 0.0], [1.0, 2.0])
    state = ens.export_state()
    assert sorted(state) == [
        "ensemble.active", "ensemble.last_alert", "ensemble.since",
        "ensemble.surprise_peak", "ensemble.surprise_ts",
        "ewma.count", "ewma.mean", "ewma.var", "static.lower", "static.upper",
    ]
    fresh = default_ensemble()
    fresh.load_state(state)
    assert fresh.n_series == 2 and fresh.export_state()["ewma.count"].tolist() == [1, 1]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("ewma.mean"), "state key 'ewma.mean': missing"),
        (lambda s: s.pop("ensemble.since"), "state key 'ensemble.since': missing"),
        (lambda s: s.update({"bogus.x": np.zeros(2)}), "state key 'bogus.x': unexpected key"),
        (lambda s: s.update({"ewma": np.zeros(2)}), "state key 'ewma': unexpected key"),
        (lambda s: s.update({"static.lower": np.zeros(2, np.float32)}),
         "state key 'static.lower': expected dtype float64, got float32"),
        (lambda s: s.update({"static.lower": np.zeros(3), "static.upper": np.zeros(3)}),
         "state key 'static': holds 3 series, ensemble.active has 2"),
    ],
)
def test_load_state_that_does_not_fit_names_the_key_and_changes_nothing(
    edit: Any, message: str
) -> None:
    ens = default_ensemble()
    ens.resize(2)
    ens.update([0, 1], [0.0, 0.0], [1.0, 2.0])
    before = ens.export_state()
    state = ens.export_state()
    edit(state)
    with pytest.raises(StateError) as err:
        ens.load_state(state)
    assert str(err.value) == message
    after = ens.export_state()
    assert sorted(after) == sorted(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Ensemble([]), "an ensemble needs at least one detector"),
        (lambda: Ensemble([EwmaZScore(), EwmaZScore()]), "duplicate detector name 'ewma'"),
        (lambda: Ensemble([EwmaZScore()], fire_threshold=0.3, clear_threshold=0.5),
         "need 0 <= clear_threshold <= fire_threshold <= 1, got clear_threshold=0.5, "
         "fire_threshold=0.3"),
        (lambda: Ensemble([EwmaZScore()], realert_s=-1.0), "realert_s must be >= 0, got -1.0"),
        (lambda: Ensemble([EwmaZScore.example(2), StaticBounds.example(3)]),
         "detectors hold different numbers of series: [2, 3]"),
    ],
)
def test_bad_construction_is_refused(make: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        make()
    assert str(err.value) == message


def test_points_seen_by_every_detector() -> None:
    ens = echo(2)
    ens.update([1, 0, 1], [0.0, 0.0, 1.0], [0.1, 0.1, 0.1])
    assert ens.export_state()["value.seen"].tolist() == [1, 2]


def test_resize_grows_every_part() -> None:
    ens = default_ensemble()
    ens.resize(3)
    assert ens.n_series == 3
    assert {k: len(v) for k, v in ens.export_state().items()} == dict.fromkeys(
        ens.export_state(), 3
    )
    assert ens.detector_names == ("ewma", "static")


def test_holdoff_keeps_a_second_firing_silent_until_it_has_passed() -> None:
    ens = Ensemble([StaticBounds()], holdoff_s=100.0)
    ens.resize(1)
    ens.detectors[0].set_bounds([0], [np.nan], [10.0])  # type: ignore[attr-defined]
    values = [20.0, 0.0, 20.0, 0.0, 20.0]  # fires, clears, fires at 50 and at 150
    out = ens.update([0] * 5, [0.0, 10.0, 50.0, 100.0, 150.0], values)
    assert out.alert.tolist() == [True, False, False, False, True]


def test_peak_makes_a_series_beat_its_own_record() -> None:
    # z = 8 (surprise (8/4)**2 = 4) sets the peak to 4; z = 9 (surprise 5.06) beats it:
    # 1 - 0.5 ** (5.06 / 4) = 0.584, and raises it; a z of 4 (surprise 1) then scores 0.128
    ens = Ensemble([EwmaZScore(alpha=0.001, warmup=0, clip_z=0.001, rel_min_std=0.0,
                               min_std=1.0)], peak_half_life_s=1e9)
    ens.resize(1)
    out = ens.update([0] * 6, np.arange(6.0), [0.0, 8.0, 0.0, 9.0, 0.0, 4.0])
    assert out.confidence[[1, 3, 5]].round(4).tolist() == [0.9375, 0.5841, 0.1279]
    assert out.alert.tolist() == [False, True, False, True, False, False]
    assert round(float(ens.export_state()["ensemble.surprise_peak"][0]), 3) == 5.062


def test_peak_decays_by_half_every_half_life() -> None:
    ens = Ensemble([EwmaZScore(alpha=0.001, warmup=0, clip_z=0.001, rel_min_std=0.0,
                               min_std=1.0)], peak_half_life_s=10.0)
    ens.resize(1)
    out = ens.update([0] * 3, [0.0, 1.0, 11.0], [0.0, 8.0, 8.0])  # peak 4 -> 2 after 10 s
    assert round(float(out.confidence[2]), 4) == 0.75


class LowBand(Detector):
    """Scores values in [lo, lo + 1] as ``value - lo`` and others 0: a detector that sees
    only its own band, so two of them on one series fire independently."""

    name: ClassVar[str] = "low"
    lo: ClassVar[float] = 0.0
    state_fields: ClassVar[dict[str, StateField]] = {"seen": StateField(np.int64, 0)}

    @classmethod
    def example(cls, n_series: int) -> Self:
        det = cls()
        det.resize(n_series)
        return det

    def _update_wave(self, rows: Any, ts: Any, values: Any) -> DetectorOutput:
        self._state["seen"][rows] += 1
        inside = (values >= self.lo) & (values <= self.lo + 1.0)
        score = np.where(inside, values - self.lo, 0.0)
        return DetectorOutput(score, np.full(len(values), self.lo), values)


class HighBand(LowBand):
    name: ClassVar[str] = "high"
    lo: ClassVar[float] = 2.0


@pytest.mark.parametrize(("per_detector", "confidence", "alert", "top"), [
    # one fused peak: the low band's surprise 4 mutes the high band's 1.32: 1 - 0.5 ** (1.32 / 4)
    (False, 0.2047, False, 1),
    # one peak each: the high band has never fired, its 0.6 stands as it is
    (True, 0.6, True, 1),
])
def test_peak_per_detector_keeps_one_lively_detector_from_muting_another(
    per_detector: bool, confidence: float, alert: bool, top: int
) -> None:
    ens = Ensemble([LowBand(), HighBand()], peak_half_life_s=1e9,
                   peak_per_detector=per_detector)
    ens.resize(1)
    out = ens.update([0] * 3, [0.0, 1.0, 2.0], [0.9375, 0.0, 2.6])
    assert out.alert.tolist() == [True, False, alert]
    assert round(float(out.confidence[2]), 4) == confidence
    assert int(out.top[2]) == top
    assert float(out.baseline[2]) == 2.0  # the evidence is the high band's
    state = ens.export_state()
    if per_detector:
        peaks = (state["ensemble.surprise_peak_low"][0], state["ensemble.surprise_peak_high"][0])
        assert [round(float(p), 3) for p in peaks] == [4.0, 1.322]  # -log2(0.4)
        assert "ensemble.surprise_peak" not in state
    else:
        assert round(float(state["ensemble.surprise_peak"][0]), 3) == 4.0


def test_peak_per_detector_state_round_trips() -> None:
    ens = Ensemble([LowBand(), HighBand()], peak_half_life_s=10.0, peak_per_detector=True)
    ens.resize(2)
    ens.update([0, 1], [0.0, 0.0], [0.9, 2.9])
    other = Ensemble([LowBand(), HighBand()], peak_half_life_s=10.0, peak_per_detector=True)
    other.load_state(ens.export_state())
    a = ens.update([0, 1], [5.0, 5.0], [0.95, 2.95])
    b = other.update([0, 1], [5.0, 5.0], [0.95, 2.95])
    assert a.confidence.tolist() == b.confidence.tolist()
    with pytest.raises(StateError) as err:
        Ensemble([LowBand(), HighBand()], peak_half_life_s=10.0).load_state(ens.export_state())
    assert str(err.value.key) == "ensemble.surprise_peak"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"holdoff_s": -1.0}, "holdoff_s must be >= 0, got -1.0"),
    ({"peak_half_life_s": -1.0}, "peak_half_life_s must be >= 0, got -1.0"),
    ({"peak_growth": 0.5}, "peak_growth must be >= 1, got 0.5"),
])
def test_bad_brakes_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        Ensemble([EwmaZScore()], **kwargs)
    assert str(err.value) == message


def test_absolute_scores_skip_the_peak_a_crossed_limit_stays_certain() -> None:
    static = StaticBounds()
    ens = Ensemble([EwmaZScore(warmup=3), static], peak_half_life_s=3600.0,
                   peak_per_detector=True)
    ens.resize(1)
    static.set_bounds(np.array([0]), np.array([np.nan]), np.array([10.0]))
    assert "ensemble.surprise_peak_static" not in ens.export_state()
    # Five breaches in a row: an EWMA-style peak would learn them; the limit does not.
    out = ens.update(np.zeros(5, np.intp), np.arange(5.0), np.full(5, 50.0))
    assert out.scores[:, 1].tolist() == [1.0] * 5
    assert out.confidence.tolist() == [1.0] * 5
