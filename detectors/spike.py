"""Spike / rate of change: how big a point's jump from the previous one is, in the jumps' own scale.

Per series the detector keeps the previous value, an exponentially weighted mean of the
absolute first difference (the typical jump) and a point count. A point's jump is scored
against the typical jump *before* it, then folded in. Slow movements (a daily traffic curve,
a drift) have small differences, so only a sudden change up or down stands out, including a
drop to zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np

from detectors.base import Detector, DetectorOutput, FloatArray, IntArray, StateField
from detectors.ewma import z_to_score
from detectors.params import fraction, non_negative, positive

# For gaussian jumps E|d| = std * sqrt(2 / pi): this turns the mean absolute jump into a
# standard deviation, so the threshold reads as a z-score.
_MEAN_AD_TO_STD = 1.2533


class Spike(Detector):
    """Scores the jump ``x - previous`` against the EW mean absolute jump of its series.

    ``baseline`` is the previous value (what "no change" expects; NaN for a first point) and
    ``deviation`` the signed jump in scale units (``jump / (1.2533 * mean |jump|)``). The
    score stays 0 until a series has ``warmup`` points.

    >>> rng = np.random.default_rng(7)
    >>> det = Spike(warmup=30)
    >>> det.resize(1)
    >>> calm = det.update(np.zeros(60, np.intp), np.arange(60.0), 100 + rng.normal(0, 1, 60))
    >>> int((calm.score >= 0.5).sum())
    0
    >>> drop = det.update([0], [60.0], [0.0])
    >>> round(float(drop.score[0]), 3), float(drop.deviation[0]) < -50
    (1.0, True)
    """

    name: ClassVar[str] = "spike"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        "prev": StateField(np.float64, 0.0),
        "scale": StateField(np.float64, 0.0),
        "count": StateField(np.int64, 0),
    }

    def __init__(
        self,
        alpha: float = 0.01,
        warmup: int = 30,
        z_threshold: float = 8.0,
        min_scale: float = 1e-6,
        rel_min_scale: float = 1e-3,
        clip_z: float = 3.0,
    ) -> None:
        """Configure the detector.

        ``alpha`` weighs the newest jump in the typical jump (0.01: ~100 jumps of memory, so
        the scale is steady through a burst of lively jumps; the level detectors adapt
        faster). ``warmup`` points are scored 0 (30: 29 jumps, enough for a usable scale).
        ``z_threshold`` is the jump, in scale units, that scores 0.5 (8: jumps of real
        telemetry are heavy-tailed, both edges of one glitch are jumps, and the level
        detectors already cover moderate deviations; on the NAB dev files 8 hits 46 of 58
        windows with a quarter fewer false detections than 6). ``min_scale`` and
        ``rel_min_scale`` floor the scale (see ``_update_wave``); ``clip_z`` winsorises the
        update of a warm series.
        """
        fraction("alpha", alpha)
        non_negative("warmup", warmup)
        positive("z_threshold", z_threshold)
        positive("min_scale", min_scale)
        non_negative("rel_min_scale", rel_min_scale)
        positive("clip_z", clip_z)
        super().__init__()
        self.alpha = alpha
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_scale = min_scale
        self.rel_min_scale = rel_min_scale
        self.clip_z = clip_z

    @classmethod
    def example(cls, n_series: int) -> Self:
        """A short warm-up so the contract test's few points per series reach warm scoring."""
        det = cls(alpha=0.3, warmup=3)
        det.resize(n_series)
        return det

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        prev_all, scale_all = self._state["prev"], self._state["scale"]
        count_all = self._state["count"]
        prev = prev_all[rows]
        mean_abs = scale_all[rows]
        count = count_all[rows]
        cold = count == 0
        not_warm = count < max(self.warmup, 2)
        # The floors: a constant gauge has no jumps at all, and its first harmless wiggle
        # would be an infinite z. The relative floor ties the smallest meaningful jump to the
        # level (0.1% of it), the absolute one covers series sitting at 0. The level is the
        # nearer end of the jump, so the far end of a glitch cannot raise the floor (and
        # with it the winsorising reach) to its own size.
        floor = np.minimum(np.abs(prev), np.abs(values))
        floor *= self.rel_min_scale
        np.maximum(floor, self.min_scale, out=floor)
        scale = mean_abs * _MEAN_AD_TO_STD
        np.maximum(scale, floor, out=scale)
        jump = values - prev
        with np.errstate(over="ignore"):
            z = jump / scale
        z[cold] = np.nan
        score = z_to_score(z, self.z_threshold)
        score[not_warm] = 0.0
        baseline = np.where(cold, np.nan, prev)
        # Winsorise once warm: the two edges of one glitch would otherwise multiply the typical
        # jump and blind the series to the next one. A real change of regime (a noisier
        # series) still gets absorbed, as each clipped jump raises the scale a little.
        size = np.abs(jump)
        capped = np.multiply(scale, self.clip_z, out=scale)
        np.minimum(size, capped, out=capped)
        size = np.where(not_warm, size, capped)
        # A first point has no jump; before 1/alpha jumps, weight 1/jumps makes the scale
        # their exact mean, so the first jump does not dominate the warm-up estimate.
        weight = np.maximum(count, 1).astype(np.float64)
        np.divide(1.0, weight, out=weight)
        np.maximum(weight, self.alpha, out=weight)
        weight[cold] = 0.0
        # mean_abs + weight * (size - mean_abs), in place
        size -= mean_abs
        size *= weight
        size += mean_abs
        scale_all[rows] = size
        prev_all[rows] = values
        count_all[rows] = count + 1
        return DetectorOutput(score, baseline, z)
