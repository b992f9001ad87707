"""The pure-Python references do the same math as the vectorised detectors.

The cost benchmark divides the vectorised rate by the reference's, so the two must compute
the same thing: same scores, baselines, deviations, alerts, on seeded random batches with
several points per series, ties in ts, flat series, spikes, level steps, stragglers from the
past and bound violations; and the state the points leave behind.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

import detectors
from benchmarks.detectors import CONFIG, Workload, build_ensemble
from benchmarks.pyref import (
    REFERENCES,
    PyAbsence,
    PyDetector,
    PyEnsemble,
    PyEwmaZScore,
    PyLevelShift,
    PyPoint,
    PyRobustMad,
    PySeasonalBaseline,
    PySloBurnRate,
    PySpike,
    PyStaticBounds,
    reference_ensemble,
    reference_for,
)
from detectors.absence import Absence
from detectors.base import Detector, DetectorOutput
from detectors.ensemble import Ensemble, EnsembleOutput
from detectors.ewma import EwmaZScore
from detectors.level_shift import LevelShift
from detectors.mad import RobustMad
from detectors.seasonal import SeasonalBaseline
from detectors.slo_burn import WINDOWS, SloBurnRate
from detectors.spike import Spike
from detectors.static_bounds import StaticBounds
from hotpath.config import load_config

N_SERIES = 40
Batch = tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def random_batches(seed: int, n_batches: int, n_series: int = N_SERIES) -> list[Batch]:
    """Batches of 0-4 points per series, shuffled, integer ts (ties), noisy with outliers."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(-50.0, 500.0, n_series)
    levels[:3] = 0.0  # series sitting at exactly 0: the absolute std floor
    noise = rng.uniform(0.0, 0.05, n_series) * np.abs(levels)
    noise[3:6] = 0.0  # flat series: the relative std floor
    out: list[Batch] = []
    for b in range(n_batches):
        k = rng.integers(0, 5, n_series)
        rows = np.repeat(np.arange(n_series), k)
        ts = 10.0 * b + rng.integers(0, 4, len(rows)).astype(np.float64)  # ties, within and across
        values = levels[rows] + noise[rows] * rng.standard_normal(len(rows))
        spikes = rng.random(len(rows)) < 0.03
        values[spikes] += rng.choice([-1.0, 1.0], int(spikes.sum())) * 1e3
        order = rng.permutation(len(rows))
        out.append((rows[order], ts[order], values[order]))
    return out


def run_detector(det: Detector, batches: list[Batch]) -> DetectorOutput:
    outs = [det.update(r, t, v) for r, t, v in batches]
    return DetectorOutput(*(np.concatenate([getattr(o, f) for o in outs])
                            for f in DetectorOutput._fields))


def run_reference(ref: PyDetector, batches: list[Batch]) -> DetectorOutput:
    answers: list[tuple[float, float, float]] = []
    for rows, ts, values in batches:
        got: list[tuple[float, float, float] | None] = [None] * len(rows)
        for i in np.argsort(ts, kind="stable").tolist():  # ts order, ties in input order
            got[i] = ref.update(int(rows[i]), float(ts[i]), float(values[i]))
        answers.extend(a for a in got if a is not None)
    cols = np.array(answers, dtype=np.float64).reshape(-1, 3)
    return DetectorOutput(cols[:, 0], cols[:, 1], cols[:, 2])


def assert_same(vec: DetectorOutput, ref: DetectorOutput) -> None:
    for field in DetectorOutput._fields:
        np.testing.assert_allclose(getattr(ref, field), getattr(vec, field), rtol=1e-12,
                                   atol=1e-12, equal_nan=True, err_msg=field)


