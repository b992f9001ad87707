"""Reference of :class:`detectors.level_shift.LevelShift`: a two-sided CUSUM, one point at a time.

The sums and the runs' residual sums are float32 in the detector's state (read as float64,
computed in float64, stored back rounded), so they live in ``array('f')`` here.
"""

from __future__ import annotations

import math

from benchmarks.pyref.common import LN2, NAN, Scored, f32_array
from detectors.level_shift import LevelShift


class PyLevelShift:
    """:class:`detectors.level_shift.LevelShift`, one point at a time.

    >>> ref = PyLevelShift(alpha=0.3, warmup=3, k=1.0, h=2.0, clip_z=3.0, min_std=1e-6,
    ...                    rel_min_std=1e-3, n_series=1)
    >>> points = [10.0, 11.0, 10.0, 10.5, 20.0, 20.0]
    >>> out = [ref.update(0, float(t), v) for t, v in enumerate(points)]
    >>> [round(score, 2) for score, _, _ in out]  # one shift, one detection, then re-based
    [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    >>> round(out[4][2], 2), round(ref.mean[0], 2)  # the shift in stds; the new level
    (23.94, 20.0)
    """

    name = "level_shift"

    def __init__(self, *, alpha: float, warmup: int, k: float, h: float, clip_z: float,
                 min_std: float, rel_min_std: float, n_series: int) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.k = k
        self.h = h
        self.clip_z = clip_z
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        self.tuned_shift = 2.0 * k if k > 0.0 else clip_z  # as the detector: 2k, or clip_z
        self.mean = [0.0] * n_series
        self.var = [0.0] * n_series
        self.count = [0] * n_series
        self.up = f32_array([0.0] * n_series)
        self.down = f32_array([0.0] * n_series)
        self.up_n = [0] * n_series
        self.down_n = [0] * n_series
        self.up_sum = f32_array([0.0] * n_series)
        self.down_sum = f32_array([0.0] * n_series)

    @classmethod
    def like(cls, det: LevelShift) -> PyLevelShift:
        """The same parameters and a copy of ``det``'s current state."""
        ref = cls(alpha=det.alpha, warmup=det.warmup, k=det.k, h=det.h, clip_z=det.clip_z,
                  min_std=det.min_std, rel_min_std=det.rel_min_std, n_series=0)
        state = det.export_state()
        ref.mean = state["mean"].tolist()
        ref.var = state["var"].tolist()
        ref.count = state["count"].tolist()
        ref.up = f32_array(state["up"].tolist())
        ref.down = f32_array(state["down"].tolist())
        ref.up_n = state["up_n"].tolist()
        ref.down_n = state["down_n"].tolist()
        ref.up_sum = f32_array(state["up_sum"].tolist())
        ref.down_sum = f32_array(state["down_sum"].tolist())
        return ref

    def update(self, row: int, ts: float, value: float) -> Scored:
        mean = self.mean[row]
        var = self.var[row]
        count = self.count[row]
        warm = count >= max(self.warmup, 1)
        floor = max(abs(mean) * self.rel_min_std, self.min_std)
        std = max(math.sqrt(var), floor)
        dev = value - mean
        clip_z = self.clip_z
        r = dev / std if warm else 0.0
        clipped = min(max(r, -clip_z), clip_z)
        k = self.k
        up = max(self.up[row] + clipped - k, 0.0)
        down = max(self.down[row] - clipped - k, 0.0)
        if up > 0.0:
            up_n = self.up_n[row] + 1
            up_sum = self.up_sum[row] + r
        else:
            up_n, up_sum = 0, 0.0
        if down > 0.0:
            down_n = self.down_n[row] + 1
            down_sum = self.down_sum[row] + r
        else:
            down_n, down_sum = 0, 0.0
        if up >= down:
            stat, shift = up, up_sum / max(up_n, 1)
        else:
            stat, shift = down, down_sum / max(down_n, 1)
        h = self.h
        fired = warm and stat >= h
        if not warm:
            score = 0.0
        else:
            evidence = max(stat, h * abs(shift) / self.tuned_shift) if fired else stat
            ratio = evidence / h
            score = 1.0 - math.exp(ratio * ratio * -LN2)
        if fired:
            # re-based on the new level with the spread from before the run; sums restart
            self.mean[row] = mean + shift * std
            self.var[row] = var
            up = down = up_sum = down_sum = 0.0
            up_n = down_n = 0
        else:
            if warm:
                reach = std * clip_z
                dev = min(max(dev, -reach), reach)
            weight = max(1.0 / (count + 1.0), self.alpha)
            step = weight * dev
            self.mean[row] = mean + step
            self.var[row] = (1.0 - weight) * (var + dev * step)
        self.count[row] = count + 1
        self.up[row] = up
        self.down[row] = down
        self.up_n[row] = up_n
        self.down_n[row] = down_n
        self.up_sum[row] = up_sum
        self.down_sum[row] = down_sum
        return score, (NAN if count == 0 else mean), shift
