"""Series index and recent-value ring buffers: rows, growth, export/load."""

from __future__ import annotations

from collections import deque

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.finding import series_key
from hotpath.series import RecentValues, SeriesIndex, label_part


def test_rows_are_dense_in_first_appearance_order() -> None:
    idx = SeriesIndex()
    assert idx.rows_for(["a|x|", "b|x|", "a|x|"]).tolist() == [0, 1, 0]
    assert idx.rows_for(["c|x|", "b|x|"]).tolist() == [2, 1]
    assert idx.n == 3
    assert [idx.key(r) for r in range(3)] == ["a|x|", "b|x|", "c|x|"]


def test_rows_for_grows_to_many_series() -> None:
    idx = SeriesIndex()
    keys = [f"svc{i % 7}|m{i}|az=z{i % 3}" for i in range(20_000)]
    rows = idx.rows_for(keys)
    assert rows.dtype == np.intp
    assert rows.tolist() == list(range(20_000))
    assert idx.rows_for(keys[::-1]).tolist() == list(range(19_999, -1, -1))
    assert idx.meta(20) == ("svc6", "m20", {"az": "z2"})


def test_rows_for_with_metas_keeps_names_that_cannot_be_split() -> None:
    idx = SeriesIndex()
    labels = {"path": "/a,b=c"}
    key = series_key("web|edge", "lat", labels)
    assert idx.rows_for([key], [("web|edge", "lat", labels)]).tolist() == [0]
    assert idx.meta(0) == ("web|edge", "lat", labels)
    assert idx.rows_for([key]).tolist() == [0]  # known keys need no metas


def test_rows_for_refuses_a_key_it_cannot_split() -> None:
    with pytest.raises(ValueError) as exc:
        SeriesIndex().rows_for(["a|b|x=1,y"])
    assert str(exc.value) == ("cannot derive service/metric/labels from series key "
                              "'a|b|x=1,y'; pass metas")


def test_rows_for_refuses_metas_that_do_not_match_the_key() -> None:
    with pytest.raises(ValueError) as exc:
        SeriesIndex().rows_for(["a|b|"], [("a", "c", {})])
    assert str(exc.value) == "series key 'a|b|' does not match its metas"


def test_add_is_idempotent_and_keeps_the_group_current() -> None:
    idx = SeriesIndex()
    group = idx.group("api", "az=b")
    assert idx.add("api", "lat", {"az": "b"}) == 0
    assert idx.add("api", "lat", {"az": "b"}) == 0
    assert idx.add("api", "err", {"az": "b"}) == 1
    assert group == {"lat": 0, "err": 1}
    assert idx.group("api", "") == {}


def test_meta_returns_a_copy() -> None:
    idx = SeriesIndex()
    idx.add("api", "lat", {"az": "b"})
    idx.meta(0)[2]["az"] = "mutated"
    assert idx.meta(0) == ("api", "lat", {"az": "b"})


def test_index_export_load_round_trip_through_json() -> None:
    idx = SeriesIndex()
    idx.add("api", "lat", {"region": "eu", "az": "b"})
    idx.add("web|edge", "err", {"path": "/a,b=c"})
    idx.add("api", "err", {})
    back = SeriesIndex.load(orjson.loads(orjson.dumps(idx.export())))
    assert back.n == 3
    for row in range(3):
        assert (back.key(row), back.meta(row)) == (idx.key(row), idx.meta(row))
    assert back.group("api", "az=b,region=eu") == {"lat": 0}
    assert back.add("api", "new", {}) == 3


def test_load_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError) as exc:
        SeriesIndex.load({"version": 2, "series": []})
    assert str(exc.value) == "unsupported export version 2, expected 1"


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=6))
def test_label_part_is_the_label_part_of_the_series_key(labels: dict[str, str]) -> None:
    assert series_key("s", "m", labels) == f"s|m|{label_part(labels)}"


def test_push_keeps_points_of_one_row_in_order() -> None:
    rv = RecentValues(window=4)
    rv.push(np.array([0, 0, 1, 1, 1]), np.array([1.0, 2.0, 10.0, 11.0, 12.0]))
    rv.push(np.array([0]), np.array([3.0]))
    assert rv.last(0) == [1.0, 2.0, 3.0]
    assert rv.last(1) == [10.0, 11.0, 12.0]
    assert rv.last(2) == []
    assert rv.last(10_000) == []


def test_push_wraps_and_keeps_the_last_window() -> None:
    rv = RecentValues(window=3)
    rv.push([2, 2], [1.0, 2.0])
    rv.push([2, 2, 2, 2, 2], [3.0, 4.0, 5.0, 6.0, 7.0])  # more than the window in one call
    assert rv.last(2) == [5.0, 6.0, 7.0]
    rv.push([2], [8.0])
    assert rv.last(2) == [6.0, 7.0, 8.0]


