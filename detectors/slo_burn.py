"""SLO burn rate: multi-window, multi-burn-rate alerting on an error ratio (Google SRE workbook).

A ratio metric (errors / requests, in [0, 1]) is held against an objective, say 99.9%: the
error budget is 0.001, and the *burn rate* is the ratio divided by the budget (1 = spending
the budget exactly as fast as the SLO period allows). The workbook pages when both windows of
a pair burn faster than the pair's rate:

=========  ==========  =====  =================================================
long       short       rate   meaning over a 30-day SLO period
=========  ==========  =====  =================================================
1 h        5 min       14.4   2% of the budget gone in an hour (fast burn, page)
6 h        30 min      6      5% of the budget gone in six hours (page)
3 d        6 h         1      10% of the budget gone in three days (ticket)
=========  ==========  =====  =================================================

The long window says the burn is significant, the short one that it is still going on, so
the alert stops soon after recovery. ``scale`` multiplies every window (an SLO period other
than 30 days, or tests that cannot wait an hour). The windows are exponentially weighted
averages whose time constant is the window length, weighted by the real ts gaps
(``1 - exp(-gap / window)``), so irregular cadences average correctly.

Unlike a z-score, the point is evidence here, not something to compare with a baseline: it
is folded into the windows first and the windows are judged after (still no look-ahead).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np

from detectors.base import Detector, DetectorOutput, FloatArray, IntArray, StateField
from detectors.errors import InputError
from detectors.ewma import z_to_score

# window name -> length in seconds at scale 1
WINDOWS: Mapping[str, float] = {
    "5m": 300.0,
    "30m": 1800.0,
    "1h": 3600.0,
    "6h": 21600.0,
    "3d": 259200.0,
}
# (long, short, burn rate): the workbook's recommended pairs for a 30-day SLO period
PAIRS: tuple[tuple[str, str, float], ...] = (
    ("1h", "5m", 14.4),
    ("6h", "30m", 6.0),
    ("3d", "6h", 1.0),
)


class SloBurnRate(Detector):
    """Scores a ratio metric by how far its window pairs burn past their pair's rate.

    Per pair the *sustained* burn is the smaller of its two windows' burn rates; the pair
    fires when that reaches its rate. The score is ``1 - 0.5 ** (m ** 2)`` of the largest
    multiple ``m = sustained / rate`` over the warm pairs: 0.5 where a pair fires, 0.94 at
    twice its rate. ``baseline`` is the error budget, ``deviation`` the current burn rate (of
    the shortest window, 5 min at scale 1). A pair is warm once the series spans its short
    window: then "still going on" is a full window, and the long one, over what data there
    is, is what a rate over a partial range gives.

    >>> det = SloBurnRate(objective=0.999)
    >>> det.resize(1)
    >>> ts = np.arange(0.0, 9 * 3600.0, 10.0)  # 10-second points for nine hours
    >>> start = 8 * 3600.0  # half the budget for 8 h, then 100 times it
    >>> out = det.update(np.zeros(len(ts), np.intp), ts, np.where(ts < start, 0.0005, 0.1))
    >>> int((out.score[ts < start] >= 0.5).sum())
    0
    >>> fired = ts[out.score >= 0.5]
    >>> float(fired[0] - start)  # the 3d/6h pair: 8 h at half the budget are used up
    140.0
    >>> last = out.score[-1], out.deviation[-1], out.baseline[-1]
    >>> [round(float(x), 4) for x in last]  # burning 100 times a budget of 0.001
    [1.0, 99.9994, 0.001]
    """

    name: ClassVar[str] = "slo_burn"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        "first_ts": StateField(np.float64, np.nan),
        "last_ts": StateField(np.float64, np.nan),
        # float64: at a 1 s cadence the 3-day window moves by 4e-6 of the difference per
        # point, below float32's resolution relative to the average; it would never move.
        **{f"avg_{w}": StateField(np.float64, 0.0) for w in WINDOWS},
    }

    def __init__(self, objective: float = 0.999, scale: float = 1.0) -> None:
        """``objective`` is the SLO's success ratio; ``scale`` multiplies every window."""
        if not 0.0 < objective < 1.0:
            raise InputError(f"objective must be in (0, 1), got {objective}")
        if not (scale > 0.0 and np.isfinite(scale)):
            raise InputError(f"scale must be finite and > 0, got {scale}")
        super().__init__()
        self.objective = objective
        self.scale = scale
        self.budget = 1.0 - objective
        self._tau = {w: length * scale for w, length in WINDOWS.items()}

    @classmethod
    def example(cls, n_series: int) -> Self:
        """Windows of 1 s to 864 s, and a 10% budget, so generated ratios burn fast."""
        det = cls(objective=0.9, scale=1.0 / 300.0)
        det.resize(n_series)
        return det

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        first_all, last_all = self._state["first_ts"], self._state["last_ts"]
        last = last_all[rows]
        first = np.where(np.isnan(last), ts, first_all[rows])
        # A ratio outside [0, 1] is a producer bug; clipped, one bad point cannot push a
        # 3-day window beyond what any real ratio could.
        ratio = np.clip(values, 0.0, 1.0)
        # The point stands for the time since the previous one: 0 for a duplicate, a
        # straggler from the past or a series' first point.
        gap = np.fmax(ts - last, 0.0)
        newest = np.fmax(last, ts)
        span = newest - first
        # Until the series spans any time at all, the latest point is the whole history.
        restart = span == 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            running = gap / span
        burn: dict[str, FloatArray] = {}
        for w, tau in self._tau.items():
            avg_all = self._state[f"avg_{w}"]
            # gap/span is the exact time-weighted mean of the span seen so far; it gives way
            # to the exponential weight once the span is longer than the window.
            weight = np.where(restart, 1.0, np.maximum(-np.expm1(-gap / tau), running))
            avg = avg_all[rows]
            avg += weight * (ratio - avg)
            avg_all[rows] = avg
            burn[w] = avg / self.budget
        first_all[rows] = first
        last_all[rows] = newest
        sustained = np.stack([np.minimum(burn[lw], burn[sw]) for lw, sw, _ in PAIRS])
        rates = np.array([rate for _, _, rate in PAIRS])[:, None]
        warm = np.stack([span >= self._tau[sw] for _, sw, _ in PAIRS])
        scores = np.where(warm, z_to_score(sustained / rates, 1.0), 0.0)
        return DetectorOutput(scores.max(axis=0), np.full(len(rows), self.budget), burn["5m"])
