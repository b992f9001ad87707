"""What every reference shares: the per-point answer, the protocol, the score curve, float32.

The vectorised detectors keep some state in float32 (a ring of values, CUSUM sums, seasonal
slots) and compute a few intermediates in it. A reference that kept those in Python floats
would drift from them by float32's rounding (6e-8 relative), far above the tolerance the
equivalence test holds them to, so the references store such fields in ``array('f')`` (a
store rounds to float32, a read gives the exact double back) and round single values with
:func:`f32`.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterable
from typing import Protocol

LN2 = math.log(2.0)
NAN = math.nan
INF = math.inf
F32_MAX = struct.unpack("f", b"\xff\xff\x7f\x7f")[0]
"""The largest finite float32, as the detectors clip to it before a float32 store."""

_F32 = struct.Struct("f")

Scored = tuple[float, float, float]
"""(score, baseline, deviation) of one point, as the vectorised ``DetectorOutput`` row."""


class PyDetector(Protocol):
    """One detector's reference: score one point against the state before it, then apply it."""

    name: str

    def update(self, row: int, ts: float, value: float) -> Scored: ...


def z_score(z: float, threshold: float) -> float:
    """:func:`detectors.ewma.z_to_score` of one value: ``1 - 0.5 ** ((z / threshold) ** 2)``.

    >>> [round(z_score(z, 4.0), 4) for z in (0.0, 4.0, -8.0, math.inf)]
    [0.0, 0.5, 0.9375, 1.0]
    >>> math.isnan(z_score(NAN, 4.0))
    True
    """
    ratio = z / threshold
    return 1.0 - math.exp(ratio * ratio * -LN2)


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (round half to even, as numpy's cast).

    >>> f32(0.1), f32(1.0)
    (0.10000000149011612, 1.0)
    """
    return float(_F32.unpack(_F32.pack(x))[0])


def f32_array(values: Iterable[float]) -> array[float]:
    """A float32 table: what a per-point implementation stores a float32 field in.

    >>> f32_array([0.1, 2.0]).tolist()
    [0.10000000149011612, 2.0]
    """
    return array("f", values)


def fdiv(a: float, b: float) -> float:
    """``a / b`` with IEEE semantics at ``b == 0`` (inf or NaN), as numpy divides.

    >>> fdiv(1.0, 0.0), fdiv(-1.0, 0.0), math.isnan(fdiv(0.0, 0.0))
    (inf, -inf, True)
    """
    if b != 0.0 or math.isnan(b):
        return a / b
    if a == 0.0 or math.isnan(a):
        return NAN
    return math.copysign(INF, a) * math.copysign(1.0, b)


def pairwise_sum_f32(values: list[float], lo: int = 0, n: int | None = None) -> float:
    """numpy's float32 ``sum`` of ``values[lo:lo + n]``, in numpy's (pairwise) order.

    Up to 8 values are added one by one; up to 128 in eight interleaved accumulators; longer
    runs are halved (on a multiple of 8). Every addition is rounded to float32, so the
    result equals ``np.float32`` summation bit for bit, which a plain ``sum`` would not.

    >>> import numpy as np
    >>> vals = np.random.default_rng(1).standard_normal(300).astype(np.float32)
    >>> pairwise_sum_f32(vals.tolist()) == float(vals.sum())
    True
    """
    if n is None:
        n = len(values) - lo
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total = f32(total + values[i])
        return total
    if n <= 128:
        acc = values[lo : lo + 8]
        i = 8
        end = n - n % 8
        while i < end:
            for j in range(8):
                acc[j] = f32(acc[j] + values[lo + i + j])
            i += 8
        total = f32(f32(f32(acc[0] + acc[1]) + f32(acc[2] + acc[3]))
                    + f32(f32(acc[4] + acc[5]) + f32(acc[6] + acc[7])))
        for k in range(lo + i, lo + n):
            total = f32(total + values[k])
        return total
    half = n // 2
    half -= half % 8
    return f32(pairwise_sum_f32(values, lo, half) + pairwise_sum_f32(values, lo + half, n - half))
