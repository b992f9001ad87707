"""The detector contract: every detector scores many series at once and keeps state as arrays.

A detector holds one row of state per series (the runtime's series index assigns the rows)
and answers one call per batch::

    class DetectorOutput(NamedTuple):
        score: float64 in [0, 1] per input point, in INPUT order; high means anomalous
        baseline: float64, what the detector expected just before the point (NaN if nothing)
        deviation: float64, signed deviation in the detector's own units

    class Detector(abc.ABC):
        name: ClassVar[str]                  # unique; namespaces the state in an ensemble
        n_series: int                        # property: rows of state held
        resize(n_series) -> None             # grow only; old rows kept, new rows start cold;
                                             # capacity doubles, so adding one series is cheap
        update(rows, ts, values, waves=None) -> DetectorOutput
        update_checked(...)                  # the same on a batch as_points already checked
        export_state() -> dict[str, ndarray] # plain 1-D arrays, one row per series (np.savez)
        load_state(state) -> None            # StateError naming the key when it does not fit
        example(n_series) -> Detector        # classmethod: a configured instance for tests
        tick(now) -> TickOutput | None       # optional, see "The clock tick" below

``update`` takes points in any order. Several points of one series are applied in ts order
(equal ts keep input order), and each point is scored against the state *before* it. The
work is vectorised in waves (:mod:`detectors.waves`); a detector only implements
``_update_wave``, which sees each series at most once. A detector whose answer does not
depend on earlier points sets ``order_independent = True`` and gets the whole batch at once.

``example`` exists for the contract test (``tests/detectors/test_contract.py``), which finds
every concrete subclass in the package and checks the invariants: one batch equals the same
points one at a time, export/load round-trips, same input gives the same output, finite in
gives a score in [0, 1], resize keeps old rows. ``example`` returns an instance configured so
that short generated inputs reach its interesting states (warm, bounds set).

State lives in :class:`SeriesArrays`, which also implements resize, export and load, so a
detector declares its arrays in ``state_fields`` and writes only its arithmetic.

The clock tick
--------------
Some evidence arrives without a point: a series that stops reporting sends nothing to score.
The runtime therefore also calls ``tick(now)`` on a clock, with ``now`` in the same time base
as the points' ``ts``. A detector that judges the passing of time returns::

    class TickOutput(NamedTuple):
        rows: intp, the series with something to say at ``now`` (distinct, ascending)
        score, baseline, deviation: float64 per row, meaning what they mean for a point

Every other detector keeps the default, ``None``. A tick is judged against the state the
points left, may change state (so that one silence is reported once, not at every tick) and
that state is exported like any other; it must be deterministic and cost one vectorised pass
over the rows, because it visits every series, not only those in a batch.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np
import numpy.typing as npt

from detectors.errors import InputError, StateError
from detectors.waves import Waves, plan_waves

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# A fresh table starts with room for this many series so the first few resizes of a runtime
# that registers series one at a time do not reallocate at all.
_MIN_CAPACITY = 64


class TickOutput(NamedTuple):
    """What a detector says at a clock tick: only the rows it scored, ascending."""

    rows: IntArray
    score: FloatArray
    baseline: FloatArray
    deviation: FloatArray


class DetectorOutput(NamedTuple):
    """Per-point answer of a detector, aligned with the input order."""

    score: FloatArray
    baseline: FloatArray
    deviation: FloatArray


@dataclass(frozen=True, slots=True)
class StateField:
    """One per-series state array: its dtype and the value a cold row starts with."""

    dtype: type[np.generic]
    fill: float | int | bool


class SeriesArrays:
    """Named per-series arrays that grow by capacity doubling and export/load as plain arrays.

    >>> arrays = SeriesArrays({"count": StateField(np.int64, 0)})
    >>> for n in range(1, 1001):
    ...     arrays.resize(n)
    >>> arrays.n, arrays.capacity, arrays.reallocations
    (1000, 1024, 5)
    >>> arrays["count"][:3] += 1
    >>> arrays.export()["count"][:4].tolist()
    [1, 1, 1, 0]
    """

    def __init__(self, fields: Mapping[str, StateField]) -> None:
        self._fields = dict(fields)
        self._n = 0
        self._data = {k: np.full(0, f.fill, dtype=f.dtype) for k, f in self._fields.items()}
        self.reallocations = 0

    @property
    def n(self) -> int:
        """Rows in use."""
        return self._n

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return len(next(iter(self._data.values()))) if self._data else self._n

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self._data[name][: self._n]

    def put(self, name: str, rows: IntArray, values: npt.NDArray[Any]) -> None:
        """``self[name][rows] = values``, cast to the field's dtype before the scatter: numpy
        casting element by element inside a scatter costs half as much again.

        >>> arrays = SeriesArrays({"peak": StateField(np.float32, 1.0)})
        >>> arrays.resize(3)
        >>> arrays.put("peak", np.array([2, 0]), np.array([0.1, 2.5]))
        >>> arrays["peak"].tolist() == np.array([2.5, 1.0, 0.1], np.float32).tolist()
        True
        """
        target = self._data[name][: self._n]
        target[rows] = values if values.dtype == target.dtype else values.astype(target.dtype)

    def resize(self, n: int) -> None:
        """Grow to ``n`` rows; new rows take their field's fill value."""
        if n < self._n:
            raise InputError(f"resize cannot shrink: n_series={n} < current {self._n}")
        if n > self.capacity:
            cap = max(n, 2 * self.capacity, _MIN_CAPACITY)
            for k, f in self._fields.items():
                grown = np.full(cap, f.fill, dtype=f.dtype)
                grown[: self._n] = self._data[k][: self._n]
                self._data[k] = grown
            self.reallocations += 1
        else:
            for k, f in self._fields.items():
                self._data[k][self._n : n] = f.fill
        self._n = n

    def export(self) -> dict[str, npt.NDArray[Any]]:
        """Copies of the rows in use, one array per field."""
        return {k: v[: self._n].copy() for k, v in self._data.items()}

    def load(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Replace every array from ``state``; validates it all before touching anything."""
        arrays: dict[str, npt.NDArray[Any]] = {}
        n: int | None = None
        first = ""
        for k, f in self._fields.items():
            if k not in state:
                raise StateError(k, "missing")
            arr = np.asarray(state[k])
            if arr.ndim != 1:
                raise StateError(k, f"expected a 1-D array, got shape {arr.shape}")
            if arr.dtype != np.dtype(f.dtype):
                raise StateError(k, f"expected dtype {np.dtype(f.dtype)}, got {arr.dtype}")
            if n is None:
                n, first = len(arr), k
            elif len(arr) != n:
                raise StateError(k, f"has {len(arr)} rows, {first!r} has {n}")
            arrays[k] = arr.copy()
        for k in sorted(set(state) - set(self._fields)):
            raise StateError(k, "unexpected key")
        self._data = arrays
        self._n = n if n is not None else 0


def as_points(
    rows: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike, n_series: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Coerce and check one batch: equal 1-D lengths, rows in range, finite ts and values.

    >>> as_points([0, 2], [1.0, 2.0], [3.0, 4.0], n_series=2)
    Traceback (most recent call last):
    ...
    detectors.errors.InputError: rows must be in [0, 2), got 2
    """
    rows_a = np.asarray(rows, dtype=np.intp)
    ts_a = np.asarray(ts, dtype=np.float64)
    values_a = np.asarray(values, dtype=np.float64)
    if rows_a.ndim != 1 or ts_a.ndim != 1 or values_a.ndim != 1:
        raise InputError(
            f"rows, ts and values must be 1-D, got {rows_a.shape}, {ts_a.shape}, {values_a.shape}"
        )
    if not len(rows_a) == len(ts_a) == len(values_a):
        raise InputError(
            f"rows, ts and values differ in length: {len(rows_a)}, {len(ts_a)}, {len(values_a)}"
        )
    if len(rows_a) == 0:
        return rows_a, ts_a, values_a
    lo, hi = int(rows_a.min()), int(rows_a.max())
    if lo < 0 or hi >= n_series:
        raise InputError(f"rows must be in [0, {n_series}), got {lo if lo < 0 else hi}")
    for label, arr in (("ts", ts_a), ("values", values_a)):
        finite = np.isfinite(arr)
        if not finite.all():
            at = int(np.flatnonzero(~finite)[0])
            raise InputError(f"{label} must be finite, got {arr[at]} at position {at}")
    return rows_a, ts_a, values_a


def as_now(now: float) -> float:
    """Check a tick's clock reading: a finite number of seconds.

    >>> as_now(float("nan"))
    Traceback (most recent call last):
    ...
    detectors.errors.InputError: now must be finite, got nan
    """
    value = float(now)
    if not np.isfinite(value):
        raise InputError(f"now must be finite, got {value}")
    return value


class Detector(abc.ABC):
    """Base of every detector: validation, wave loop and state handling live here.

    A subclass sets ``name`` and ``state_fields`` and implements ``_update_wave`` and
    ``example``; see the module docstring for the contract.
    """

    name: ClassVar[str]
    state_fields: ClassVar[Mapping[str, StateField]]
    order_independent: ClassVar[bool] = False
    # True where a score means the same on every series (a configured limit was crossed):
    # the ensemble then takes it as it is instead of against the series' own peak surprise.
    absolute: ClassVar[bool] = False

    def __init__(self) -> None:
        self._state = SeriesArrays(self.state_fields)

    @classmethod
    @abc.abstractmethod
    def example(cls, n_series: int) -> Self:
        """A configured instance with ``n_series`` rows, for the contract test."""

    @abc.abstractmethod
    def _update_wave(self, rows: IntArray, ts: FloatArray, values: FloatArray) -> DetectorOutput:
        """Score then apply points whose rows are all distinct; outputs in the given order."""

    @property
    def n_series(self) -> int:
        """Rows of state held, one per series."""
        return self._state.n

    def resize(self, n_series: int) -> None:
        """Grow to ``n_series`` rows; existing rows are kept, new rows start cold."""
        self._state.resize(n_series)

    def export_state(self) -> dict[str, npt.NDArray[Any]]:
        """The state as plain 1-D arrays keyed by field name."""
        return self._state.export()

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Replace the state; raises :class:`StateError` naming the key that does not fit."""
        self._state.load(state)

    def tick(self, now: float) -> TickOutput | None:
        """Judge the passing of time at ``now``; most detectors have nothing to say.

        >>> from detectors.ewma import EwmaZScore
        >>> EwmaZScore().tick(10.0) is None
        True
        """
        return None

    def update(
        self,
        rows: npt.ArrayLike,
        ts: npt.ArrayLike,
        values: npt.ArrayLike,
        waves: Waves | None = None,
    ) -> DetectorOutput:
        """Score every point against its series' state before it, then apply it."""
        rows_a, ts_a, values_a = as_points(rows, ts, values, self.n_series)
        return self.update_checked(rows_a, ts_a, values_a, waves)

    def update_checked(
        self, rows_a: IntArray, ts_a: FloatArray, values_a: FloatArray, waves: Waves | None = None
    ) -> DetectorOutput:
        """:meth:`update` of a batch :func:`as_points` already checked (an ensemble checks it
        once for all its members, which share its row count): no second pass over the data.

        >>> from detectors.ewma import EwmaZScore
        >>> det = EwmaZScore()
        >>> det.resize(1)
        >>> det.update_checked(*as_points([0], [1.0], [2.0], det.n_series)).baseline.tolist()
        [nan]
        """
        n = len(rows_a)
        if waves is not None and waves.n_points != n:
            raise InputError(f"waves plan {waves.n_points} points, the batch has {n}")
        if self.order_independent:
            return self._update_wave(rows_a, ts_a, values_a)
        plan = waves if waves is not None else plan_waves(rows_a, ts_a)
        if plan.n_waves <= 1:
            # every series appears once: the input order is already a valid wave
            return self._update_wave(rows_a, ts_a, values_a)
        # Work in wave order, where each wave is a contiguous slice: one gather in and one
        # scatter out per array instead of one per wave, and views instead of copies inside.
        rows_w = plan.to_wave_order(rows_a)
        ts_w = plan.to_wave_order(ts_a)
        values_w = plan.to_wave_order(values_a)
        score = np.empty(n, dtype=np.float64)
        baseline = np.empty(n, dtype=np.float64)
        deviation = np.empty(n, dtype=np.float64)
        for wave in plan.slices():
            out = self._update_wave(rows_w[wave], ts_w[wave], values_w[wave])
            score[wave] = out.score
            baseline[wave] = out.baseline
            deviation[wave] = out.deviation
        return DetectorOutput(
            plan.to_input_order(score),
            plan.to_input_order(baseline),
            plan.to_input_order(deviation),
        )
