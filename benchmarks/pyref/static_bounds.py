"""Reference of :class:`detectors.static_bounds.StaticBounds`: fixed limits per series."""

from __future__ import annotations

from benchmarks.pyref.common import NAN, Scored
from detectors.static_bounds import StaticBounds


class PyStaticBounds:
    """:class:`detectors.static_bounds.StaticBounds`, one point at a time (NaN = no bound).

    >>> ref = PyStaticBounds(lower=[0.0], upper=[10.0])
    >>> ref.update(0, 1.0, 12.5), ref.update(0, 2.0, 5.0)
    ((1.0, 10.0, 2.5), (0.0, nan, 0.0))
    """

    name = "static"

    def __init__(self, lower: list[float], upper: list[float]) -> None:
        self.lower = lower
        self.upper = upper

    @classmethod
    def like(cls, det: StaticBounds) -> PyStaticBounds:
        """A copy of ``det``'s bounds."""
        state = det.export_state()
        return cls(state["lower"].tolist(), state["upper"].tolist())

    def update(self, row: int, ts: float, value: float) -> Scored:
        upper = self.upper[row]
        if value > upper:  # a NaN bound compares False: that side never fires
            return 1.0, upper, value - upper
        lower = self.lower[row]
        if value < lower:
            return 1.0, lower, value - lower
        return 0.0, NAN, 0.0
