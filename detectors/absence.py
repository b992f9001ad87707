"""Absence: a series that stops reporting produces a finding, at a clock tick.

No point arrives from a silent series, so points only teach the detector each series' cadence
(an exponentially weighted estimate of the reporting interval) and set a *deadline*: the last
point's ts plus ``max(k * interval, min_silence_s)``. A clock tick (:meth:`Absence.tick`)
reports every series whose deadline has passed, once per silence: the deadline is then
disarmed (set to +inf), and re-armed by the next point that moves the series forward in time.
Keeping the deadline in the state makes a tick over a million series one comparison.

Points themselves always score 0 here: a late point is the end of a silence, not an anomaly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np

from detectors.base import (
    Detector,
    DetectorOutput,
    FloatArray,
    IntArray,
    StateField,
    TickOutput,
    as_now,
)
from detectors.errors import InputError
from detectors.ewma import z_to_score
from detectors.params import fraction, non_negative

# ``gaps`` counts measured intervals only up to the warm-up, so one byte is enough.
_MAX_GAPS = int(np.iinfo(np.uint8).max)


class Absence(Detector):
    """Reports, at a clock tick, series silent for longer than ``k`` expected intervals.

    ``baseline`` is the expected interval in seconds; ``deviation`` the silence (at a tick) or
    the gap before the point (at a point) in expected intervals. A tick's score is 0.5 when
    the silence is exactly the threshold, rising towards 1 as it grows past it (0.94 at
    twice), so a tick that comes late, or a restart that finds an old silence, is surer.

    >>> det = Absence(min_silence_s=0.0)
    >>> det.resize(2)
    >>> ts = np.arange(0.0, 100.0, 10.0)  # both series report every 10 s up to ts 90
    >>> _ = det.update(np.repeat([0, 1], 10), np.tile(ts, 2), np.ones(20))
    >>> _ = det.update([1], [100.0], [1.0])  # series 1 once more, series 0 goes quiet
    >>> det.tick(139.0).rows.tolist()  # 49 s of silence: less than 5 intervals
    []
    >>> out = det.tick(145.0)
    >>> out.rows.tolist(), round(float(out.score[0]), 3), out.baseline.tolist(), out.deviation
    ([0], 0.568, [10.0], array([5.5]))
    >>> det.tick(160.0).rows.tolist()  # series 0 was reported; series 1 is now due
    [1]
    >>> _ = det.update([0], [170.0], [1.0])  # series 0 is back: re-armed
    >>> det.tick(300.0).rows.tolist()
    [0]
    """

    name: ClassVar[str] = "absence"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        # float64: epoch seconds in float32 would be 128 s apart
        "last_seen": StateField(np.float64, np.nan),
        "deadline": StateField(np.float64, np.inf),
        # float32 is ample for an interval (a relative error of 6e-8)
        "interval": StateField(np.float32, 0.0),
        "gaps": StateField(np.uint8, 0),
    }

    def __init__(
        self,
        k: float = 5.0,
        min_silence_s: float = 30.0,
        warmup: int = 3,
        beta: float = 0.1,
    ) -> None:
        """Configure the detector.

        ``k`` intervals of silence make an absence (5: a late point, a dropped message and a
        producer retry stretch a gap to 2-3 intervals, which must not page; 5 still catches a
        1-minute series within 5 minutes). ``min_silence_s`` is a floor in seconds (30: a
        consumer-group rebalance or a broker failover stalls delivery for tens of seconds,
        and without a floor a fleet of 1-second series would all go "absent" in 5 s of such
        a stall). ``warmup`` intervals are measured before a series is watched (3: the first
        gap of a new series is often a start-up burst or a backfill; three make a cadence).
        ``beta`` weighs the newest interval (0.1: one late point moves the estimate by a
        tenth of its lateness, a producer that changes cadence is followed in ~20 points).
        """
        if not k > 1.0:
            raise InputError(f"k must be > 1 (one interval is the ordinary gap), got {k}")
        non_negative("min_silence_s", min_silence_s)
        if not 1 <= warmup <= _MAX_GAPS:
            raise InputError(f"warmup must be in [1, {_MAX_GAPS}], got {warmup}")
        fraction("beta", beta)
        super().__init__()
        self.k = k
        self.min_silence_s = min_silence_s
        self.warmup = warmup
        self.beta = beta

    @classmethod
    def example(cls, n_series: int) -> Self:
        """Watched from the first gap, no floor: short generated inputs set deadlines."""
        det = cls(k=2.0, min_silence_s=0.0, warmup=1)
        det.resize(n_series)
        return det

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        last_all, deadline_all = self._state["last_seen"], self._state["deadline"]
        interval_all, gaps_all = self._state["interval"], self._state["gaps"]
        last = last_all[rows]
        interval = interval_all[rows].astype(np.float64)
        gaps = gaps_all[rows].astype(np.int64)
        gap = ts - last  # NaN for a series never seen
        known = gaps > 0
        baseline = np.where(known, interval, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            deviation = gap / baseline
        # Only a point later than the last one ends a silence and measures an interval; a
        # duplicate or a straggler from the past says nothing about the cadence.
        first = np.isnan(last)
        measured = gap > 0.0
        advance = first | measured
        # A gap that was itself a silence is clipped to the threshold: an outage must not
        # teach the cadence, but a producer that really slowed down is still followed.
        cap = np.where(gaps >= self.warmup, self.k * interval, np.inf)
        step = np.minimum(gap, cap) - interval
        weight = np.maximum(1.0 / (gaps + 1.0), self.beta)
        interval = np.where(measured, interval + weight * step, interval)
        gaps = np.where(measured, np.minimum(gaps + 1, _MAX_GAPS), gaps).astype(np.uint8)
        last = np.where(advance, ts, last)
        threshold = np.maximum(self.k * interval, self.min_silence_s)
        armed = np.where(gaps >= self.warmup, last + threshold, np.inf)
        last_all[rows] = last
        interval_all[rows] = interval
        gaps_all[rows] = gaps
        deadline_all[rows] = np.where(advance, armed, deadline_all[rows])
        return DetectorOutput(np.zeros(len(rows)), baseline, deviation)

    def tick(self, now: float) -> TickOutput:
        """Report every series whose deadline is before ``now``, then disarm it.

        ``now`` must be in the points' time base. If the runtime's consumer can lag behind
        the producers by more than ``min_silence_s``, pass the partition's event-time
        watermark rather than the wall clock, or every series looks silent during the lag.
        """
        at = as_now(now)
        deadline_all = self._state["deadline"]
        due = np.flatnonzero(deadline_all < at)
        last = self._state["last_seen"][due]
        interval = self._state["interval"][due].astype(np.float64)
        silence = at - last
        threshold = deadline_all[due] - last
        with np.errstate(divide="ignore", invalid="ignore"):
            score = z_to_score(silence / threshold, 1.0)
            deviation = silence / interval
        deadline_all[due] = np.inf
        return TickOutput(due, score, interval, deviation)
