"""Reference of :class:`detectors.seasonal.SeasonalBaseline`: a profile slot per time of period.

Each slot's mean and variance are float32 in the detector (read as float64, stored back
rounded), so the profile is one ``array('f')`` per statistic, ``bins`` slots per series.
"""

from __future__ import annotations

import math

from benchmarks.pyref.common import F32_MAX, LN2, NAN, Scored, f32_array
from detectors.seasonal import SeasonalBaseline

_MAX_COUNT = 65535  # the slot counts are uint16 in the detector


class PySeasonalBaseline:
    """:class:`detectors.seasonal.SeasonalBaseline`, one point at a time.

    >>> ref = PySeasonalBaseline(period_s=8.0, bins=4, memory_periods=1.0, warmup=2,
    ...                          z_threshold=4.0, min_std=1e-6, rel_min_std=1e-3,
    ...                          clip_z=3.0, n_series=1)
    >>> points = ((0.0, 5.0), (8.0, 6.0), (16.0, 5.5), (2.0, 1.0), (24.0, 50.0))
    >>> out = [ref.update(0, t, v) for t, v in points]  # slot 0 at ts 0, 8, 16, 24; slot 1 at 2
    >>> [round(score, 3) for score, _, _ in out], [round(base, 2) for _, base, _ in out]
    ([0.0, 0.0, 0.003, 0.0, 1.0], [nan, 5.0, 5.63, nan, 5.55])
    """

    name = "seasonal"

    def __init__(self, *, period_s: float, bins: int, memory_periods: float, warmup: int,
                 z_threshold: float, min_std: float, rel_min_std: float, clip_z: float,
                 n_series: int) -> None:
        self.period_s = period_s
        self.bins = bins
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        self.clip_z = clip_z
        self.width = period_s / bins
        self.tau = memory_periods * self.width
        self.last_ts = [NAN] * n_series
        # slot s of series row at row * bins + s
        self.mean = f32_array([0.0] * (n_series * bins))
        self.var = f32_array([0.0] * (n_series * bins))
        self.count = [0] * (n_series * bins)

    @classmethod
    def like(cls, det: SeasonalBaseline) -> PySeasonalBaseline:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(period_s=det.period_s, bins=det.bins, memory_periods=det.memory_periods,
                  warmup=det.warmup, z_threshold=det.z_threshold, min_std=det.min_std,
                  rel_min_std=det.rel_min_std, clip_z=det.clip_z, n_series=0)
        state = det.export_state()
        slots = range(det.bins)
        ref.last_ts = state["last_ts"].tolist()
        by_row = zip(*(state[f"mean_{s}"].tolist() for s in slots), strict=True)
        ref.mean = f32_array([m for row in by_row for m in row])
        by_row = zip(*(state[f"var_{s}"].tolist() for s in slots), strict=True)
        ref.var = f32_array([v for row in by_row for v in row])
        ref.count = [c for row in zip(*(state[f"count_{s}"].tolist() for s in slots),
                                      strict=True) for c in row]
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        bins = self.bins
        # Python's % of floats is numpy's mod (the divisor's sign); int() truncates as astype
        slot = min(int(ts % self.period_s * (bins / self.period_s)), bins - 1)
        at = row * bins + slot
        mean = self.mean[at]
        var = self.var[at]
        count = self.count[at]
        last = self.last_ts[row]
        since = ts - last  # NaN for a first point: it stands for no time
        gap = 0.0 if math.isnan(since) else min(max(since, 0.0), self.width)
        floor = max(abs(mean) * self.rel_min_std, self.min_std)
        std = max(math.sqrt(var), floor)
        dev = value - mean
        z = dev / std
        if count < max(self.warmup, 1):
            score = 0.0
            diff = dev
        else:
            ratio = z / self.z_threshold
            score = 1.0 - math.exp(ratio * ratio * -LN2)
            reach = std * self.clip_z
            diff = min(max(dev, -reach), reach)
        weight = max(1.0 / (count + 1.0), -math.expm1(-gap / self.tau))
        step = weight * diff
        self.mean[at] = min(max(mean + step, -F32_MAX), F32_MAX)
        self.var[at] = min((1.0 - weight) * (var + diff * step), F32_MAX)
        self.count[at] = min(count + 1, _MAX_COUNT)
        self.last_ts[row] = ts if math.isnan(last) else max(last, ts)
        if count == 0:
            return score, NAN, NAN
        return score, mean, z
