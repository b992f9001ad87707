"""Static bounds: a point outside the configured [lower, upper] of its series is anomalous.

The bounds come from the SRE's config (an SLO line, a hard capacity limit) through the
runtime's ``set_bounds``; they are part of the exported state so a restored partition keeps
them even before the config is re-applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, DetectorOutput, FloatArray, IntArray, StateField
from detectors.errors import InputError


class StaticBounds(Detector):
    """Score 1 outside a series' bounds, 0 inside (NaN bound = no bound on that side).

    ``deviation`` is the distance beyond the violated bound (+ above upper, - below lower,
    0 inside) and ``baseline`` the violated bound (NaN inside). No warm-up, no memory: the
    answer for a point does not depend on earlier points.

    >>> det = StaticBounds()
    >>> det.resize(2)
    >>> det.set_bounds([0, 1], lower=[0.0, np.nan], upper=[10.0, 500.0])
    >>> out = det.update([0, 0, 1, 0], [1.0, 2.0, 3.0, 4.0], [12.5, 5.0, 900.0, -1.0])
    >>> out.score.tolist(), out.deviation.tolist(), out.baseline.tolist()
    ([1.0, 0.0, 1.0, 1.0], [2.5, 0.0, 400.0, -1.0], [10.0, nan, 500.0, 0.0])
    """

    name: ClassVar[str] = "static"
    state_fields: ClassVar[Mapping[str, StateField]] = {
        "lower": StateField(np.float64, np.nan),
        "upper": StateField(np.float64, np.nan),
    }
    order_independent: ClassVar[bool] = True
    absolute: ClassVar[bool] = True

    @classmethod
    def example(cls, n_series: int) -> Self:
        """Rows cycle through: both bounds, upper only, lower only, none."""
        det = cls()
        det.resize(n_series)
        rows = np.arange(n_series)
        kind = rows % 4
        lower = np.where((kind == 0) | (kind == 2), -10.0, np.nan)
        upper = np.where((kind == 0) | (kind == 1), 10.0, np.nan)
        det.set_bounds(rows, lower, upper)
        return det

    def set_bounds(
        self, rows: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
    ) -> None:
        """Set the bounds of ``rows``; NaN leaves that side unbounded.

        >>> det = StaticBounds()
        >>> det.resize(1)
        >>> det.set_bounds([0], [5.0], [1.0])
        Traceback (most recent call last):
        ...
        detectors.errors.InputError: row 0: lower bound 5.0 is above upper bound 1.0
        """
        rows_a = np.asarray(rows, dtype=np.intp)
        lower_a = np.asarray(lower, dtype=np.float64)
        upper_a = np.asarray(upper, dtype=np.float64)
        if not rows_a.ndim == lower_a.ndim == upper_a.ndim == 1:
            raise InputError("rows, lower and upper must be 1-D")
        if not len(rows_a) == len(lower_a) == len(upper_a):
            raise InputError(
                f"rows, lower and upper differ in length: "
                f"{len(rows_a)}, {len(lower_a)}, {len(upper_a)}"
            )
        if len(rows_a) and (int(rows_a.min()) < 0 or int(rows_a.max()) >= self.n_series):
            raise InputError(f"rows must be in [0, {self.n_series})")
        if np.isinf(lower_a).any() or np.isinf(upper_a).any():
            raise InputError("bounds must be finite or NaN (no bound)")
        crossed = np.flatnonzero(lower_a > upper_a)
        if len(crossed):
            at = int(crossed[0])
            raise InputError(
                f"row {int(rows_a[at])}: lower bound {lower_a[at]} is above upper bound "
                f"{upper_a[at]}"
            )
        self._state["lower"][rows_a] = lower_a
        self._state["upper"][rows_a] = upper_a

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        lower = self._state["lower"][rows]
        upper = self._state["upper"][rows]
        # comparisons with a NaN bound are False, so a missing side never fires
        above = values > upper
        outside = above | (values < lower)
        baseline = np.full(len(values), np.nan)
        deviation = np.zeros(len(values))
        # violations are rare: build the evidence only for them
        hit = np.flatnonzero(outside)
        if len(hit):
            bound = np.where(above[hit], upper[hit], lower[hit])
            baseline[hit] = bound
            deviation[hit] = values[hit] - bound
        return DetectorOutput(outside.astype(np.float64), baseline, deviation)
