"""Seasonal baseline: a point against the same time of day (or week) in earlier periods.

Traffic-shaped series rise and fall with the clock, so a global mean calls every morning
ramp an anomaly and misses a night-time drop to the daytime level. Per series this detector
keeps a profile of ``bins`` slots over ``period_s`` (daily: 86400 s; weekly: 604800 s), each
slot an exponentially weighted mean and variance of the points that fell in it. A point is
scored by its z against its slot, once that slot has seen ``warmup`` points.

Each point weighs by the time it stands for (the gap since the series' previous point, at
most one slot wide), so the memory is ``memory_periods`` periods whatever the cadence.

State: per series one float64 (the last ts) and per slot a float32 mean and variance and a
uint16 count, 10 bytes a slot: 488 bytes with 48 slots, 968 with 96, 1688 for an hourly
weekly profile. float32 keeps 24 bits, a relative error of 6e-8 of the level; the spread is
floored at ``rel_min_std`` (1e-3) of the level, 16000 times coarser, so the rounding moves
no z by more than about 1e-4. It halves the bytes, which is what lets a daily profile fit in
the 1 KiB a series may cost. ``state_fields`` on the class is the layout of the default
``bins``; an instance's layout follows its own ``bins`` (see ``export_state()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import ClassVar, Self

import numpy as np

from detectors.base import (
    Detector,
    DetectorOutput,
    FloatArray,
    IntArray,
    SeriesArrays,
    StateField,
)
from detectors.errors import InputError
from detectors.ewma import z_to_score
from detectors.params import non_negative, positive
from detectors.scale import z_against

# Half-hour slots: fine enough to follow a morning ramp, coarse enough that a one-minute
# series gives every slot 30 points a day (a day warms the profile).
DEFAULT_BINS = 48
_MAX_COUNT = int(np.iinfo(np.uint16).max)
_F32_MAX = float(np.finfo(np.float32).max)


def profile_fields(bins: int) -> dict[str, StateField]:
    """The state layout of a profile with ``bins`` slots.

    >>> list(profile_fields(2))
    ['last_ts', 'mean_0', 'mean_1', 'var_0', 'var_1', 'count_0', 'count_1']
    """
    fields = {"last_ts": StateField(np.float64, np.nan)}
    for stat, field in (
        ("mean", StateField(np.float32, 0.0)),
        ("var", StateField(np.float32, 0.0)),
        # counts only matter until 1/count is below the time weight; 65535 covers memories
        # of a week of half-hour slots down to a 0.15 s cadence
        ("count", StateField(np.uint16, 0)),
    ):
        fields.update({f"{stat}_{s}": field for s in range(bins)})
    return fields


class SeasonalBaseline(Detector):
    """Scores points by their z against the profile slot of their time of period.

    ``baseline`` is the slot's mean before the point, ``deviation`` the z-score.

    >>> rng = np.random.default_rng(3)
    >>> det = SeasonalBaseline(warmup=12)
    >>> det.resize(1)
    >>> ts = np.arange(0.0, 4 * 86400.0, 300.0)  # four days of 5-minute points
    >>> traffic = 1000 + 800 * np.sin(2 * np.pi * ts / 86400.0) + rng.normal(0, 20, len(ts))
    >>> days = det.update(np.zeros(len(ts), np.intp), ts, traffic)
    >>> int((days.score[288:] >= 0.5).sum())  # the daily swing is expected
    0
    >>> night = 4 * 86400.0 + 0.75 * 86400.0  # the trough: ~200
    >>> out = det.update([0], [night], [1000.0])  # the daily mean, but not at this hour
    >>> round(float(out.score[0]), 3), round(float(out.baseline[0]))
    (1.0, 198)
    """

    name: ClassVar[str] = "seasonal"
    state_fields: ClassVar[Mapping[str, StateField]] = profile_fields(DEFAULT_BINS)

    def __init__(
        self,
        period_s: float = 86400.0,
        bins: int = DEFAULT_BINS,
        memory_periods: float = 7.0,
        warmup: int = 30,
        z_threshold: float = 4.0,
        min_std: float = 1e-6,
        rel_min_std: float = 1e-3,
        clip_z: float = 3.0,
    ) -> None:
        """Configure the profile.

        ``period_s`` and ``bins`` set the slots (the config chooses daily or weekly).
        ``memory_periods`` is the time constant in periods (7: a daily slot averages about a
        week, so one odd day moves it by a seventh, and a trend of a few percent a week is
        followed). ``warmup`` points per slot are scored 0 (30, as for EWMA: a usable
        variance). ``z_threshold``, ``min_std``, ``rel_min_std`` and ``clip_z`` mean what
        they mean for :class:`detectors.ewma.EwmaZScore`.
        """
        positive("period_s", period_s)
        if bins < 1:
            raise InputError(f"bins must be >= 1, got {bins}")
        positive("memory_periods", memory_periods)
        if not 0 <= warmup <= _MAX_COUNT:
            raise InputError(f"warmup must be in [0, {_MAX_COUNT}], got {warmup}")
        positive("z_threshold", z_threshold)
        positive("min_std", min_std)
        non_negative("rel_min_std", rel_min_std)
        positive("clip_z", clip_z)
        super().__init__()
        self._state = SeriesArrays(profile_fields(bins))
        self.period_s = period_s
        self.bins = bins
        self.memory_periods = memory_periods
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.min_std = min_std
        self.rel_min_std = rel_min_std
        self.clip_z = clip_z
        self._width = period_s / bins
        self._tau = memory_periods * self._width

    @classmethod
    def example(cls, n_series: int) -> Self:
        """An 8-second period, so the generated ts 0..12 revisit slots and warm them."""
        det = cls(period_s=8.0, memory_periods=1.0, warmup=2)
        det.resize(n_series)
        return det

    def slot_of(self, ts: FloatArray) -> IntArray:
        """The profile slot of each ts (the epoch is the start of every period).

        >>> SeasonalBaseline(bins=4).slot_of(np.array([0.0, 21600.0, 86399.0, -1.0])).tolist()
        [0, 1, 3, 3]
        """
        phase = np.mod(ts, self.period_s)
        slot = (phase * (self.bins / self.period_s)).astype(np.intp)
        # a phase a hair below the period can round up to ``bins``
        return np.minimum(slot, self.bins - 1)

    def _groups(self, ts: FloatArray) -> list[tuple[int, slice | IntArray]]:
        """Points by slot. Points of one instant share a slot, so usually there is one."""
        if len(ts) == 0:
            return []
        # A wave spans seconds, a slot half an hour: when both ends share a slot and no
        # period starts between them (the phase only grows), every point does, and the
        # per-point slots need not be computed. Phase and slot are monotone within a period.
        lo, hi = float(ts.min()), float(ts.max())
        ends = np.array([lo, hi])
        phase = np.mod(ends, self.period_s)
        first, last = self.slot_of(ends).tolist()
        if first == last and hi - lo < self.period_s and phase[1] >= phase[0]:
            return [(first, slice(None))]
        slot = self.slot_of(ts)
        order = np.argsort(slot, kind="stable")
        ordered = slot[order]
        cuts = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(slot)]
        return [(int(ordered[a]), order[a:b]) for a, b in pairwise(cuts)]

    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        state = self._state
        groups = self._groups(ts)
        n = len(rows)
        mean = np.empty(n, dtype=np.float64)
        var = np.empty(n, dtype=np.float64)
        count = np.empty(n, dtype=np.int64)
        for s, at in groups:
            r = rows[at]
            mean[at] = state[f"mean_{s}"][r]
            var[at] = state[f"var_{s}"][r]
            count[at] = state[f"count_{s}"][r]
        last_all = state["last_ts"]
        last = last_all[rows]
        # The time a point stands for: since the series' previous point, never more than one
        # slot (after an outage a point is still one visit) and 0 for a series' first point.
        gap = ts - last
        np.fmax(gap, 0.0, out=gap)
        np.fmin(gap, self._width, out=gap)
        cold = count == 0
        not_warm = count < max(self.warmup, 1)
        std, dev, z = z_against(values, mean, var, rel_min_std=self.rel_min_std,
                                min_std=self.min_std)
        z[cold] = np.nan
        score = z_to_score(z, self.z_threshold)
        score[not_warm] = 0.0
        baseline = np.where(cold, np.nan, mean)
        # Winsorised once warm, as in EWMA: one glitch must not widen a slot for a week.
        reach = std
        reach *= self.clip_z
        diff = np.negative(reach)
        np.maximum(dev, diff, out=diff)
        np.minimum(diff, reach, out=diff)
        diff[not_warm] = dev[not_warm]
        # 1/(count+1) first: the exact running mean of the slot's first points, until the
        # time weight of the memory is the larger. In place: max(1/(count+1), -expm1(-gap/tau)).
        weight = count + 1.0
        np.divide(1.0, weight, out=weight)
        memory = np.divide(gap, self._tau, out=gap)
        np.negative(memory, out=memory)
        np.expm1(memory, out=memory)
        np.negative(memory, out=memory)
        np.maximum(weight, memory, out=weight)
        step = weight * diff
        # clipped into float32's range so an absurd value cannot store an inf
        mean += step
        np.clip(mean, -_F32_MAX, _F32_MAX, out=mean)
        # (1 - weight) * (var + diff * step), in place
        spread = np.multiply(diff, step, out=diff)
        spread += var
        np.subtract(1.0, weight, out=weight)
        spread *= weight
        var = np.minimum(spread, _F32_MAX, out=spread)
        count += 1
        np.minimum(count, _MAX_COUNT, out=count)
        for s, at in groups:
            r = rows[at]
            state.put(f"mean_{s}", r, mean[at])
            state.put(f"var_{s}", r, var[at])
            state.put(f"count_{s}", r, count[at])
        last_all[rows] = np.fmax(last, ts)
        return DetectorOutput(score, baseline, z)
