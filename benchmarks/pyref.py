"""Pure-Python references of the detectors' math: plain floats and lists, one point at a time.

The cost benchmark (:mod:`benchmarks.detectors`) sets the vectorised ensemble against this
loop, so it must do the same arithmetic in the same order, only without numpy:
``tests/detectors/test_pyref_equivalence.py`` checks that it gives the same scores, baselines,
deviations and alerts. Per series state is one Python list per field, indexed by row, as a
straightforward per-point implementation would keep it.

A detector class gets a reference by an entry in :data:`REFERENCES` (exact class, so a
subclass with different math is never silently covered); :func:`reference_ensemble` says
which members of an ensemble had none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from detectors.base import Detector
from detectors.ensemble import Ensemble
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds

_LN2 = math.log(2.0)
_NAN = math.nan

Scored = tuple[float, float, float]
"""(score, baseline, deviation) of one point, as the vectorised ``DetectorOutput`` row."""


class PyDetector(Protocol):
    """One detector's reference: score one point against the state before it, then apply it."""

    name: str

    def update(self, row: int, ts: float, value: float) -> Scored: ...


class PyEwmaZScore:
    """:class:`detectors.ewma.EwmaZScore`, one point at a time.

    >>> ref = PyEwmaZScore(alpha=0.05, warmup=3, z_threshold=4.0, min_std=1e-6,
    ...                    rel_min_std=1e-3, clip_z=3.0, n_series=1)
    >>> [round(ref.update(0, float(t), v)[0], 3) for t, v in enumerate([10.0, 11.0, 9.0, 30.0])]
    [0.0, 0.0, 0.0, 1.0]
    """

    name = "ewma"

    def __init__(self, *, alpha: float, warmup: int, z_threshold: float, min_std: float,
                 rel_min_std: float, clip_z: float, n_series: int) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        self.clip_z = clip_z
        self.mean = [0.0] * n_series
        self.var = [0.0] * n_series
        self.count = [0] * n_series

    @classmethod
    def like(cls, det: EwmaZScore) -> PyEwmaZScore:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(alpha=det.alpha, warmup=det.warmup, z_threshold=det.z_threshold,
                  min_std=det.min_std, rel_min_std=det.rel_min_std, clip_z=det.clip_z,
                  n_series=0)
        state = det.export_state()
        ref.mean = state["mean"].tolist()
        ref.var = state["var"].tolist()
        ref.count = state["count"].tolist()
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        mean = self.mean[row]
        var = self.var[row]
        count = self.count[row]
        cold = count == 0
        not_warm = count < max(self.warmup, 1)
        floor = max(abs(mean) * self.rel_min_std, self.min_std)
        std = max(math.sqrt(var), floor)
        dev = value - mean
        z = _NAN if cold else dev / std
        if not_warm:
            score = 0.0
        else:
            ratio = z / self.z_threshold
            score = 1.0 - math.exp(ratio * ratio * -_LN2)
        baseline = _NAN if cold else mean
        if not_warm:
            diff = dev
        else:
            reach = std * self.clip_z
            diff = min(max(dev, -reach), reach)
        weight = max(1.0 / (count + 1.0), self.alpha)
        step = weight * diff
        self.mean[row] = mean + step
        self.var[row] = (1.0 - weight) * (var + diff * step)
        self.count[row] = count + 1
        return score, baseline, z


class PyStaticBounds:
    """:class:`detectors.static_bounds.StaticBounds`, one point at a time (NaN = no bound).

    >>> ref = PyStaticBounds(lower=[0.0], upper=[10.0])
    >>> ref.update(0, 1.0, 12.5), ref.update(0, 2.0, 5.0)
    ((1.0, 10.0, 2.5), (0.0, nan, 0.0))
    """

    name = "static"

    def __init__(self, lower: list[float], upper: list[float]) -> None:
        self.lower = lower
        self.upper = upper

    @classmethod
    def like(cls, det: StaticBounds) -> PyStaticBounds:
        """A copy of ``det``'s bounds."""
        state = det.export_state()
        return cls(state["lower"].tolist(), state["upper"].tolist())

    def update(self, row: int, ts: float, value: float) -> Scored:
        upper = self.upper[row]
        if value > upper:  # a NaN bound compares False: that side never fires
            return 1.0, upper, value - upper
        lower = self.lower[row]
        if value < lower:
            return 1.0, lower, value - lower
        return 0.0, _NAN, 0.0


def _ewma(det: Detector) -> PyDetector:
    assert isinstance(det, EwmaZScore)
    return PyEwmaZScore.like(det)


