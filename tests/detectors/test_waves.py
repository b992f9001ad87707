"""Wave plans: a permutation, distinct rows per wave, each series in (ts, input) order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import InputError
from detectors.waves import plan_waves

# Small rows take the one-pass radix sort, rows past 2**16 the two-pass one, rows past 2**32
# the comparison-sort fallback.
ROW_BASES = [0, 70_000, 2**33]


def reference_waves(rows: np.ndarray, ts: np.ndarray) -> list[list[int]]:
    """Waves computed the slow, obvious way: per series, points in (ts, position) order."""
    per_series: dict[int, list[int]] = {}
    for i in sorted(range(len(rows)), key=lambda i: (ts[i], i)):
        per_series.setdefault(int(rows[i]), []).append(i)
    n_waves = max((len(v) for v in per_series.values()), default=0)
    return [
        sorted(per_series[r][k] for r in per_series if len(per_series[r]) > k)
        for k in range(n_waves)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(ROW_BASES),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), max_size=60),
)
def test_plan_matches_the_obvious_per_series_order(
    base: int, points: list[tuple[int, int]]
) -> None:
    rows = np.array([base + r for r, _ in points], dtype=np.intp)
    ts = np.array([t for _, t in points], dtype=np.float64)
    plan = plan_waves(rows, ts)
    waves = [sorted(plan.wave(k).tolist()) for k in range(plan.n_waves)]
    assert waves == reference_waves(rows, ts)
    assert sorted(plan.positions.tolist()) == list(range(len(rows)))
    assert plan.n_points == len(rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), max_size=60))
def test_wave_order_round_trips_and_reordered_plan_uses_slices(
    points: list[tuple[int, int]],
) -> None:
    rows = np.array([r for r, _ in points], dtype=np.intp)
    ts = np.array([t for _, t in points], dtype=np.float64)
    plan = plan_waves(rows, ts)
    values = np.arange(len(rows), dtype=np.float64) * 1.5
    ordered = plan.to_wave_order(values)
    np.testing.assert_array_equal(plan.to_input_order(ordered), values)
    matrix = np.column_stack([values, -values])
    np.testing.assert_array_equal(plan.to_input_order(plan.to_wave_order(matrix)), matrix)
    again = plan.reordered()
    assert again.in_wave_order
    for k, wave in enumerate(again.slices()):
        np.testing.assert_array_equal(ordered[wave], values[plan.wave(k)])


def test_one_point_per_series_is_a_single_wave_in_input_order() -> None:
    plan = plan_waves([5, 2, 9], [3.0, 1.0, 2.0])
    assert plan.in_wave_order
    assert plan.slices() == [slice(0, 3)]


def test_empty_batch_has_no_waves() -> None:
    plan = plan_waves([], [])
    assert (plan.n_points, plan.n_waves, plan.slices()) == (0, 0, [])


@pytest.mark.parametrize(
    ("rows", "ts", "message"),
    [
        ([0, 1], [1.0], "rows and ts differ in length: 2 != 1"),
        ([[0]], [[1.0]], "rows and ts must be 1-D, got shapes (1, 1) and (1, 1)"),
        ([0, -3], [1.0, 2.0], "rows must be >= 0, got -3"),
    ],
)
def test_bad_batches_are_refused_with_the_reason(
    rows: list[int], ts: list[float], message: str
) -> None:
    with pytest.raises(InputError) as err:
        plan_waves(rows, ts)
    assert str(err.value) == message
