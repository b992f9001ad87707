"""Robust rolling median/MAD: how far a point lies from the median of its series' last points.

Per series the detector keeps the last ``window`` values in a ring (one row of a
``rows x window`` float32 array) and a point count. Each point is scored by its robust
z-score against the median and the median absolute deviation (MAD) of the ring *before* it,
then written over the ring's oldest value. Unlike an EWMA, one wild point moves neither the
median nor the MAD, so the point after a glitch is judged against the same baseline.

The ring is the one piece of state that is not a 1-D ``StateField``: it is exported as a
2-D ``"ring"`` array (``rows x window``, float32), and this module grows, exports and loads it
beside the base's arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, DetectorOutput, FloatArray, IntArray, StateField
from detectors.errors import InputError, StateError
from detectors.ewma import z_to_score
from detectors.params import non_negative, positive

# 1.4826 * MAD estimates the standard deviation of a gaussian series, so the robust z is in
# the same units as a plain z-score; 1.2533 * mean absolute deviation does the same.
_MAD_TO_STD = 1.4826
_MEAN_AD_TO_STD = 1.2533
# float32 holds any finite value up to this; larger ones are clipped before being stored
# rather than becoming inf and turning the row's median into NaN.
_F32_MAX = float(np.finfo(np.float32).max)
_RING = "ring"


class RobustMad(Detector):
    """Scores points by their robust z-score against a rolling median and MAD.

    ``baseline`` is the median of the last ``window`` points (NaN for a first point) and
    ``deviation`` the robust z ``(x - median) / (1.4826 * MAD)``. The score stays 0 until a
    series has ``warmup`` points in its ring.

    >>> rng = np.random.default_rng(7)
    >>> det = RobustMad()
    >>> det.resize(1)
    >>> calm = det.update(np.zeros(80, np.intp), np.arange(80.0), 100 + rng.normal(0, 1, 80))
    >>> int((calm.score >= 0.5).sum())
    0
    >>> glitch = det.update([0, 0], [80.0, 81.0], [1e6, 101.0])  # the glitch barely moves it
    >>> glitch.score.round(2).tolist(), glitch.baseline.round(2).tolist()
    ([1.0, 0.02], [99.92, 100.0])
    """

    name: ClassVar[str] = "mad"
    state_fields: ClassVar[Mapping[str, StateField]] = {"count": StateField(np.int64, 0)}

    def __init__(
        self,
        window: int = 32,
        warmup: int = 32,
        z_threshold: float = 6.0,
        min_scale: float = 1e-6,
        rel_min_scale: float = 1e-3,
    ) -> None:
        """Configure the detector.

        ``window`` points per series are kept (32: 128 bytes per series in float32, a
        quarter of a 1 KiB per-series budget shared by the whole ensemble, and a sort of 32
        values per point, about half the time of 64. The price: the MAD of 32 gaussian points
        wanders ~20% around the true spread against ~14% for 64, so noise crosses a given
        threshold more often. On 10^6 gaussian points, window 32 at z 6 and window 64 at z
        5 both fire ~6e-5 of the time, and on the NAB dev files the two windows hit and
        miss the same labelled windows but for a handful). float32 suffices because the
        scale is floored at 0.1% of the level, far above float32's 6e-8 relative rounding.
        ``warmup`` points are scored 0 (32: a full default window, as a MAD of a few points
        is mostly luck). ``z_threshold`` is the robust z that scores 0.5 (6: see above; real
        telemetry's heavy tails make 4 or 5 fire on ordinary points). ``min_scale`` and
        ``rel_min_scale`` floor the scale (see ``_update_wave``).
        """
        if window < 3:
            raise InputError(f"window must be >= 3, got {window}")
        non_negative("warmup", warmup)
        positive("z_threshold", z_threshold)
        positive("min_scale", min_scale)
        non_negative("rel_min_scale", rel_min_scale)
        super().__init__()
        self.window = window
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_scale = min_scale
        self.rel_min_scale = rel_min_scale
        self._ring: npt.NDArray[np.float32] = np.full((0, window), np.nan, dtype=np.float32)

    @classmethod
    def example(cls, n_series: int) -> Self:
        """A short window so the contract test's few points per series wrap the ring."""
        det = cls(window=5, warmup=3)
        det.resize(n_series)
        return det

    def resize(self, n_series: int) -> None:
        """Grow to ``n_series`` rows; the ring follows the base arrays' capacity doubling."""
        old = self.n_series
        super().resize(n_series)
        capacity = self._state.capacity
        if len(self._ring) < capacity:
            grown = np.full((capacity, self.window), np.nan, dtype=np.float32)
            grown[:old] = self._ring[:old]
            self._ring = grown
        else:
            self._ring[old:n_series] = np.nan

    def export_state(self) -> dict[str, npt.NDArray[Any]]:
        """The base's 1-D arrays plus ``"ring"``, a ``rows x window`` float32 array."""
        state = super().export_state()
        state[_RING] = self._ring[: self.n_series].copy()
        return state

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Replace the state; checks the ring against this window before touching anything."""
        if _RING not in state:
            raise StateError(_RING, "missing")
        ring = np.asarray(state[_RING])
        if ring.ndim != 2 or ring.shape[1] != self.window:
            raise StateError(_RING, f"expected shape (rows, {self.window}), got {ring.shape}")
        if ring.dtype != np.float32:
            raise StateError(_RING, f"expected dtype float32, got {ring.dtype}")
        count = state.get("count")
        if count is not None and len(np.asarray(count)) != len(ring):
            raise StateError(_RING, f"has {len(ring)} rows, 'count' has {len(count)}")
        super().load_state({k: v for k, v in state.items() if k != _RING})
        self._ring = ring.copy()

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        count_all = self._state["count"]
        count = count_all[rows]
        cold = count == 0
        not_warm = count < max(self.warmup, 1)
        filled = np.minimum(count, self.window)
        # A cold row's ring is all NaN; count it as one slot so the arithmetic stays quiet.
        filled_safe = np.maximum(filled, 1)
        win = self._ring[rows]
        median = _row_median(win, filled_safe)
        # float32 like the ring: its rounding is far below the relative floor on the scale
        with np.errstate(over="ignore"):
            absdev = np.abs(win - median.astype(np.float32)[:, None])
        mad = _row_median(absdev, filled_safe)
        scale = mad * _MAD_TO_STD
        flat = mad == 0.0
        if flat.any():
            # More than half the window on one value (a gauge that rarely moves, a counter of
            # rare events) has MAD 0 though the rest of the window moves: fall back to the
            # mean absolute deviation, the usual remedy, so the spread of the minority counts.
            dev_flat = absdev[flat]
            sums = np.where(np.isnan(dev_flat), 0.0, dev_flat).sum(axis=1)
            scale[flat] = sums / filled_safe[flat] * _MEAN_AD_TO_STD
        # The floors: a constant series has MAD and mean deviation 0, and any harmless wiggle
        # would then be an infinite z. The relative floor ties the smallest meaningful change
        # to the level (0.1% of |median|), the absolute one covers series sitting at 0.
        floor = np.abs(median)
        floor *= self.rel_min_scale
        np.maximum(floor, self.min_scale, out=floor)
        np.maximum(scale, floor, out=scale)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (values - median) / scale
        z[cold] = np.nan
        score = z_to_score(z, self.z_threshold)
        score[not_warm] = 0.0
        median[cold] = np.nan
        slot = count % self.window
        self._ring[rows, slot] = np.clip(values, -_F32_MAX, _F32_MAX)
        count_all[rows] = count + 1
        return DetectorOutput(score, median, z)


def _row_median(win: npt.NDArray[np.float32], filled: IntArray) -> FloatArray:
    """Median of the first ``filled[i]`` values of each row, unused slots being NaN.

    NaN sorts last, so the used values of a partly filled row come first once sorted. A full
    sort, not ``np.partition``: numpy sorts short float32 rows with SIMD, ten times faster
    than a two-pivot partition of the same rows.

    >>> nan = np.nan
    >>> win = np.array([[3.0, 1.0, 2.0, nan], [4.0, 1.0, 3.0, 2.0]], dtype=np.float32)
    >>> _row_median(win, np.array([3, 4])).tolist()
    [2.0, 2.5]
    """
    ordered = np.sort(win, axis=1)
    at = np.arange(len(win))
    lo = ordered[at, (filled - 1) // 2].astype(np.float64)
    hi = ordered[at, filled // 2].astype(np.float64)
    median: FloatArray = (lo + hi) * 0.5
    return median
