"""Reference of :class:`detectors.absence.Absence` at points: the cadence and the deadline.

Points score 0 here as in the detector; what a point does is teach the interval and move
the deadline a tick compares with. The tick itself visits every series, not a point, so it
has no per-point reference; the equivalence test compares the deadlines the points leave.
"""

from __future__ import annotations

import math

from benchmarks.pyref.common import INF, NAN, Scored, f32_array, fdiv
from detectors.absence import Absence

_MAX_GAPS = 255  # the detector's gap counter is a uint8


class PyAbsence:
    """:class:`detectors.absence.Absence` at points, one point at a time.

    >>> ref = PyAbsence(k=5.0, min_silence_s=0.0, warmup=3, beta=0.1, n_series=1)
    >>> [ref.update(0, t, 1.0)[1] for t in (0.0, 10.0, 20.0, 30.0, 50.0)]
    [nan, nan, 10.0, 10.0, 10.0]
    >>> ref.interval[0], ref.deadline[0]  # 10 s, 20 s and 10 s then 20 s, at weight 1/4
    (12.5, 112.5)
    """

    name = "absence"

    def __init__(self, *, k: float, min_silence_s: float, warmup: int, beta: float,
                 n_series: int) -> None:
        self.k = k
        self.min_silence_s = min_silence_s
        self.warmup = warmup
        self.beta = beta
        self.last_seen = [NAN] * n_series
        self.deadline = [INF] * n_series
        self.interval = f32_array([0.0] * n_series)
        self.gaps = [0] * n_series

    @classmethod
    def like(cls, det: Absence) -> PyAbsence:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(k=det.k, min_silence_s=det.min_silence_s, warmup=det.warmup, beta=det.beta,
                  n_series=0)
        state = det.export_state()
        ref.last_seen = state["last_seen"].tolist()
        ref.deadline = state["deadline"].tolist()
        ref.interval = f32_array(state["interval"].tolist())
        ref.gaps = state["gaps"].tolist()
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        last = self.last_seen[row]
        interval = self.interval[row]
        gaps = self.gaps[row]
        gap = ts - last  # NaN for a series never seen
        baseline = interval if gaps > 0 else NAN
        deviation = fdiv(gap, baseline)
        watched = gaps >= self.warmup
        if gap > 0.0:  # only a later point measures an interval (NaN compares False)
            step = min(gap, self.k * interval if watched else INF) - interval
            # the deadline is set from this float64 interval, the state keeps it as float32
            interval = interval + max(1.0 / (gaps + 1.0), self.beta) * step
            gaps = min(gaps + 1, _MAX_GAPS)
            self.interval[row] = interval
            self.gaps[row] = gaps
        elif not math.isnan(last):
            return 0.0, baseline, deviation  # a duplicate or a straggler: nothing moves
        self.last_seen[row] = ts
        if gaps >= self.warmup:
            self.deadline[row] = ts + max(self.k * interval, self.min_silence_s)
        else:
            self.deadline[row] = INF
        return 0.0, baseline, deviation
