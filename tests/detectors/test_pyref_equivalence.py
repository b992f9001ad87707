"""The pure-Python references do the same math as the vectorised detectors.

The cost benchmark divides the vectorised rate by the reference's, so the two must compute
the same thing: same scores, baselines, deviations, alerts, on seeded random batches with
several points per series, ties in ts, flat series, spikes and bound violations.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.pyref import (
    PyEnsemble,
    PyEwmaZScore,
    PyPoint,
    PyStaticBounds,
    reference_ensemble,
    reference_for,
)
from detectors.base import DetectorOutput
from detectors.ensemble import Ensemble, EnsembleOutput
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds

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


def run_detector(det: EwmaZScore | StaticBounds, batches: list[Batch]) -> DetectorOutput:
    outs = [det.update(r, t, v) for r, t, v in batches]
    return DetectorOutput(*(np.concatenate([getattr(o, f) for o in outs])
                            for f in DetectorOutput._fields))


def run_reference(ref: PyEwmaZScore | PyStaticBounds, batches: list[Batch]) -> DetectorOutput:
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
