"""Reference of :class:`detectors.ensemble.Ensemble` at points: fuse, brakes, hysteresis.

The clock tick is not per point and has no reference here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from benchmarks.pyref.common import INF, NAN, PyDetector, f32_array
from benchmarks.pyref.registry import reference_for
from detectors.ensemble import Ensemble

# The ensemble's cap on a surprise: float64 cannot tell 1 - s below 2**-53 from 0.
_MAX_SURPRISE = 53.0
_EXP2_MAX = 1024.0  # 2 ** x is inf above this: numpy says so, math.exp2 raises


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

    With ``peak_half_life_s`` > 0 the top score is first taken against the series' peak
    surprise, and ``holdoff_s`` > 0 silences alerts that soon after the last one, as in the
    ensemble; both are off by default there and here.

    >>> from benchmarks.pyref.static_bounds import PyStaticBounds
    >>> ens = PyEnsemble([PyStaticBounds([0.0], [10.0])], fire_threshold=0.5,
    ...                  clear_threshold=0.3, realert_s=60.0, n_series=1)
    >>> [(p.alert, p.active) for p in (ens.update(0, t, 20.0) for t in (1.0, 2.0, 70.0))]
    [(True, True), (False, True), (True, True)]
    >>> held = PyEnsemble([PyStaticBounds([0.0], [10.0])], fire_threshold=0.5,
    ...                   clear_threshold=0.3, realert_s=60.0, holdoff_s=100.0, n_series=1)
    >>> [held.update(0, t, v).alert for t, v in ((1.0, 20.0), (2.0, 5.0), (3.0, 20.0))]
    [True, False, False]
    """

    def __init__(self, detectors: Sequence[PyDetector], *, fire_threshold: float,
                 clear_threshold: float, realert_s: float, n_series: int,
                 holdoff_s: float = 0.0, peak_half_life_s: float = 0.0,
                 peak_growth: float = 4.0, peak_per_detector: bool = False,
                 absolute: Sequence[bool] = ()) -> None:
        if not detectors:
            raise ValueError("a reference ensemble needs at least one detector reference")
        self.detectors = tuple(detectors)
        # per detector: its scores are taken as they are, not against a peak (static bounds)
        self.absolute = tuple(absolute) or (False,) * len(self.detectors)
        self.fire_threshold = fire_threshold
        self.clear_threshold = clear_threshold
        self.realert_s = realert_s
        self.holdoff_s = holdoff_s
        self.peak_half_life_s = peak_half_life_s
        self.peak_growth = peak_growth
        self.active = [False] * n_series
        self.since = [NAN] * n_series
        self.last_alert = [NAN] * n_series
        self.peak_per_detector = peak_per_detector
        self.surprise_peak = f32_array([1.0] * n_series)  # float32 in the ensemble's state
        # with peak_per_detector: one float32 table per detector, in detector order
        self.detector_peaks = [f32_array([1.0] * n_series) for _ in self.detectors]
        self.surprise_ts = [NAN] * n_series

    def update(self, row: int, ts: float, value: float) -> PyPoint:
        outs = [det.update(row, ts, value) for det in self.detectors]
        confidence, baseline, deviation = outs[0]
        top = 0
        for j in range(1, len(outs)):
            score, base, dev = outs[j]
            if score > confidence:  # strict: the first detector wins ties
                confidence, baseline, deviation, top = score, base, dev, j
        was_active = self.active[row]
        if self.peak_per_detector and self.peak_half_life_s > 0.0:
            normalised = [o[0] if self.absolute[j]
                          else self._against_own_peak(row, ts, o[0], j, was_active)
                          for j, o in enumerate(outs)]
            self.surprise_ts[row] = ts
            top = max(range(len(outs)), key=lambda j: (normalised[j], -j))
            confidence = normalised[top]
            _, baseline, deviation = outs[top]
        elif self.peak_half_life_s > 0.0:
            confidence = self._against_peak(row, ts, confidence, was_active)
        last = self.last_alert[row]
        hot = confidence >= self.fire_threshold
        rising = hot and not was_active
        realert = hot and was_active and ts - last >= self.realert_s  # NaN last: False
        alert = rising or realert
        if self.holdoff_s > 0.0 and ts - last < self.holdoff_s:  # NaN last: False
            alert = False
        active = hot or (was_active and confidence >= self.clear_threshold)
        since = ts if rising else (self.since[row] if active else NAN)
        self.active[row] = active
        self.since[row] = since
        if alert:
            self.last_alert[row] = ts
        return PyPoint(confidence, alert, active, since, tuple(o[0] for o in outs), top,
                       baseline, deviation)

    def _against_peak(self, row: int, ts: float, score: float, was_active: bool) -> float:
        """The top score as confidence against the series' decayed peak surprise."""
        seen = self.surprise_ts[row]
        halvings = 0.0 if math.isnan(seen) else (seen - ts) / self.peak_half_life_s
        decay = INF if halvings > _EXP2_MAX else math.exp2(halvings)
        peak = max(self.surprise_peak[row] * decay, 1.0)
        calm = 1.0 - score
        surprise = _MAX_SURPRISE if calm <= 0.0 else min(-math.log2(calm), _MAX_SURPRISE)
        confidence = 1.0 - math.exp2(-surprise / peak)
        if not was_active:  # the peak learns outside incidents only
            peak = max(peak, min(surprise, peak * self.peak_growth))
        self.surprise_peak[row] = peak
        self.surprise_ts[row] = ts
        return confidence

    def _against_own_peak(self, row: int, ts: float, score: float, j: int,
                          was_active: bool) -> float:
        """Detector ``j``'s score against its own decayed peak surprise."""
        peaks = self.detector_peaks[j]
        seen = self.surprise_ts[row]
        halvings = 0.0 if math.isnan(seen) else (seen - ts) / self.peak_half_life_s
        decay = INF if halvings > _EXP2_MAX else math.exp2(halvings)
        peak = max(peaks[row] * decay, 1.0)
        calm = 1.0 - score
        surprise = _MAX_SURPRISE if calm <= 0.0 else min(-math.log2(calm), _MAX_SURPRISE)
        confidence = 1.0 - math.exp2(-surprise / peak)
        if not was_active:
            peak = max(peak, min(surprise, peak * self.peak_growth))
        peaks[row] = peak
        return confidence

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
    absolute: list[bool] = []
    missing: list[str] = []
    for det in ens.detectors:
        member = reference_for(det)
        if member is None:
            missing.append(det.name)
        else:
            covered.append(member)
            absolute.append(det.absolute)
    state = ens.export_state()
    ref = PyEnsemble(covered, fire_threshold=ens.fire_threshold,
                     clear_threshold=ens.clear_threshold, realert_s=ens.realert_s,
                     holdoff_s=ens.holdoff_s, peak_half_life_s=ens.peak_half_life_s,
                     peak_growth=ens.peak_growth, peak_per_detector=ens.peak_per_detector,
                     absolute=absolute, n_series=0)
    ref.active = state["ensemble.active"].tolist()
    ref.since = state["ensemble.since"].tolist()
    ref.last_alert = state["ensemble.last_alert"].tolist()
    if ens.peak_per_detector:
        ref.detector_peaks = [
            f32_array(state[f"ensemble.surprise_peak_{det.name}"].tolist()) if not det.absolute
            else f32_array([]) for det in ens.detectors if reference_for(det) is not None]
    else:
        ref.surprise_peak = f32_array(state["ensemble.surprise_peak"].tolist())
    ref.surprise_ts = state["ensemble.surprise_ts"].tolist()
    return ref, tuple(missing)
