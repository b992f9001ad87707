"""Ensemble: run several detectors on one batch, fuse their scores, and alert on edges.

Confidence for a point is the highest score any detector gave it; the evidence (baseline,
deviation) comes from that detector. Per series hysteresis turns a run of anomalous points
into one alert rather than one per point:

- inactive and confidence >= ``fire_threshold``: alert, the series goes active (rising edge);
- active and confidence >= ``fire_threshold`` and ``realert_s`` passed since the last alert:
  alert again (the incident is still going on);
- confidence < ``clear_threshold``: the series clears. Between the two thresholds the series
  keeps whatever state it had, so a signal hovering near one threshold does not flap.

The alert of a series' k-th point depends on its (k-1)-th, so hysteresis runs in the same
waves as the detectors.

Two optional per-series brakes, both off by default, make one incident one finding on
series that are noisy by nature (found on the NAB dev data, where every detection outside a
labelled window costs and one per anomaly is the ideal):

- ``holdoff_s``: after an alert, the series does not alert again for this long, even if it
  clears and fires again in between (one incident, one page).
- ``peak_half_life_s`` > 0: the confidence is measured against the series' own recent peak.
  A detector score ``s`` is a surprise ``a = -log2(1 - s)`` (1 at the detector's threshold,
  ``(z / z_threshold) ** 2`` for the z-scores); the series keeps the largest surprise it has
  seen outside an incident, decaying by half every ``peak_half_life_s`` and never below 1,
  and the confidence is ``1 - 0.5 ** (a / peak)``. A series that has never been surprised
  keeps the plain maximum score; one whose ordinary life holds spikes of surprise 9 (3x the
  threshold) fires only beyond that, and an alert then says by how much it beat the record:
  a confidence comparable across series and detectors, which one global threshold can rank.
  ``peak_growth`` caps how far one point raises the peak, so a single glitch cannot blind a
  series for days.
- ``peak_per_detector``: each detector's surprise is measured against that detector's own
  peak, and the confidence is the highest of the results. A series whose jumps are lively
  but whose daily shape is steady then still fires on a break of its shape, where one fused
  peak (the largest of any detector) would have hidden it (NAB dev: +6 with a seasonal
  member).

A clock tick (:meth:`Ensemble.tick`) asks every detector what the passing of time says (see
"The clock tick" in :mod:`detectors.base`; an absent series is the case) and puts the rows
they report through the same hysteresis, at ts ``now``: a silence reported once alerts once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.base import (
    BoolArray,
    Detector,
    FloatArray,
    IntArray,
    SeriesArrays,
    StateField,
    as_now,
    as_points,
)
from detectors.errors import InputError, StateError
from detectors.ewma import EwmaZScore
from detectors.params import non_negative
from detectors.static_bounds import StaticBounds
from detectors.waves import plan_waves

_PREFIX = "ensemble"
# The surprise of a score of 1: float64 cannot tell 1 - s below 2**-53 from 0.
_MAX_SURPRISE = 53.0


class EnsembleOutput(NamedTuple):
    """Per-point result of :meth:`Ensemble.update`, aligned with the input order."""

    confidence: FloatArray  # highest detector score
    alert: BoolArray  # rising edge or re-alert: emit a finding for this point
    active: BoolArray  # the series' hysteresis state after this point
    since: FloatArray  # ts the series went active (NaN when not active after this point)
    scores: FloatArray  # (n_points, n_detectors)
    agreed: BoolArray  # (n_points, n_detectors): score >= fire_threshold
    top: IntArray  # index of the detector with the highest score (first on ties)
    baseline: FloatArray  # the top detector's baseline
    deviation: FloatArray  # the top detector's deviation


class EnsembleTick(NamedTuple):
    """Result of :meth:`Ensemble.tick`: one entry per row some detector reported, ascending."""

    rows: IntArray  # the series reported at this tick
    confidence: FloatArray  # highest detector score
    alert: BoolArray  # rising edge or re-alert: emit a finding for this row at ``now``
    active: BoolArray  # the series' hysteresis state after the tick
    since: FloatArray  # ts the series went active (NaN when not active)
    scores: FloatArray  # (n_rows, n_detectors); 0 where a detector said nothing of the row
    agreed: BoolArray  # (n_rows, n_detectors): score >= fire_threshold
    top: IntArray  # index of the detector with the highest score (first on ties)
    baseline: FloatArray  # the top detector's baseline
    deviation: FloatArray  # the top detector's deviation


class Ensemble:
    """Several detectors over the same series rows, fused, with per-series hysteresis.

    >>> ens = default_ensemble(warmup=5)
    >>> ens.resize(1)
    >>> values = np.r_[np.full(10, 100.0) + np.tile([0.5, -0.5], 5), np.full(5, 150.0)]
    >>> out = ens.update(np.zeros(15, np.intp), np.arange(15.0), values)
    >>> out.alert.nonzero()[0].tolist(), out.active[-1].item(), out.since[-1].item()
    ([10], True, 10.0)
    >>> ens.detector_names, sorted(ens.export_state())[:3]
    (('ewma', 'static'), ['ensemble.active', 'ensemble.last_alert', 'ensemble.since'])
    """

    state_fields: ClassVar[Mapping[str, StateField]] = {
        "active": StateField(np.bool_, False),
        "since": StateField(np.float64, np.nan),
        "last_alert": StateField(np.float64, np.nan),
        # the peak surprise (float32: a ratio, 7 digits are plenty) and the ts it was taken at
        "surprise_peak": StateField(np.float32, 1.0),
        "surprise_ts": StateField(np.float64, np.nan),
    }

    def __init__(
        self,
        detectors: Sequence[Detector],
        fire_threshold: float = 0.5,
        clear_threshold: float = 0.3,
        realert_s: float = 300.0,
        holdoff_s: float = 0.0,
        peak_half_life_s: float = 0.0,
        peak_growth: float = 4.0,
        peak_per_detector: bool = False,
    ) -> None:
        """``fire_threshold`` 0.5 is where a detector says "beyond its own threshold"; clearing
        at 0.3 leaves a band wide enough that noise around 0.5 does not flap; re-alerting
        every 300 s reminds without paging every point of a long incident. ``holdoff_s`` and
        ``peak_half_life_s`` (0: off) are the brakes of the module docstring; ``peak_growth``
        4: one point may raise the peak at most fourfold (a z twice the last record), on
        the NAB dev data as good as no cap, yet a lone glitch fades within two half-lives.
        ``peak_per_detector`` keeps one peak per detector instead of one for the fused score
        (state ``surprise_peak_<detector>`` instead of ``surprise_peak``)."""
        if not detectors:
            raise InputError("an ensemble needs at least one detector")
        names = [d.name for d in detectors]
        for name in names:
            if names.count(name) > 1:
                raise InputError(f"duplicate detector name {name!r}")
            if name == _PREFIX:
                raise InputError(f"detector name {_PREFIX!r} is reserved")
        if not 0.0 <= clear_threshold <= fire_threshold <= 1.0:
            raise InputError(
                "need 0 <= clear_threshold <= fire_threshold <= 1, got "
                f"clear_threshold={clear_threshold}, fire_threshold={fire_threshold}"
            )
        non_negative("realert_s", realert_s)
        non_negative("holdoff_s", holdoff_s)
        non_negative("peak_half_life_s", peak_half_life_s)
        if not peak_growth >= 1.0:
            raise InputError(f"peak_growth must be >= 1, got {peak_growth}")
        sizes = {d.n_series for d in detectors}
        if len(sizes) > 1:
            raise InputError(f"detectors hold different numbers of series: {sorted(sizes)}")
        self._detectors = tuple(detectors)
        self.fire_threshold = fire_threshold
        self.clear_threshold = clear_threshold
        self.realert_s = realert_s
        self.holdoff_s = holdoff_s
        self.peak_half_life_s = peak_half_life_s
        self.peak_growth = peak_growth
        self.peak_per_detector = peak_per_detector
        self._fields = dict(self.state_fields)
        if peak_per_detector:
            peak = self._fields.pop("surprise_peak")
            self._fields.update({f"surprise_peak_{d.name}": peak for d in self._detectors
                                 if not d.absolute})
        self._state = SeriesArrays(self._fields)
        self._state.resize(sizes.pop())

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The member detectors, in column order (the runtime configures some of them)."""
        return tuple(self._detectors)

    @property
    def detector_names(self) -> tuple[str, ...]:
        """Names of the detectors, in column order of ``scores`` and ``agreed``."""
        return tuple(d.name for d in self._detectors)

    @property
    def n_series(self) -> int:
        """Rows of state held, one per series."""
        return self._state.n

    def resize(self, n_series: int) -> None:
        """Grow every detector and the hysteresis state to ``n_series`` rows."""
        self._state.resize(n_series)
        for det in self._detectors:
            det.resize(n_series)

    def export_state(self) -> dict[str, npt.NDArray[Any]]:
        """All state, keys namespaced ``"<detector>.<field>"`` and ``"ensemble.<field>"``."""
        state = {f"{_PREFIX}.{k}": v for k, v in self._state.export().items()}
        for det in self._detectors:
            state.update({f"{det.name}.{k}": v for k, v in det.export_state().items()})
        return state

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Load what :meth:`export_state` produced; :class:`StateError` names the full key.

        Every part is checked on scratch copies first, so a bad dict changes nothing.
        """
        known = {*self.detector_names, _PREFIX}
        parts: dict[str, dict[str, npt.NDArray[Any]]] = {name: {} for name in known}
        for key, value in state.items():
            owner, _, field = key.partition(".")
            if owner not in known or not field:
                raise StateError(key, "unexpected key")
            parts[owner][field] = value
        hysteresis = SeriesArrays(self._fields)
        _namespaced(_PREFIX, hysteresis.load, parts[_PREFIX])
        backups = [det.export_state() for det in self._detectors]
        try:
            for det in self._detectors:
                _namespaced(det.name, det.load_state, parts[det.name])
                if det.n_series != hysteresis.n:
                    raise StateError(
                        det.name,
                        f"holds {det.n_series} series, {_PREFIX}.active has {hysteresis.n}",
                    )
        except StateError:
            for det, backup in zip(self._detectors, backups, strict=True):
                det.load_state(backup)
            raise
        self._state = hysteresis

    def update(
        self, rows: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike
    ) -> EnsembleOutput:
        """Plan the waves once, run every detector, fuse, then apply hysteresis in ts order."""
        rows_a, ts_a, values_a = as_points(rows, ts, values, self.n_series)
        plan = plan_waves(rows_a, ts_a)
        # Everything runs in wave order (waves are slices) and is put back in input order once
        # at the end, instead of every detector gathering and scattering on its own.
        rows_w = plan.to_wave_order(rows_a)
        ts_w = plan.to_wave_order(ts_a)
        values_w = plan.to_wave_order(values_a)
        in_order = plan if plan.in_wave_order else plan.reordered()
        # The ensemble checked the batch against its own row count, which every member shares.
        outs = [det.update_checked(rows_w, ts_w, values_w, in_order) for det in self._detectors]
        n = len(rows_w)
        alert = np.empty(n, dtype=np.bool_)
        active = np.empty(n, dtype=np.bool_)
        since = np.empty(n, dtype=np.float64)
        per_detector = self.peak_per_detector and self.peak_half_life_s > 0.0
        if per_detector:
            # the top detector and its confidence are chosen after normalisation, per wave
            confidence = np.empty(n, dtype=np.float64)
            top = np.empty(n, dtype=np.intp)
        else:
            confidence, top = _fuse([o.score for o in outs], strict_first=True)
        active_all = self._state["active"]
        for wave in in_order.slices():
            rows, ts = rows_w[wave], ts_w[wave]
            was_active = active_all[rows]
            if per_detector:
                confidence[wave], top[wave] = self._against_peaks(
                    rows, ts, [o.score[wave] for o in outs], was_active
                )
            elif self.peak_half_life_s > 0.0:
                confidence[wave] = self._against_peak(rows, ts, confidence[wave], was_active)
            alert[wave], active[wave], since[wave] = self._hysteresis(
                rows, ts, confidence[wave], was_active
            )
        # the evidence is the top detector's (after normalisation where there is one)
        baseline, deviation = _pick(top, [o.baseline for o in outs], [o.deviation for o in outs])
        raw = np.column_stack([o.score for o in outs])
        scores = plan.to_input_order(raw)
        return EnsembleOutput(
            confidence=plan.to_input_order(confidence),
            alert=plan.to_input_order(alert),
            active=plan.to_input_order(active),
            since=plan.to_input_order(since),
            scores=scores,
            agreed=scores >= self.fire_threshold,
            top=plan.to_input_order(top),
            baseline=plan.to_input_order(baseline),
            deviation=plan.to_input_order(deviation),
        )

    def tick(self, now: float) -> EnsembleTick:
        """Collect every detector's tick at ``now`` and alert through the same hysteresis.

        >>> from detectors.absence import Absence
        >>> ens = Ensemble([EwmaZScore(), Absence(min_silence_s=0.0)])
        >>> ens.resize(2)
        >>> ts = np.arange(0.0, 60.0, 10.0)  # both series every 10 s up to ts 50
        >>> _ = ens.update(np.repeat([0, 1], 6), np.tile(ts, 2), np.ones(12))
        >>> _ = ens.update([1], [60.0], [1.0])
        >>> out = ens.tick(105.0)  # series 0: 55 s of silence, over 5 intervals
        >>> out.rows.tolist(), out.alert.tolist(), out.agreed.tolist(), out.since.tolist()
        ([0], [True], [[False, True]], [105.0])
        >>> ens.tick(106.0).rows.tolist()  # one silence is reported once
        []
        """
        at = as_now(now)
        said = [
            (j, out)
            for j, det in enumerate(self._detectors)
            if (out := det.tick(at)) is not None and len(out.rows)
        ]
        rows = _union([out.rows for _, out in said])
        shape = (len(rows), len(self._detectors))
        scores = np.zeros(shape)
        baselines = np.full(shape, np.nan)
        deviations = np.full(shape, np.nan)
        for j, out in said:
            pos = np.searchsorted(rows, out.rows)
            scores[pos, j] = out.score
            baselines[pos, j] = out.baseline
            deviations[pos, j] = out.deviation
        top = scores.argmax(axis=1) if len(rows) else np.empty(0, dtype=np.intp)
        at_top = (np.arange(len(rows)), top)
        confidence = scores[at_top]
        alert, active, since = self._hysteresis(
            rows, np.full(len(rows), at), confidence, self._state["active"][rows]
        )
        return EnsembleTick(
            rows=rows,
            confidence=confidence,
            alert=alert,
            active=active,
            since=since,
            scores=scores,
            agreed=scores >= self.fire_threshold,
            top=top.astype(np.intp),
            baseline=baselines[at_top],
            deviation=deviations[at_top],
        )

    def _against_peak(
        self, rows: IntArray, ts: FloatArray, score: FloatArray, was_active: BoolArray
    ) -> FloatArray:
        """One wave: the top score as confidence against the series' peak; updates the peak.

        Runs before :meth:`_hysteresis` of the same wave, so ``active`` is still the state
        before the point: the peak learns from the series' ordinary life and from the point
        that opens an incident, not from the rest of the incident.
        """
        peak_all = self._state["surprise_peak"]
        seen_all = self._state["surprise_ts"]
        seen = seen_all[rows]
        age = np.where(np.isnan(seen), 0.0, ts - seen)
        peak = peak_all[rows] * np.exp2(-age / self.peak_half_life_s)
        np.maximum(peak, 1.0, out=peak)
        with np.errstate(divide="ignore"):
            surprise = -np.log2(1.0 - score)
        # a score of exactly 1 (float64 rounds 1 - 2**-53 up) is the largest surprise it holds
        np.minimum(surprise, _MAX_SURPRISE, out=surprise)
        confidence: FloatArray = 1.0 - np.exp2(-surprise / peak)
        raised = np.maximum(peak, np.minimum(surprise, peak * self.peak_growth))
        peak_all[rows] = np.where(was_active, peak, raised)
        seen_all[rows] = ts
        return confidence

    def _against_peaks(
        self, rows: IntArray, ts: FloatArray, scores: Sequence[FloatArray], was_active: BoolArray
    ) -> tuple[FloatArray, IntArray]:
        """One wave: every detector's score against its own peak, as :meth:`_against_peak`.

        ``scores`` holds one column per detector; the answer is the highest normalised score
        per point and its detector (the first on ties, as ``argmax``: NaN counts as highest).
        """
        seen_all = self._state["surprise_ts"]
        seen = seen_all[rows]
        age = np.where(np.isnan(seen), 0.0, ts - seen)
        decay = np.exp2(-age / self.peak_half_life_s)
        columns = []
        for det, score in zip(self._detectors, scores, strict=True):
            if det.absolute:  # a crossed limit is as sure on every series: no peak, no work
                columns.append(score)
                continue
            peak = self._state[f"surprise_peak_{det.name}"][rows] * decay
            np.maximum(peak, 1.0, out=peak)
            # in place, the same operations as in _against_peak: -log2(1 - s), 1 - 2**(-a/p)
            surprise = np.subtract(1.0, score)
            with np.errstate(divide="ignore"):
                np.log2(surprise, out=surprise)
            np.negative(surprise, out=surprise)
            np.minimum(surprise, _MAX_SURPRISE, out=surprise)
            confidence = np.divide(surprise, peak)
            np.negative(confidence, out=confidence)
            np.exp2(confidence, out=confidence)
            np.subtract(1.0, confidence, out=confidence)
            columns.append(confidence)
            raised = np.multiply(peak, self.peak_growth)
            np.minimum(surprise, raised, out=raised)
            np.maximum(peak, raised, out=raised)
            self._state.put(f"surprise_peak_{det.name}", rows, np.where(was_active, peak, raised))
        seen_all[rows] = ts
        return _fuse(columns, strict_first=False)

    def _hysteresis(
        self, rows: IntArray, ts: FloatArray, confidence: FloatArray, was_active: BoolArray
    ) -> tuple[BoolArray, BoolArray, FloatArray]:
        """One wave (distinct rows, ``was_active`` their state): alerts, new active/since."""
        active_all = self._state["active"]
        since_all = self._state["since"]
        last_all = self._state["last_alert"]
        last = last_all[rows]
        hot = confidence >= self.fire_threshold
        rising = hot & ~was_active
        waited = ts - last
        realert = hot & was_active & (waited >= self.realert_s)
        alert = rising | realert
        if self.holdoff_s > 0.0:
            alert &= ~(waited < self.holdoff_s)  # NaN (never alerted) compares False
        active = hot | (was_active & (confidence >= self.clear_threshold))
        since = np.where(rising, ts, np.where(active, since_all[rows], np.nan))
        active_all[rows] = active
        since_all[rows] = since
        last_all[rows] = np.where(alert, ts, last)
        return alert, active, since


def _fuse(columns: Sequence[FloatArray], strict_first: bool) -> tuple[FloatArray, IntArray]:
    """The highest of several score columns per point, and the first column that holds it.

    NaN is where the two callers differ: ``strict_first`` keeps the first column unless a
    later one is strictly higher (a NaN never wins but a NaN first column stays), otherwise
    NaN counts as the highest, as in ``argmax``. Without NaN both are the plain maximum, found
    branch-free: a boolean mask per column costs a mispredicted branch per point.

    >>> best, top = _fuse([np.array([0.1, 0.5, 0.2]), np.array([0.3, 0.5, 0.0])], True)
    >>> best.tolist(), top.tolist()
    ([0.3, 0.5, 0.2], [1, 0, 0])
    >>> nan = np.array([np.nan, 0.4])
    >>> [_fuse([np.array([0.2, 0.1]), nan], s)[1].tolist() for s in (True, False)]
    [[0, 1], [1, 1]]
    """
    if any(np.isnan(c).any() for c in columns):
        matrix = np.column_stack(columns)
        if not strict_first:
            top = matrix.argmax(axis=1)
            return matrix[np.arange(len(matrix)), top], top
        best = matrix[:, 0].copy()
        top = np.zeros(len(matrix), dtype=np.intp)
        for j in range(1, matrix.shape[1]):
            better = matrix[:, j] > best
            best[better] = matrix[:, j][better]
            top[better] = j
        return best, top
    # Scores are >= +0.0 (never -0.0), so the maximum is bit for bit the first top column's.
    best = columns[0].copy()
    for c in columns[1:]:
        np.maximum(best, c, out=best)
    # the first column holding the maximum: how many columns before it fall short
    short = columns[0] != best
    top = short.astype(np.intp)
    for c in columns[1:-1]:
        short &= c != best
        top += short
    return best, top


def _pick(
    top: IntArray, *per_detector: Sequence[FloatArray]
) -> tuple[FloatArray, ...]:
    """For each set of per-detector columns, the value of the ``top`` column at every point.

    One gather from the stacked columns instead of a masked copy per detector.

    >>> _pick(np.array([1, 0]), [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    (array([3., 2.]),)
    """
    flat = top * len(top)
    flat += np.arange(len(top))
    return tuple(np.stack(columns).take(flat) for columns in per_detector)


def _union(parts: Sequence[IntArray]) -> IntArray:
    """Ascending distinct rows of several ascending distinct row arrays.

    A sort and a neighbour test rather than ``np.unique``, whose hashing is ten times slower
    on a million rows; one part is already the answer.

    >>> _union([np.array([1, 4]), np.array([0, 4, 9])]).tolist()
    [0, 1, 4, 9]
    """
    if not parts:
        return np.empty(0, dtype=np.intp)
    if len(parts) == 1:
        return parts[0]
    rows = np.sort(np.concatenate(parts))
    keep = np.ones(len(rows), dtype=np.bool_)
    keep[1:] = rows[1:] != rows[:-1]
    return rows[keep]


def _namespaced(
    owner: str,
    load: Callable[[Mapping[str, npt.NDArray[Any]]], None],
    part: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Run one part's load, re-raising its StateError under the namespaced key."""
    try:
        load(part)
    except StateError as err:
        raise StateError(f"{owner}.{err.key}", err.problem) from err


def default_ensemble(
    *,
    alpha: float = 0.05,
    warmup: int = 30,
    z_threshold: float = 4.0,
    min_std: float = 1e-6,
    rel_min_std: float = 1e-3,
    clip_z: float = 3.0,
    fire_threshold: float = 0.5,
    clear_threshold: float = 0.3,
    realert_s: float = 300.0,
) -> Ensemble:
    """The standard pair: EWMA z-score (adaptive) then static bounds (configured limits).

    EWMA comes first so that, when every score is 0, the reported baseline is its mean.

    >>> default_ensemble(realert_s=60.0).detector_names
    ('ewma', 'static')
    """
    return Ensemble(
        [
            EwmaZScore(
                alpha=alpha,
                warmup=warmup,
                z_threshold=z_threshold,
                min_std=min_std,
                rel_min_std=rel_min_std,
                clip_z=clip_z,
            ),
            StaticBounds(),
        ],
        fire_threshold=fire_threshold,
        clear_threshold=clear_threshold,
        realert_s=realert_s,
    )
