"""Every Detector in the package, found automatically, put through the same invariants.

A new detector is tested the moment it exists: its ``example(n_series)`` gives a configured
instance, and hypothesis generates batches (several series, several points per series, ts
with ties, any input order).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import Detector, DetectorOutput
from detectors.ensemble import Ensemble
from detectors.waves import plan_waves
from tests.detectors.helpers import discover

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


DETECTORS = discover()
by_name = pytest.mark.parametrize("cls", DETECTORS, ids=[c.name for c in DETECTORS])


def test_discovery_finds_every_known_detector_with_a_unique_name() -> None:
    names = [cls.name for cls in DETECTORS]
    assert {"ewma", "static"} <= set(names)
    assert len(names) == len(set(names))


@st.composite
def batches(draw: st.DrawFn, n_series: int, max_points: int = 40) -> Batch:
    n = draw(st.integers(0, max_points))
    rows = draw(st.lists(st.integers(0, n_series - 1), min_size=n, max_size=n))
    # few distinct timestamps, so ties inside one series and across series are common
    ts = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    values = draw(
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=n, max_size=n
        )
    )
    return (
        np.array(rows, dtype=np.intp),
        np.array(ts, dtype=np.float64) + draw(st.sampled_from([0.0, 100.0])),
        np.array(values, dtype=np.float64),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, Batch, Batch]:
    n_series = draw(st.integers(1, 4))
    return n_series, draw(batches(n_series)), draw(batches(n_series))


def one_at_a_time(update: Any, batch: Batch) -> tuple[np.ndarray, ...]:
    """Feed points singly in ts order (stable), reassembled in input order."""
    rows, ts, values = batch
    parts: list[Any] = [None] * len(rows)
    for i in np.argsort(ts, kind="stable"):
        parts[i] = update(rows[i : i + 1], ts[i : i + 1], values[i : i + 1])
    if not parts:
        return tuple(update(rows, ts, values))
    return tuple(np.concatenate([getattr(p, f) for p in parts]) for f in parts[0]._fields)


def assert_same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0.0)
        else:
            np.testing.assert_array_equal(x, y)


def roundtrip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Through np.savez, as the runtime stores state in Redis."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **state)
    buf.seek(0)
    with np.load(buf) as loaded:
        return {k: loaded[k] for k in loaded.files}


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_one_batch_equals_points_one_at_a_time(
    cls: type[Detector], scenario: tuple[int, Batch, Batch]
) -> None:
    n_series, first, second = scenario
    batched, single = cls.example(n_series), cls.example(n_series)
    for batch in (first, second):
        assert_same(tuple(batched.update(*batch)), one_at_a_time(single.update, batch))


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_a_shared_plan_gives_the_same_output_as_planning_alone(
    cls: type[Detector], scenario: tuple[int, Batch, Batch]
) -> None:
    n_series, first, second = scenario
    planned, alone = cls.example(n_series), cls.example(n_series)
    for rows, ts, values in (first, second):
        plan = plan_waves(rows, ts)
        assert_same(
            tuple(planned.update(rows, ts, values, plan)), tuple(alone.update(rows, ts, values))
        )


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_export_load_round_trip_then_continue_is_identical(
    cls: type[Detector], scenario: tuple[int, Batch, Batch]
) -> None:
    n_series, first, second = scenario
    original = cls.example(n_series)
    original.update(*first)
    restored = cls.example(1)  # a different size: load must bring its own
    restored.load_state(roundtrip(original.export_state()))
    assert restored.n_series == n_series
    assert_same(tuple(restored.update(*second)), tuple(original.update(*second)))


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_same_input_gives_the_same_output(
    cls: type[Detector], scenario: tuple[int, Batch, Batch]
) -> None:
    n_series, first, second = scenario
    a, b = cls.example(n_series), cls.example(n_series)
    for batch in (first, second):
        assert_same(tuple(a.update(*batch)), tuple(b.update(*batch)))


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_finite_input_gives_aligned_float_output_with_score_in_unit_interval(
    cls: type[Detector], scenario: tuple[int, Batch, Batch]
) -> None:
    n_series, first, second = scenario
    det = cls.example(n_series)
    for batch in (first, second):
        out = det.update(*batch)
        assert isinstance(out, DetectorOutput)
        for arr in out:
            assert arr.dtype == np.float64 and arr.shape == batch[0].shape
        assert np.isfinite(out.score).all()
        assert ((out.score >= 0.0) & (out.score <= 1.0)).all()


@by_name
@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(1, 70))
def test_resize_keeps_old_rows_and_starts_new_rows_cold(
    cls: type[Detector], scenario: tuple[int, Batch, Batch], extra: int
) -> None:
    n_series, first, second = scenario
    kept, grown = cls.example(n_series), cls.example(n_series)
    kept.update(*first)
    grown.update(*first)
    grown.resize(n_series + extra)
    assert grown.n_series == n_series + extra
    before, after = kept.export_state(), grown.export_state()
    for key, field in cls.state_fields.items():
        np.testing.assert_array_equal(after[key][:n_series], before[key])
        np.testing.assert_array_equal(after[key][n_series:], np.full(extra, field.fill))
    assert_same(tuple(grown.update(*second)), tuple(kept.update(*second)))


# The ensemble is not a Detector (it returns alerts, not scores), but its hysteresis is state
# of the same kind and must keep the same invariants.


def example_ensemble(n_series: int) -> Ensemble:
    # realert_s inside the generated ts range, so re-alerts happen too
    return Ensemble([cls.example(n_series) for cls in DETECTORS], realert_s=4.0)


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_ensemble_batch_equals_points_one_at_a_time(scenario: tuple[int, Batch, Batch]) -> None:
    n_series, first, second = scenario
    batched, single = example_ensemble(n_series), example_ensemble(n_series)
    for batch in (first, second):
        assert_same(tuple(batched.update(*batch)), one_at_a_time(single.update, batch))


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_ensemble_round_trip_then_continue_is_identical(
    scenario: tuple[int, Batch, Batch],
) -> None:
    n_series, first, second = scenario
    original = example_ensemble(n_series)
    original.update(*first)
    restored = example_ensemble(1)
    restored.load_state(roundtrip(original.export_state()))
    assert restored.n_series == n_series
    assert_same(tuple(restored.update(*second)), tuple(original.update(*second)))


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(1, 70))
def test_ensemble_resize_keeps_old_rows(
    scenario: tuple[int, Batch, Batch], extra: int
) -> None:
    n_series, first, second = scenario
    kept, grown = example_ensemble(n_series), example_ensemble(n_series)
    kept.update(*first)
    grown.update(*first)
    grown.resize(n_series + extra)
    out = grown.update(*second)
    assert_same(tuple(out), tuple(kept.update(*second)))
    assert np.isfinite(out.confidence).all()
    assert ((out.confidence >= 0.0) & (out.confidence <= 1.0)).all()