@pytest.mark.parametrize("params", [
    {},  # the defaults the config ships
    {"alpha": 0.3, "warmup": 3},  # the contract test's example
    {"alpha": 1.0, "warmup": 0, "clip_z": 0.5, "z_threshold": 1.0},
    {"alpha": 0.01, "warmup": 1, "rel_min_std": 0.0, "min_std": 1e-3},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_ewma_reference_matches_the_vectorised_detector(params: dict[str, float],
                                                        seed: int) -> None:
    det = EwmaZScore(**params)  # type: ignore[arg-type]
    det.resize(N_SERIES)
    ref = PyEwmaZScore.like(det)
    batches = random_batches(seed, n_batches=30)

    vec = run_detector(det, batches)
    assert_same(vec, run_reference(ref, batches))
    assert int((vec.score >= 0.5).sum()) > 10  # the spikes were scored, not only warm-up
    state = det.export_state()
    assert ref.count == state["count"].tolist()
    np.testing.assert_allclose(ref.mean, state["mean"], rtol=1e-12)
    np.testing.assert_allclose(ref.var, state["var"], rtol=1e-12, atol=1e-12)


def test_static_reference_matches_on_every_kind_of_bound() -> None:
    det = StaticBounds.example(N_SERIES)  # both bounds, upper only, lower only, none
    ref = reference_for(det)
    assert isinstance(ref, PyStaticBounds)
    batches = [(r, t, v / 50.0) for r, t, v in random_batches(3, n_batches=10)]

    vec = run_detector(det, batches)
    assert_same(vec, run_reference(ref, batches))
    assert 0 < int(vec.score.sum()) < len(vec.score)


def varied_batches(seed: int, n_batches: int, ts_step: float = 10.0,
                   n_series: int = N_SERIES) -> list[Batch]:
    """Like :func:`random_batches`, plus the shapes the newer detectors judge.

    Rows 6-11 sit on a few repeated values (a MAD of 0 with a moving minority), rows 12-21
    step to a new level halfway, 5% of the points are stragglers up to two batches old,
    and a batch is ``ts_step`` seconds after the one before.
    """
    rng = np.random.default_rng(seed)
    levels = rng.uniform(-50.0, 500.0, n_series)
    levels[:3] = 0.0
    noise = rng.uniform(0.0, 0.05, n_series) * np.abs(levels)
    noise[3:6] = 0.0
    steps = np.zeros(n_series)
    steps[12:22] = rng.choice([-1.0, 1.0], 10) * rng.uniform(5.0, 30.0, 10) * (noise[12:22] + 1)
    out: list[Batch] = []
    for b in range(n_batches):
        k = rng.integers(0, 5, n_series)
        rows = np.repeat(np.arange(n_series), k)
        ticks = rng.integers(0, 4, len(rows)).astype(np.float64)
        late = rng.random(len(rows)) < 0.05
        ticks[late] -= rng.uniform(0.0, 8.0, int(late.sum()))
        ts = ts_step * (b + ticks / 4.0)
        values = levels[rows] + noise[rows] * rng.standard_normal(len(rows))
        gauge = (rows >= 6) & (rows < 12)
        values[gauge] = levels[rows[gauge]] + rng.choice([0.0, 0.0, 0.0, 1.0, 3.0],
                                                         int(gauge.sum()))
        if b >= n_batches // 2:
            values += steps[rows]
        spikes = rng.random(len(rows)) < 0.03
        values[spikes] += rng.choice([-1.0, 1.0], int(spikes.sum())) * 1e3
        order = rng.permutation(len(rows))
        out.append((rows[order], ts[order], values[order]))
    return out


def reference_state(ref: Any, state: dict[str, npt.NDArray[Any]]) -> dict[str, list[Any]]:
    """The reference's state in the detector's export layout, for the keys of ``state``."""
    got: dict[str, list[Any]] = {}
    for key in state:
        stat, _, suffix = key.rpartition("_")
        if key == "ring":
            got[key] = [row.tolist() for row in ref.ring]
        elif isinstance(ref, PySeasonalBaseline) and stat in ("mean", "var", "count"):
            got[key] = list(getattr(ref, stat))[int(suffix)::ref.bins]
        elif isinstance(ref, PySloBurnRate) and stat == "avg":
            got[key] = [row[list(WINDOWS).index(suffix)] for row in ref.avg]
        else:
            got[key] = list(getattr(ref, key))
    return got


def check_detector(det: Detector, batches: list[Batch]) -> DetectorOutput:
    """Reference from ``det`` as it stands, both over ``batches``: same answers, same state."""
    ref = reference_for(det)
    assert ref is not None and ref.name == det.name
    vec = run_detector(det, batches)
    assert_same(vec, run_reference(ref, batches))
    state = det.export_state()
    for key, values in reference_state(ref, state).items():
        np.testing.assert_allclose(values, state[key], rtol=1e-12, atol=1e-12,
                                   equal_nan=True, err_msg=key)
    return vec


def fresh(cls: type[Detector], params: dict[str, Any]) -> Detector:
    det = cls(**params)
    det.resize(N_SERIES)
    return det


@pytest.mark.parametrize("params", [
    {},  # window 32, warm-up 32: the whole ring before any score
    {"window": 5, "warmup": 3},  # the contract test's example: the ring wraps often
    {"window": 8, "warmup": 0, "z_threshold": 2.0},
    {"window": 3, "rel_min_scale": 0.0, "min_scale": 1e-3},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_mad_reference_matches_scores_and_ring(params: dict[str, Any], seed: int) -> None:
    det = fresh(RobustMad, params)
    vec = check_detector(det, varied_batches(seed, n_batches=40))
    assert int((vec.score >= 0.5).sum()) > 10
    # the mean-absolute-deviation fallback had work: rings that move but have a MAD of 0
    ring = det.export_state()["ring"].astype(np.float64)
    mad = np.median(np.abs(ring - np.median(ring, axis=1)[:, None]), axis=1)
    assert bool(((mad == 0.0) & (np.ptp(ring, axis=1) > 0.0)).any())


@pytest.mark.parametrize("params", [
    {},  # the shipped defaults: 50 points of warm-up, h 10
    {"alpha": 0.3, "warmup": 3, "h": 2.0},  # the contract test's example
    {"k": 0.0, "h": 4.0, "warmup": 5},  # k 0: the shift estimate falls back on clip_z
    {"alpha": 1.0, "warmup": 1, "clip_z": 1.5, "rel_min_std": 0.0},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_level_shift_reference_matches_cusum_and_rebase(params: dict[str, Any],
                                                        seed: int) -> None:
    det = fresh(LevelShift, params)
    vec = check_detector(det, varied_batches(seed, n_batches=60))
    assert int((vec.score >= 0.5).sum()) > 0  # fired, so the re-base path ran
    assert int((vec.deviation != 0.0).sum()) > 10


@pytest.mark.parametrize("params", [
    {},
    {"alpha": 0.3, "warmup": 3},
    {"alpha": 1.0, "warmup": 0, "clip_z": 0.5, "z_threshold": 2.0},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_spike_reference_matches_jumps_and_scale(params: dict[str, Any], seed: int) -> None:
    vec = check_detector(fresh(Spike, params), varied_batches(seed, n_batches=40))
    assert int((vec.score >= 0.5).sum()) > 10


@pytest.mark.parametrize(("params", "ts_step"), [
    ({"period_s": 8.0, "memory_periods": 1.0, "warmup": 2}, 10.0),  # the contract example
    ({"period_s": 40.0, "bins": 4, "warmup": 3, "clip_z": 1.0}, 10.0),
    ({"bins": 6, "warmup": 5}, 3600.0),  # daily, a batch an hour: every slot warms
])
@pytest.mark.parametrize("seed", [1, 2])
def test_seasonal_reference_matches_slots_and_profile(params: dict[str, Any], ts_step: float,
                                                      seed: int) -> None:
    vec = check_detector(fresh(SeasonalBaseline, params),
                         varied_batches(seed, n_batches=60, ts_step=ts_step))
    assert int((vec.score >= 0.5).sum()) > 10


@pytest.mark.parametrize(("params", "ts_step"), [
    ({"objective": 0.9, "scale": 1.0 / 300.0}, 10.0),  # the contract test's example
    ({}, 600.0),  # 99.9%, real windows: a batch each 10 minutes warms the 5m and 30m pairs
    ({"objective": 0.95, "scale": 0.01}, 1.0),
])
@pytest.mark.parametrize("seed", [1, 2])
def test_slo_burn_reference_matches_windows(params: dict[str, Any], ts_step: float,
                                            seed: int) -> None:
    # ratios from -0.1 to 1, spikes to +-2: both clips run
    batches = [(r, t, v / 500.0) for r, t, v in varied_batches(seed, 40, ts_step=ts_step)]
    vec = check_detector(fresh(SloBurnRate, params), batches)
    assert 0 < int((vec.score >= 0.5).sum()) < len(vec.score)


@pytest.mark.parametrize("params", [
    {},  # k 5, a 30 s floor, 3 intervals of warm-up
    {"k": 2.0, "min_silence_s": 0.0, "warmup": 1},  # the contract test's example
    {"beta": 1.0, "warmup": 2, "k": 1.5},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_absence_reference_matches_cadence_and_deadlines(params: dict[str, Any],
                                                         seed: int) -> None:
    det = fresh(Absence, params)
    vec = check_detector(det, varied_batches(seed, n_batches=40))
    assert not vec.score.any()  # points never score; their evidence and deadlines match
    assert int(np.isfinite(vec.deviation).sum()) > 100
    assert int(np.isfinite(det.export_state()["deadline"]).sum()) > N_SERIES // 2


def test_every_detector_in_the_package_has_a_reference() -> None:
    found: set[type[Detector]] = set()
    for info in pkgutil.iter_modules(detectors.__path__):
        module = importlib.import_module(f"detectors.{info.name}")
        found |= {obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, Detector) and not inspect.isabstract(obj)
                  and obj.__module__ == module.__name__}
    own: dict[type[Detector], type] = {
        EwmaZScore: PyEwmaZScore, StaticBounds: PyStaticBounds, RobustMad: PyRobustMad,
        LevelShift: PyLevelShift, Spike: PySpike, SeasonalBaseline: PySeasonalBaseline,
        SloBurnRate: PySloBurnRate, Absence: PyAbsence,
    }
    assert found == set(REFERENCES) == set(own)
    for cls, py in own.items():
        ref = reference_for(cls.example(3))
        assert ref is not None and type(ref) is py and ref.name == cls.name


def test_a_reference_builder_refuses_another_class() -> None:
    with pytest.raises(TypeError) as err:
        REFERENCES[Spike](EwmaZScore())
    assert str(err.value) == "Spike's reference got a EwmaZScore"


def ensemble_under_test() -> Ensemble:
    """EWMA then bounds, with a short warm-up and re-alert so every hysteresis path runs."""
    ens = Ensemble([EwmaZScore(warmup=5), StaticBounds()], fire_threshold=0.5,
                   clear_threshold=0.3, realert_s=15.0)
    ens.resize(N_SERIES)
    bounded = ens.detectors[1]
    assert isinstance(bounded, StaticBounds)
    rows = np.arange(0, N_SERIES, 3)
    bounded.set_bounds(rows, np.full(len(rows), -100.0), np.full(len(rows), 400.0))
    return ens


def vectorised_points(ens: Ensemble, batches: list[Batch]) -> EnsembleOutput:
    outs = [ens.update(r, t, v) for r, t, v in batches]
    return EnsembleOutput(*(np.concatenate([getattr(o, f) for o in outs])
                            for f in EnsembleOutput._fields))


def reference_points(ref: PyEnsemble, batches: list[Batch]) -> list[PyPoint]:
    return [p for r, t, v in batches
            for p in ref.update_batch(r.tolist(), t.tolist(), v.tolist())]


def assert_same_points(vec: EnsembleOutput, ref: list[PyPoint]) -> None:
    for field in ("confidence", "since", "baseline", "deviation"):
        np.testing.assert_allclose([getattr(p, field) for p in ref], getattr(vec, field),
                                   rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=field)
    np.testing.assert_allclose([p.scores for p in ref], vec.scores, rtol=1e-12, atol=1e-12)
    for field in ("alert", "active", "top"):
        np.testing.assert_array_equal([getattr(p, field) for p in ref], getattr(vec, field),
                                      err_msg=field)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_ensemble_reference_matches_scores_and_hysteresis(seed: int) -> None:
    ens = ensemble_under_test()
    ref, missing = reference_ensemble(ens)
    batches = random_batches(seed, n_batches=40)

    vec = vectorised_points(ens, batches)
    assert_same_points(vec, reference_points(ref, batches))
    assert missing == ()
    # Non-vacuous: rising edges, re-alerts, both detectors on top, some series clearing.
    ts = np.concatenate([t for _, t, _ in batches])
    rising = vec.alert & (vec.since == ts)
    assert int(rising.sum()) > 10
    assert int((vec.alert & ~rising).sum()) > 0  # re-alerts of a still-active series
    assert set(vec.top.tolist()) == {0, 1}
    assert bool(vec.active.any()) and not bool(vec.active.all())


def test_reference_taken_from_a_warm_ensemble_continues_identically() -> None:
    ens = ensemble_under_test()
    batches = random_batches(7, n_batches=40)
    vectorised_points(ens, batches[:20])
    ref, _ = reference_ensemble(ens)

    assert_same_points(vectorised_points(ens, batches[20:]),
                       reference_points(ref, batches[20:]))


def every_detector(**brakes: Any) -> Ensemble:
    """One of each detector, in their contract-test configurations, seasonal over 40 s."""
    members: list[Detector] = [cls.example(N_SERIES) for cls in
                               (EwmaZScore, RobustMad, LevelShift, Spike, SloBurnRate, Absence)]
    members.append(fresh(SeasonalBaseline, {"period_s": 40.0, "bins": 4, "warmup": 3}))
    members.append(StaticBounds.example(N_SERIES))
    return Ensemble(members, fire_threshold=0.5, clear_threshold=0.3, realert_s=15.0, **brakes)


def check_warm_ensemble(ens: Ensemble, batches: list[Batch]) -> EnsembleOutput:
    """Run a third of ``batches``, take the reference, run the rest through both: equal."""
    cut = len(batches) // 3
    vectorised_points(ens, batches[:cut])
    ref, missing = reference_ensemble(ens)
    assert missing == ()
    assert [d.name for d in ref.detectors] == list(ens.detector_names)
    vec = vectorised_points(ens, batches[cut:])
    assert_same_points(vec, reference_points(ref, batches[cut:]))
    state = ens.export_state()
    for key in ("active", "since", "last_alert", "surprise_peak", "surprise_ts"):
        if key == "surprise_peak" and ens.peak_per_detector:
            continue
        np.testing.assert_allclose(list(getattr(ref, key)), state[f"ensemble.{key}"],
                                   rtol=1e-12, equal_nan=True, err_msg=key)
    if ens.peak_per_detector:
        for det, peaks in zip(ens.detectors, ref.detector_peaks, strict=True):
            if det.absolute:  # static bounds: taken as they are, no peak kept
                assert f"ensemble.surprise_peak_{det.name}" not in state
                continue
            np.testing.assert_allclose(list(peaks), state[f"ensemble.surprise_peak_{det.name}"],
                                       rtol=1e-12, err_msg=det.name)
    return vec


@pytest.mark.parametrize("seed", [8, 9])
def test_ensemble_of_every_detector_matches(seed: int) -> None:
    ens = every_detector()
    vec = check_warm_ensemble(ens, varied_batches(seed, n_batches=30))
    # every member that can score a point was on top somewhere (absence scores points 0)
    assert set(vec.top.tolist()) == {j for j, d in enumerate(ens.detectors)
                                     if d.name != "absence"}
    assert int(vec.alert.sum()) > 10


@pytest.mark.parametrize("seed", [8, 9])
def test_ensemble_brakes_match_holdoff_and_peak_surprise(seed: int) -> None:
    # batches 10 s apart: a 60 s hold-off outlasts a clear, the peak halves every 50 s
    ens = every_detector(holdoff_s=60.0, peak_half_life_s=50.0, peak_growth=4.0)
    plain = every_detector()
    batches = varied_batches(seed, n_batches=45)
    vec = check_warm_ensemble(ens, batches)
    vectorised_points(plain, batches[:len(batches) // 3])
    base = vectorised_points(plain, batches[len(batches) // 3:])

    assert int(vec.alert.sum()) > 5
    assert int(vec.alert.sum()) < int(base.alert.sum())  # the brakes held some back
    assert bool((vec.confidence < base.confidence).any())  # measured against a raised peak
    assert float(ens.export_state()["ensemble.surprise_peak"].max()) > 4.0


@pytest.mark.parametrize("seed", [8, 9])
def test_ensemble_peak_per_detector_matches(seed: int) -> None:
    ens = every_detector(holdoff_s=60.0, peak_half_life_s=50.0, peak_growth=8.0,
                         peak_per_detector=True)
    fused = every_detector(holdoff_s=60.0, peak_half_life_s=50.0, peak_growth=8.0)
    batches = varied_batches(seed, n_batches=45)
    vec = check_warm_ensemble(ens, batches)
    vectorised_points(fused, batches[:len(batches) // 3])
    one = vectorised_points(fused, batches[len(batches) // 3:])

    assert int(vec.alert.sum()) > 5
    assert not np.array_equal(vec.confidence, one.confidence)  # the peaks differ
    state = ens.export_state()
    assert sum(float(state[f"ensemble.surprise_peak_{d.name}"].max()) > 4.0
               for d in ens.detectors if not d.absolute) >= 2  # more than one raised its own


def test_the_configured_ensemble_matches() -> None:
    """``deploy/hotpath.yaml``'s default ensemble, as it is now, with its bounds."""
    cfg = load_config(CONFIG)
    ens = build_ensemble(cfg, 1000)
    wl = Workload(1000, seed=3)
    batches = [wl.batch(1000, points=4) for _ in range(16)] + [wl.batch(500) for _ in range(12)]
    vec = check_warm_ensemble(ens, batches)
    assert int((vec.scores >= 0.5).sum()) > 0


class _Renamed(EwmaZScore):
    """Same math, another class: references match exact classes, so it has none."""

    name: ClassVar[str] = "renamed"


def test_members_without_a_reference_are_named_and_left_out() -> None:
    ens = Ensemble([EwmaZScore(), _Renamed(), StaticBounds()])
    ref, missing = reference_ensemble(ens)
    assert missing == ("renamed",)
    assert [d.name for d in ref.detectors] == ["ewma", "static"]


def test_an_ensemble_with_no_reference_at_all_is_refused() -> None:
    with pytest.raises(ValueError) as err:
        reference_ensemble(Ensemble([_Renamed()]))
    assert str(err.value) == "a reference ensemble needs at least one detector reference"
