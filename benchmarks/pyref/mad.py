"""Reference of :class:`detectors.mad.RobustMad`: rolling median and MAD, one point at a time.

The ring is float32 as in the detector, and so are the absolute deviations the MAD is the
median of (the detector subtracts the median rounded to float32, in float32), so both are
kept in ``array('f')``. The mean-absolute-deviation fallback sums float32 in numpy's order.
"""

from __future__ import annotations

import math
from array import array

from benchmarks.pyref.common import F32_MAX, LN2, NAN, Scored, f32, pairwise_sum_f32
from detectors.mad import RobustMad

# The detector's constants: 1.4826 MAD and 1.2533 mean |deviation| estimate a gaussian std.
_MAD_TO_STD = 1.4826
_MEAN_AD_TO_STD = 1.2533


class PyRobustMad:
    """:class:`detectors.mad.RobustMad`, one point at a time; a float32 ring per series.

    >>> ref = PyRobustMad(window=5, warmup=3, z_threshold=6.0, min_scale=1e-6,
    ...                   rel_min_scale=1e-3, n_series=1)
    >>> [round(ref.update(0, float(t), v)[0], 3) for t, v in enumerate([10.0, 11.0, 9.0, 30.0])]
    [0.0, 0.0, 0.0, 0.97]
    >>> ref.update(0, 4.0, 10.5)  # against the median of 10, 11, 9, 30: the glitch is outvoted
    (0.0, 10.5, 0.0)
    """

    name = "mad"

    def __init__(self, *, window: int, warmup: int, z_threshold: float, min_scale: float,
                 rel_min_scale: float, n_series: int) -> None:
        self.window = window
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_scale = min_scale
        self.rel_min_scale = rel_min_scale
        self.ring = [array("f", [NAN] * window) for _ in range(n_series)]
        self.count = [0] * n_series

    @classmethod
    def like(cls, det: RobustMad) -> PyRobustMad:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(window=det.window, warmup=det.warmup, z_threshold=det.z_threshold,
                  min_scale=det.min_scale, rel_min_scale=det.rel_min_scale, n_series=0)
        state = det.export_state()
        ref.ring = [array("f", row) for row in state["ring"].tolist()]
        ref.count = state["count"].tolist()
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        count = self.count[row]
        ring = self.ring[row]
        window = self.window
        slot = count % window
        self.count[row] = count + 1
        if count == 0:
            ring[slot] = min(max(value, -F32_MAX), F32_MAX)
            return 0.0, NAN, NAN
        filled = min(count, window)  # the used slots are the first ``filled``
        ordered = sorted(ring[:filled])
        half = filled // 2
        median = (ordered[(filled - 1) // 2] + ordered[half]) * 0.5
        m32 = f32(median)
        # float32 differences, as the detector subtracts in float32
        absdev = array("f", [abs(v - m32) for v in ring[:filled]])
        ordered_dev = sorted(absdev)
        mad = (ordered_dev[(filled - 1) // 2] + ordered_dev[half]) * 0.5
        if mad == 0.0:
            # numpy sums the whole ring row, the unused (NaN) slots as 0: the same grouping
            padded = absdev.tolist() + [0.0] * (window - filled)
            scale = pairwise_sum_f32(padded) / filled * _MEAN_AD_TO_STD
        else:
            scale = mad * _MAD_TO_STD
        floor = max(abs(median) * self.rel_min_scale, self.min_scale)
        scale = max(scale, floor)
        z = (value - median) / scale
        if count < self.warmup:
            score = 0.0
        else:
            ratio = z / self.z_threshold
            score = 1.0 - math.exp(ratio * ratio * -LN2)
        ring[slot] = min(max(value, -F32_MAX), F32_MAX)
        return score, median, z
