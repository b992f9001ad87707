"""Shared machinery: growable state arrays, state validation, batch validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.base import SeriesArrays, StateField, as_points
from detectors.errors import InputError, StateError
from detectors.ewma import EwmaZScore
from detectors.waves import plan_waves

FIELDS = {"level": StateField(np.float64, np.nan), "count": StateField(np.int64, 0)}


def test_growing_one_series_at_a_time_reallocates_logarithmically() -> None:
    arrays = SeriesArrays(FIELDS)
    for n in range(1, 10_001):
        arrays.resize(n)
        arrays["count"][n - 1] = n
    # 64, 128, ..., 16384: nine reallocations for ten thousand resizes
    assert arrays.reallocations == 9
    assert arrays.capacity == 16_384
    np.testing.assert_array_equal(arrays["count"], np.arange(1, 10_001))
    assert np.isnan(arrays["level"]).all()


def test_export_is_a_copy_of_the_rows_in_use() -> None:
    arrays = SeriesArrays(FIELDS)
    arrays.resize(3)
    state = arrays.export()
    state["count"][0] = 99
    assert arrays["count"].tolist() == [0, 0, 0]
    assert {k: v.shape for k, v in state.items()} == {"level": (3,), "count": (3,)}


def test_load_then_grow_keeps_loaded_rows() -> None:
    arrays = SeriesArrays(FIELDS)
    arrays.load({"level": np.array([1.5, 2.5]), "count": np.array([4, 5])})
    arrays.resize(4)
    assert arrays["count"].tolist() == [4, 5, 0, 0]
    np.testing.assert_array_equal(arrays["level"], [1.5, 2.5, np.nan, np.nan])


def test_shrinking_is_refused() -> None:
    arrays = SeriesArrays(FIELDS)
    arrays.resize(5)
    with pytest.raises(InputError) as err:
        arrays.resize(4)
    assert str(err.value) == "resize cannot shrink: n_series=4 < current 5"


GOOD = {"level": np.array([1.0, 2.0]), "count": np.array([1, 2])}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"count": GOOD["count"]}, "state key 'level': missing"),
        ({**GOOD, "extra": np.zeros(2)}, "state key 'extra': unexpected key"),
        ({**GOOD, "count": np.array([1.0, 2.0])}, "state key 'count': expected dtype int64, "
         "got float64"),
        ({**GOOD, "level": np.zeros((2, 1))}, "state key 'level': expected a 1-D array, "
         "got shape (2, 1)"),
        ({**GOOD, "count": np.array([1, 2, 3])}, "state key 'count': has 3 rows, 'level' has 2"),
    ],
)
def test_state_that_does_not_fit_names_the_key_and_changes_nothing(
    state: dict[str, Any], message: str
) -> None:
    arrays = SeriesArrays(FIELDS)
    arrays.resize(1)
    with pytest.raises(StateError) as err:
        arrays.load(state)
    assert str(err.value) == message
    assert arrays.n == 1


@pytest.mark.parametrize(
    ("rows", "ts", "values", "message"),
    [
        ([0], [1.0, 2.0], [1.0], "rows, ts and values differ in length: 1, 2, 1"),
        ([[0]], [1.0], [1.0], "rows, ts and values must be 1-D, got (1, 1), (1,), (1,)"),
        ([0, 3], [1.0, 2.0], [1.0, 2.0], "rows must be in [0, 3), got 3"),
        ([-1, 0], [1.0, 2.0], [1.0, 2.0], "rows must be in [0, 3), got -1"),
        ([0, 1], [1.0, np.nan], [1.0, 2.0], "ts must be finite, got nan at position 1"),
        ([0, 1], [1.0, 2.0], [np.inf, 2.0], "values must be finite, got inf at position 0"),
    ],
)
def test_bad_batches_are_refused_with_the_reason(
    rows: Any, ts: Any, values: Any, message: str
) -> None:
    with pytest.raises(InputError) as err:
        as_points(rows, ts, values, n_series=3)
    assert str(err.value) == message


def test_a_plan_for_another_batch_is_refused_before_any_state_changes() -> None:
    det = EwmaZScore()
    det.resize(2)
    with pytest.raises(InputError) as err:
        det.update([0, 1, 1], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], plan_waves([0], [1.0]))
    assert str(err.value) == "waves plan 1 points, the batch has 3"
    assert det.export_state()["count"].tolist() == [0, 0]
