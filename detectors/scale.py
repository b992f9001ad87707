"""The spread a z-score divides by, floored — shared by the z-score style detectors.

A flat series (a constant gauge with float jitter) has a spread near 0, and any harmless
wiggle would then be thousands of sigmas and score 1 on every point. The relative floor ties
the smallest meaningful change to the level (``rel_min_std`` of |mean|, 0.1% by default), the
absolute floor covers series sitting at exactly 0.

>>> std, dev, z = z_against(np.array([101.0, 5.0]), np.array([100.0, 5.0]),
...                         np.array([0.0, 4.0]), rel_min_std=1e-3, min_std=1e-6)
>>> std.tolist(), z.tolist()  # the first series is flat: its floor, 0.1% of 100, holds
([0.1, 2.0], [10.0, 0.0])
"""

from __future__ import annotations

import numpy as np

from detectors.base import FloatArray


def floored_std(mean: FloatArray, var: FloatArray, rel_min_std: float,
                min_std: float) -> FloatArray:
    """``sqrt(var)``, but never below ``max(rel_min_std * |mean|, min_std)``."""
    floor = np.abs(mean)
    floor *= rel_min_std
    np.maximum(floor, min_std, out=floor)
    std: FloatArray = np.sqrt(var)
    np.maximum(std, floor, out=std)
    return std


def z_against(values: FloatArray, mean: FloatArray, var: FloatArray, *, rel_min_std: float,
              min_std: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(std, values - mean, z)`` with the floored std; overflow to ±inf is allowed."""
    std = floored_std(mean, var, rel_min_std, min_std)
    dev: FloatArray = values - mean
    with np.errstate(over="ignore"):
        z: FloatArray = dev / std
    return std, dev, z