def test_push_of_unsorted_rows_keeps_each_rows_order() -> None:
    rv = RecentValues(window=5)
    rv.push([1, 0, 1, 0], [10.0, 1.0, 11.0, 2.0])
    assert (rv.last(0), rv.last(1)) == ([1.0, 2.0], [10.0, 11.0])


def test_push_grows_by_doubling() -> None:
    rv = RecentValues(window=2, capacity=4)
    rv.push([0], [1.0])
    rv.push([4], [5.0])
    assert rv.capacity == 8
    rv.push([100], [7.0])
    assert rv.capacity == 101
    assert (rv.last(0), rv.last(4), rv.last(100)) == ([1.0], [5.0], [7.0])


def test_push_refuses_bad_input() -> None:
    rv = RecentValues(window=2)
    with pytest.raises(ValueError) as exc:
        rv.push([0, 1], [1.0])
    assert str(exc.value) == "rows and values must be 1-D of one length, got (2,), (1,)"
    with pytest.raises(ValueError) as exc:
        rv.push([-1, 0], [1.0, 2.0])
    assert str(exc.value) == "row must be >= 0, got -1"
    with pytest.raises(IndexError) as ierr:
        rv.last(-1)
    assert str(ierr.value) == "row must be >= 0, got -1"
    with pytest.raises(ValueError) as exc:
        RecentValues(window=0)
    assert str(exc.value) == "window must be >= 1, got 0"


def test_recent_arrays_round_trip_and_keep_pushing() -> None:
    rv = RecentValues(window=3, capacity=2)
    rv.push([0, 0, 0, 0, 3], [1.0, 2.0, 3.0, 4.0, 9.5])
    values, kept = rv.to_arrays()
    assert kept.tolist() == [3, 0, 0, 1]
    assert [row[:k] for row, k in zip(values.tolist(), kept.tolist(), strict=True)] == [
        [2.0, 3.0, 4.0], [], [], [9.5]]
    back = RecentValues.from_arrays(3, values, kept)
    assert [back.last(r) for r in range(4)] == [[2.0, 3.0, 4.0], [], [], [9.5]]
    back.push([0, 1], [5.0, 6.0])
    assert (back.last(0), back.last(1)) == ([3.0, 4.0, 5.0], [6.0])


def test_empty_recent_exports_no_rows() -> None:
    rv = RecentValues()
    rv.push([], [])
    values, kept = rv.to_arrays()
    assert (values.shape, kept.shape) == ((0, 30), (0,))


@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.floats(-1e6, 1e6)), max_size=40),
                max_size=6),
       st.integers(1, 7))
def test_push_matches_a_deque_per_row(calls: list[list[tuple[int, float]]], window: int) -> None:
    rv = RecentValues(window=window, capacity=1)
    model: dict[int, deque[float]] = {}
    for call in calls:
        rows = np.array([r for r, _ in call], dtype=np.intp)
        values = np.array([v for _, v in call])
        rv.push(rows, values)
        for r, v in call:
            model.setdefault(r, deque(maxlen=window)).append(v)
    for r in range(6):
        assert rv.last(r) == list(model.get(r, []))
    back = RecentValues.from_arrays(window, *rv.to_arrays())
    assert [back.last(r) for r in range(6)] == [rv.last(r) for r in range(6)]


def test_recent_arrays_round_trip_keeps_order_after_wrapping() -> None:
    rv = RecentValues(window=4)
    rv.push(np.array([0] * 6 + [2, 2]), np.arange(8, dtype=np.float64))
    values, kept = rv.to_arrays()
    assert kept.tolist() == [4, 0, 2]
    back = RecentValues.from_arrays(4, values, kept)
    assert [back.last(r) for r in range(3)] == [[2.0, 3.0, 4.0, 5.0], [], [6.0, 7.0]]


def test_recent_from_arrays_refuses_a_shape_that_does_not_fit_the_window() -> None:
    with pytest.raises(ValueError) as err:
        RecentValues.from_arrays(30, np.zeros((2, 20)), np.zeros(2, dtype=np.int64))
    assert str(err.value) == ("recent values of shape (2, 20) and (2,) do not fit a window "
                              "of 30")


def test_export_json_is_remade_when_a_series_is_added() -> None:
    idx = SeriesIndex()
    idx.add("api", "lat", {"az": "b"})
    first = idx.export_json()
    idx.add("api", "lat", {"az": "b"})  # known: nothing added, the same bytes
    assert idx.export_json() is first
    idx.add("api", "err", {})
    again = SeriesIndex.load_json(idx.export_json())
    assert [again.key(r) for r in range(again.n)] == ["api|lat|az=b", "api|err|"]
