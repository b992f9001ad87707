"""Level shift: a two-sided CUSUM of standardised residuals against a slow EWMA baseline.

A z-score against an adaptive mean stops seeing a sustained shift once the mean has
followed it; a CUSUM adds up the small, same-signed residuals the shift leaves meanwhile and
fires when their sum crosses a decision interval. Per series the detector keeps a slow
EW mean and variance (the baseline), the upper and lower cumulative sums, and, for each, how
many points the current run holds and their raw residual sum (for the size of the shift).

When a sum crosses the interval the detector fires once and re-bases: the baseline jumps to
the estimated new level and both sums restart from 0, so one shift gives one detection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np

from detectors.base import (
    BoolArray,
    Detector,
    DetectorOutput,
    FloatArray,
    IntArray,
    StateField,
)
from detectors.errors import InputError
from detectors.ewma import z_to_score
from detectors.params import fraction, non_negative, positive
from detectors.scale import z_against


class LevelShift(Detector):
    """Scores points by their CUSUM statistic against the decision interval ``h``.

    The score is 0.5 when the larger of the two sums reaches ``h`` (the detector fires) and
    tends to 1 beyond. ``baseline`` is the slow mean before the point; ``deviation`` is the
    estimated shift in baseline standard deviations: the mean residual of the current run of
    the side that leads (signed, 0 while neither sum is above 0). Score 0 until ``warmup``.

    >>> rng = np.random.default_rng(7)
    >>> det = LevelShift()
    >>> det.resize(1)
    >>> calm = det.update(np.zeros(200, np.intp), np.arange(200.0), rng.normal(100, 1, 200))
    >>> int((calm.score >= 0.5).sum())
    0
    >>> shifted = det.update(np.zeros(30, np.intp), 200.0 + np.arange(30), rng.normal(103, 1, 30))
    >>> fired = np.flatnonzero(shifted.score >= 0.5)
    >>> fired.tolist(), round(float(shifted.deviation[fired[0]]), 1)
    ([4], 3.6)
    """

    name: ClassVar[str] = "level_shift"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        "mean": StateField(np.float64, 0.0),
        "var": StateField(np.float64, 0.0),
        "count": StateField(np.int64, 0),
        "up": StateField(np.float32, 0.0),
        "down": StateField(np.float32, 0.0),
        "up_n": StateField(np.int32, 0),
        "down_n": StateField(np.int32, 0),
        "up_sum": StateField(np.float32, 0.0),
        "down_sum": StateField(np.float32, 0.0),
    }

    def __init__(
        self,
        alpha: float = 0.01,
        warmup: int = 50,
        k: float = 1.0,
        h: float = 10.0,
        clip_z: float = 3.0,
        min_std: float = 1e-6,
        rel_min_std: float = 1e-3,
    ) -> None:
        """Configure the detector.

        ``alpha`` weighs the newest point in the baseline (0.01: ~100 points of memory, five
        times the EWMA z-score's, so a shift that detector has already adapted to still
        stands out here). ``warmup`` points are scored 0 and build the baseline (50).
        ``k`` is the allowance, in std units, a residual must exceed to add to a sum (1.0:
        the residuals of a smooth daily curve around a lagging mean stay near or below 1 std,
        so they do not accumulate; a CUSUM is tuned to shifts of 2k, here 2 std). ``h`` is
        the decision interval (10: no false alarm in 10^6 gaussian points, and a 3-std
        shift fires after 5 points; on the NAB dev files 8 fired a third more often outside
        the labelled windows for 3 more windows hit). ``clip_z`` caps one residual's
        contribution, so a single glitch (the spike detector's job) cannot fire alone: it
        takes at least ``h / (clip_z - k)`` points. ``min_std`` and ``rel_min_std`` floor the
        spread as in the EWMA z-score.
        """
        fraction("alpha", alpha)
        non_negative("warmup", warmup)
        non_negative("k", k)
        positive("h", h)
        if not clip_z > k:
            raise InputError(f"clip_z must be > k ({k}), got {clip_z}")
        positive("min_std", min_std)
        non_negative("rel_min_std", rel_min_std)
        super().__init__()
        self.alpha = alpha
        self.warmup = warmup
        self.k = k
        self.h = h
        self.clip_z = clip_z
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        # the shift size the CUSUM is tuned to (2k); with k = 0 it is tuned to none, and the
        # largest step one point can add (clip_z) stands in
        self._tuned_shift = 2.0 * k if k > 0.0 else clip_z

    @classmethod
    def example(cls, n_series: int) -> Self:
        """Short warm-up and interval so the contract test's few points can fire and re-base."""
        det = cls(alpha=0.3, warmup=3, h=2.0)
        det.resize(n_series)
        return det

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        st = self._state
        mean, var, count = st["mean"][rows], st["var"][rows], st["count"][rows]
        # the float32 sums stay float32 here: mixed with float64 they are widened exactly
        up, down = st["up"][rows], st["down"][rows]
        up_n, down_n = st["up_n"][rows], st["down_n"][rows]
        up_sum, down_sum = st["up_sum"][rows], st["down_sum"][rows]
        cold = count == 0
        warm = count >= max(self.warmup, 1)
        std, dev, r = z_against(values, mean, var, rel_min_std=self.rel_min_std,
                                min_std=self.min_std)
        r[~warm] = 0.0
        clipped = np.clip(r, -self.clip_z, self.clip_z)
        # Each side runs while its sum stays above 0; a run's length and raw residual sum give
        # the shift estimate (the clipped sum would understate a large shift).
        up = up + clipped
        up -= self.k
        np.maximum(up, 0.0, out=up)
        down = down - clipped
        down -= self.k
        np.maximum(down, 0.0, out=down)
        up_on, down_on = up > 0.0, down > 0.0
        # The sides switch on and off at random, so the selections below are arithmetic and
        # bit masks: np.where would mispredict a branch on every other point.
        up_n = up_n + np.int32(1)
        up_n *= up_on
        down_n = down_n + np.int32(1)
        down_n *= down_on
        up_sum = _zero_unless(up_sum + r, up_on)
        down_sum = _zero_unless(down_sum + r, down_on)
        stat = np.maximum(up, down)
        shift = _select(up >= down, up_sum / np.maximum(up_n, 1), down_sum / np.maximum(down_n, 1))
        fired = warm & (stat >= self.h)
        any_fired = bool(fired.any())
        # The clipped sum crosses h with at most clip_z - k to spare, which would cap the
        # score near 0.66 whatever the shift. Once fired, a shift larger than the 2k the
        # CUSUM is tuned to counts as that much more evidence, so a 10-std step scores ~1.
        evidence = stat  # not needed afterwards: raised in place
        if any_fired:
            evidence[fired] = np.maximum(
                stat[fired], self.h * np.abs(shift[fired]) / self._tuned_shift
            )
        score = z_to_score(evidence, self.h)
        score[~warm] = 0.0
        baseline = np.where(cold, np.nan, mean)
        # The baseline update, winsorised once warm as in the EWMA z-score so a shift in
        # progress widens the spread only a little before the CUSUM has had its say.
        reach = std * self.clip_z
        diff = np.where(warm, np.clip(dev, -reach, reach), dev)
        weight = count + 1.0
        np.divide(1.0, weight, out=weight)
        np.maximum(weight, self.alpha, out=weight)
        step = weight * diff
        # (1 - weight) * (var + diff * step), in place
        new_var = diff * step
        new_var += var
        np.subtract(1.0, weight, out=weight)
        new_var *= weight
        new_mean = step
        new_mean += mean
        if any_fired:
            # Re-base on the new level (old mean plus the run's mean residual) and keep the
            # spread from before the run, then restart both sums: one shift, one detection.
            new_mean[fired] = mean[fired] + shift[fired] * std[fired]
            new_var[fired] = var[fired]
            for arr in (up, down, up_sum, down_sum):
                arr[fired] = 0.0
            up_n[fired] = 0
            down_n[fired] = 0
        count += 1
        st["mean"][rows] = new_mean
        st["var"][rows] = new_var
        st["count"][rows] = count
        st.put("up", rows, up)
        st.put("down", rows, down)
        st["up_n"][rows] = up_n
        st["down_n"][rows] = down_n
        st.put("up_sum", rows, up_sum)
        st.put("down_sum", rows, down_sum)
        return DetectorOutput(score, baseline, shift)


def _zero_unless(x: FloatArray, keep: BoolArray) -> FloatArray:
    """``np.where(keep, x, 0.0)`` in place on ``x``: AND with all-ones or all-zeros bits.

    >>> _zero_unless(np.array([-1.5, np.inf, 2.0]), np.array([True, False, True])).tolist()
    [-1.5, 0.0, 2.0]
    """
    mask = keep.astype(np.int64)
    np.negative(mask, out=mask)
    bits = x.view(np.int64)
    np.bitwise_and(bits, mask, out=bits)
    return x


def _select(pick_a: BoolArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """``np.where(pick_a, a, b)`` in place on ``a``, by bits: ``((a ^ b) & mask) ^ b``.

    >>> _select(np.array([True, False]), np.array([1.0, np.nan]), np.array([-0.0, 4.0])).tolist()
    [1.0, 4.0]
    """
    mask = pick_a.astype(np.int64)
    np.negative(mask, out=mask)
    bits, other = a.view(np.int64), b.view(np.int64)
    np.bitwise_xor(bits, other, out=bits)
    np.bitwise_and(bits, mask, out=bits)
    np.bitwise_xor(bits, other, out=bits)
    return a
