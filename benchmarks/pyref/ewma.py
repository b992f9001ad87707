"""Reference of :class:`detectors.ewma.EwmaZScore`: EW mean and variance, one point at a time."""

from __future__ import annotations

import math

from benchmarks.pyref.common import LN2, NAN, Scored
from detectors.ewma import EwmaZScore


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
        z = NAN if cold else dev / std
        if not_warm:
            score = 0.0
        else:
            ratio = z / self.z_threshold
            score = 1.0 - math.exp(ratio * ratio * -LN2)
        baseline = NAN if cold else mean
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
