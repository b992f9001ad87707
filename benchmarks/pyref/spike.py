"""Reference of :class:`detectors.spike.Spike`: a jump against the EW mean absolute jump."""

from __future__ import annotations

import math

from benchmarks.pyref.common import LN2, NAN, Scored
from detectors.spike import Spike

_MEAN_AD_TO_STD = 1.2533  # the detector's: E|d| of a gaussian jump = std * sqrt(2 / pi)


class PySpike:
    """:class:`detectors.spike.Spike`, one point at a time.

    >>> ref = PySpike(alpha=0.3, warmup=3, z_threshold=8.0, min_scale=1e-6,
    ...               rel_min_scale=1e-3, clip_z=3.0, n_series=1)
    >>> out = [ref.update(0, float(t), v) for t, v in enumerate([10.0, 11.0, 10.0, 11.0, 0.0])]
    >>> [round(score, 3) for score, _, _ in out], [baseline for _, baseline, _ in out]
    ([0.0, 0.0, 0.0, 0.007, 0.566], [nan, 10.0, 11.0, 10.0, 11.0])
    """

    name = "spike"

    def __init__(self, *, alpha: float, warmup: int, z_threshold: float, min_scale: float,
                 rel_min_scale: float, clip_z: float, n_series: int) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_scale = min_scale
        self.rel_min_scale = rel_min_scale
        self.clip_z = clip_z
        self.prev = [0.0] * n_series
        self.scale = [0.0] * n_series
        self.count = [0] * n_series

    @classmethod
    def like(cls, det: Spike) -> PySpike:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(alpha=det.alpha, warmup=det.warmup, z_threshold=det.z_threshold,
                  min_scale=det.min_scale, rel_min_scale=det.rel_min_scale, clip_z=det.clip_z,
                  n_series=0)
        state = det.export_state()
        ref.prev = state["prev"].tolist()
        ref.scale = state["scale"].tolist()
        ref.count = state["count"].tolist()
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        prev = self.prev[row]
        mean_abs = self.scale[row]
        count = self.count[row]
        self.prev[row] = value
        self.count[row] = count + 1
        if count == 0:  # no jump yet: the scale stays as it is
            return 0.0, NAN, NAN
        floor = max(min(abs(prev), abs(value)) * self.rel_min_scale, self.min_scale)
        scale = max(mean_abs * _MEAN_AD_TO_STD, floor)
        jump = value - prev
        z = jump / scale
        size = abs(jump)
        if count < max(self.warmup, 2):
            score = 0.0
        else:
            ratio = z / self.z_threshold
            score = 1.0 - math.exp(ratio * ratio * -LN2)
            size = min(size, scale * self.clip_z)
        weight = max(1.0 / count, self.alpha)
        self.scale[row] = mean_abs + weight * (size - mean_abs)
        return score, prev, z
