"""EWMA z-score: how far a point lies from its series' exponentially weighted mean and spread.

Per series the detector keeps an exponentially weighted mean and variance and a point count.
Each point is scored against the state *before* it, then folded in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np

from detectors.base import Detector, DetectorOutput, FloatArray, IntArray, StateField
from detectors.params import fraction, non_negative, positive
from detectors.scale import z_against

_LN2 = float(np.log(2.0))


def z_to_score(z: FloatArray, z_threshold: float) -> FloatArray:
    """Map |z| to [0, 1]: ``1 - 0.5 ** ((z / z_threshold) ** 2)``.

    Exactly 0.5 at ``|z| == z_threshold``, so the ensemble's fire threshold of 0.5 means "beyond
    the configured z". Quadratic near 0, so ordinary noise (|z| ~ 1) scores about 0.04 rather
    than climbing linearly; 0.94 at twice the threshold, tending to 1 for large |z|.

    >>> z_to_score(np.array([0.0, 2.0, 4.0, 8.0, -8.0, np.inf]), 4.0).round(4).tolist()
    [0.0, 0.1591, 0.5, 0.9375, 0.9375, 1.0]
    """
    with np.errstate(over="ignore"):
        score: FloatArray = z / z_threshold
        # 0.5 ** r2 written as exp(-ln2 * r2): the same value, a fifth of np.power's cost;
        # in place: 1 - exp(ratio * ratio * -ln2)
        np.multiply(score, score, out=score)
        score *= -_LN2
        np.exp(score, out=score)
    np.subtract(1.0, score, out=score)
    return score


class EwmaZScore(Detector):
    """Scores points by their z-score against a per-series EWMA mean and EW variance.

    ``deviation`` is the z-score, ``baseline`` the mean before the point; the score stays 0
    until a series has seen ``warmup`` points, because an estimate from a handful of points
    flags everything.

    >>> rng = np.random.default_rng(7)
    >>> det = EwmaZScore(warmup=30)
    >>> det.resize(1)
    >>> calm = det.update(np.zeros(60, np.intp), np.arange(60.0), 100 + rng.normal(0, 1, 60))
    >>> int((calm.score >= 0.5).sum())
    0
    >>> spike = det.update([0], [60.0], [130.0])
    >>> round(float(spike.score[0]), 3), round(float(spike.baseline[0]), 1)
    (1.0, 100.0)
    """

    name: ClassVar[str] = "ewma"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        "mean": StateField(np.float64, 0.0),
        "var": StateField(np.float64, 0.0),
        "count": StateField(np.int64, 0),
    }

    def __init__(
        self,
        alpha: float = 0.05,
        warmup: int = 30,
        z_threshold: float = 4.0,
        min_std: float = 1e-6,
        rel_min_std: float = 1e-3,
        clip_z: float = 3.0,
    ) -> None:
        """Configure the detector.

        ``alpha`` weighs the newest point (0.05: an effective memory of ~20 points, long
        enough to average out noise, short enough to follow a slow drift within a minute of
        1-second points). ``warmup`` points are scored 0 (30: the usual rule of thumb for a
        usable variance estimate). ``min_std`` and ``rel_min_std`` floor the spread (see
        ``_update_wave``); ``clip_z`` winsorises the update of a warm series.
        """
        fraction("alpha", alpha)
        non_negative("warmup", warmup)
        positive("z_threshold", z_threshold)
        positive("min_std", min_std)
        non_negative("rel_min_std", rel_min_std)
        positive("clip_z", clip_z)
        super().__init__()
        self.alpha = alpha
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        self.clip_z = clip_z

    @classmethod
    def example(cls, n_series: int) -> Self:
        """A short warm-up so the contract test's few points per series reach warm scoring."""
        det = cls(alpha=0.3, warmup=3)
        det.resize(n_series)
        return det

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        mean_all, var_all, count_all = self._state["mean"], self._state["var"], self._state["count"]
        mean = mean_all[rows]
        var = var_all[rows]
        count = count_all[rows]
        cold = count == 0
        # A first point has nothing to be compared with, whatever warmup says.
        not_warm = count < max(self.warmup, 1)
        # The std floor (see detectors.scale): a flat series must not score on every wiggle.
        std, dev, z = z_against(values, mean, var, rel_min_std=self.rel_min_std,
                                min_std=self.min_std)
        z[cold] = np.nan
        score = z_to_score(z, self.z_threshold)
        score[not_warm] = 0.0
        baseline = mean.copy()
        baseline[cold] = np.nan
        # Winsorise the update once warm: one huge outlier would otherwise inflate the variance
        # by alpha * z**2 (a 1000-sigma glitch: std x 220) and blind the series for hundreds
        # of points. Clipped, it moves the state like a clip_z-sigma point; a real level shift
        # still gets absorbed, as each clipped step widens the spread (~17%/point at 3 sigma).
        reach = std * self.clip_z
        diff = np.minimum(np.maximum(dev, -reach), reach)
        diff[not_warm] = dev[not_warm]
        # Before 1/alpha points the weight 1/(count+1) makes this the exact running mean and
        # (Welford) variance, so the first point does not dominate the warm-up estimate.
        weight = np.maximum(1.0 / (count + 1.0), self.alpha)
        step = weight * diff
        mean_all[rows] = mean + step
        var_all[rows] = (1.0 - weight) * (var + diff * step)
        count_all[rows] = count + 1
        return DetectorOutput(score, baseline, z)
