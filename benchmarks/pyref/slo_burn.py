"""Reference of :class:`detectors.slo_burn.SloBurnRate`: EW windows of an error ratio."""

from __future__ import annotations

import math

from benchmarks.pyref.common import LN2, NAN, Scored
from detectors.slo_burn import PAIRS, WINDOWS, SloBurnRate


class PySloBurnRate:
    """:class:`detectors.slo_burn.SloBurnRate`, one point at a time.

    >>> ref = PySloBurnRate(objective=0.9, scale=1.0 / 300.0, n_series=1)
    >>> out = [ref.update(0, float(t), 0.5) for t in range(0, 80, 4)]  # 5 times the budget
    >>> sorted({round(score, 3) for score, _, _ in out}), [round(x, 6) for x in out[-1][1:]]
    ([0.0, 0.08, 0.382, 1.0], [0.1, 5.0])
    >>> [t for t, (score, _, _) in zip(range(0, 80, 4), out) if score >= 0.5][0]  # 3d/6h warm
    72
    """

    name = "slo_burn"

    def __init__(self, *, objective: float, scale: float, n_series: int) -> None:
        self.budget = 1.0 - objective
        taus = {w: length * scale for w, length in WINDOWS.items()}
        self.taus = list(taus.values())
        index = {w: i for i, w in enumerate(taus)}
        self.shortest = index["5m"]  # the deviation is the 5-minute window's burn
        # (long window, short window, rate, short window's length) per pair
        self.pairs = [(index[lw], index[sw], rate, taus[sw]) for lw, sw, rate in PAIRS]
        self.first_ts = [NAN] * n_series
        self.last_ts = [NAN] * n_series
        self.avg = [[0.0] * len(taus) for _ in range(n_series)]

    @classmethod
    def like(cls, det: SloBurnRate) -> PySloBurnRate:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(objective=det.objective, scale=det.scale, n_series=0)
        state = det.export_state()
        ref.first_ts = state["first_ts"].tolist()
        ref.last_ts = state["last_ts"].tolist()
        ref.avg = [list(row) for row in zip(*(state[f"avg_{w}"].tolist() for w in WINDOWS),
                                            strict=True)]
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        last = self.last_ts[row]
        if math.isnan(last):  # a first point stands for no time
            first, gap, newest = ts, 0.0, ts
        else:
            first, gap, newest = self.first_ts[row], max(ts - last, 0.0), max(last, ts)
        ratio = min(max(value, 0.0), 1.0)
        span = newest - first
        avg = self.avg[row]
        budget = self.budget
        burn = []
        for i, tau in enumerate(self.taus):
            # until the series spans any time, the latest point is the whole history
            weight = 1.0 if span == 0.0 else max(-math.expm1(-gap / tau), gap / span)
            a = avg[i]
            a += weight * (ratio - a)
            avg[i] = a
            burn.append(a / budget)
        self.first_ts[row] = first
        self.last_ts[row] = newest
        score = 0.0
        for long_w, short_w, rate, short_tau in self.pairs:
            if span >= short_tau:
                m = min(burn[long_w], burn[short_w]) / rate
                score = max(score, 1.0 - math.exp(m * m * -LN2))
        return score, budget, burn[self.shortest]