def _static(det: Detector) -> PyDetector:
    assert isinstance(det, StaticBounds)
    return PyStaticBounds.like(det)


REFERENCES: dict[type[Detector], Callable[[Detector], PyDetector]] = {
    EwmaZScore: _ewma,
    StaticBounds: _static,
}
"""Detector class → builder of its reference from a configured, possibly warm, instance."""


def reference_for(det: Detector) -> PyDetector | None:
    """The reference of ``det`` with its parameters and state, or None if its class has none.

    >>> reference_for(EwmaZScore()).name
    'ewma'
    """
    build = REFERENCES.get(type(det))
    return build(det) if build is not None else None


class PyPoint(NamedTuple):
    """One point's ensemble answer, the fields of ``EnsembleOutput`` for one row."""

    confidence: float
    alert: bool
    active: bool
    since: float
    scores: tuple[float, ...]
    top: int
    baseline: float
    deviation: float


class PyEnsemble:
    """:class:`detectors.ensemble.Ensemble` over references: max score, then hysteresis.

    >>> ens = PyEnsemble([PyStaticBounds([0.0], [10.0])], fire_threshold=0.5,
    ...                  clear_threshold=0.3, realert_s=60.0, n_series=1)
    >>> [(p.alert, p.active) for p in (ens.update(0, t, 20.0) for t in (1.0, 2.0, 70.0))]
    [(True, True), (False, True), (True, True)]
    """

    def __init__(self, detectors: Sequence[PyDetector], *, fire_threshold: float,
                 clear_threshold: float, realert_s: float, n_series: int) -> None:
        if not detectors:
            raise ValueError("a reference ensemble needs at least one detector reference")
        self.detectors = tuple(detectors)
        self.fire_threshold = fire_threshold
        self.clear_threshold = clear_threshold
        self.realert_s = realert_s
        self.active = [False] * n_series
        self.since = [_NAN] * n_series
        self.last_alert = [_NAN] * n_series

    def update(self, row: int, ts: float, value: float) -> PyPoint:
        outs = [det.update(row, ts, value) for det in self.detectors]
        confidence, baseline, deviation = outs[0]
        top = 0
        for j in range(1, len(outs)):
            score, base, dev = outs[j]
            if score > confidence:  # strict: the first detector wins ties
                confidence, baseline, deviation, top = score, base, dev, j
        was_active = self.active[row]
        last = self.last_alert[row]
        hot = confidence >= self.fire_threshold
        rising = hot and not was_active
        realert = hot and was_active and ts - last >= self.realert_s  # NaN last: False
        alert = rising or realert
        active = hot or (was_active and confidence >= self.clear_threshold)
        since = ts if rising else (self.since[row] if active else _NAN)
        self.active[row] = active
        self.since[row] = since
        if alert:
            self.last_alert[row] = ts
        return PyPoint(confidence, alert, active, since, tuple(o[0] for o in outs), top,
                       baseline, deviation)

    def update_batch(self, rows: Sequence[int], ts: Sequence[float],
                     values: Sequence[float]) -> list[PyPoint]:
        """Every point one by one in ts order (ties in input order); answers in input order."""
        out: list[PyPoint | None] = [None] * len(rows)
        for i in sorted(range(len(rows)), key=ts.__getitem__):
            out[i] = self.update(rows[i], ts[i], values[i])
        return [p for p in out if p is not None]


def reference_ensemble(ens: Ensemble) -> tuple[PyEnsemble, tuple[str, ...]]:
    """A reference of ``ens`` (parameters and current state) and the members it lacks.

    Members without a reference are left out of the reference's max, so with any missing
    it does less work than ``ens`` and its rate flatters Python. ValueError if none has one.

    >>> from detectors.ensemble import default_ensemble
    >>> ref, missing = reference_ensemble(default_ensemble())
    >>> [d.name for d in ref.detectors], missing
    (['ewma', 'static'], ())
    """
    covered: list[PyDetector] = []
    missing: list[str] = []
    for det in ens.detectors:
        member = reference_for(det)
        if member is None:
            missing.append(det.name)
        else:
            covered.append(member)
    state = ens.export_state()
    ref = PyEnsemble(covered, fire_threshold=ens.fire_threshold,
                     clear_threshold=ens.clear_threshold, realert_s=ens.realert_s, n_series=0)
    ref.active = state["ensemble.active"].tolist()
    ref.since = state["ensemble.since"].tolist()
    ref.last_alert = state["ensemble.last_alert"].tolist()
    return ref, tuple(missing)
