"""The clock tick: invariants for every detector that implements it, and for the ensemble.

Tick-capable detectors are found the way the contract test finds detectors. Hypothesis
generates interleavings of point batches and ticks; the invariants: deterministic; an
export/load round trip continues identically; a row reported at a tick is not reported again
until a point of it arrives (one silence, one report); and a later point re-arms it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.absence import Absence
from detectors.base import Detector, TickOutput
from detectors.ensemble import Ensemble, EnsembleTick, default_ensemble
from detectors.errors import InputError
from detectors.ewma import EwmaZScore
from tests.detectors.helpers import discover

ALL = discover()
TICKING = [cls for cls in ALL if cls.tick is not Detector.tick]
SILENT = [cls for cls in ALL if cls.tick is Detector.tick]
ticking = pytest.mark.parametrize("cls", TICKING, ids=[c.name for c in TICKING])

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]
Op = tuple[str, Any]  # ("points", Batch) or ("tick", now)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[Op]]:
    """Rounds 20 s apart; each a batch of points in its first 12 s, or a tick up to 40 s on."""
    n_series = draw(st.integers(1, 4))
    ops: list[Op] = []
    for k in range(draw(st.integers(1, 10))):
        start = 20.0 * k
        if draw(st.booleans()):
            n = draw(st.integers(1, 12))
            rows = draw(st.lists(st.integers(0, n_series - 1), min_size=n, max_size=n))
            ts = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
            ops.append(
                ("points", (np.array(rows, np.intp), start + np.array(ts, np.float64), np.ones(n)))
            )
        else:
            ops.append(("tick", start + draw(st.integers(0, 40))))
    return n_series, ops


def roundtrip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **state)
    buf.seek(0)
    with np.load(buf) as loaded:
        return {k: loaded[k] for k in loaded.files}


def play(target: Any, ops: list[Op]) -> list[tuple[np.ndarray, ...]]:
    results = []
    for kind, arg in ops:
        results.append(tuple(target.update(*arg) if kind == "points" else target.tick(arg)))
    return results


def assert_same(a: list[tuple[np.ndarray, ...]], b: list[tuple[np.ndarray, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


def once_per_silence(ops: list[Op], reported: list[np.ndarray | None]) -> None:
    """Between two reports of one row at ticks, a point of that row must have arrived."""
    pending: set[int] = set()
    for (kind, arg), rows in zip(ops, reported, strict=True):
        if kind == "points":
            pending -= set(arg[0].tolist())
        else:
            assert rows is not None
            twice = pending & set(rows.tolist())
            assert not twice, f"reported twice in one silence: {twice}"
            pending |= set(rows.tolist())


def test_discovery_finds_the_absence_detector_and_the_others_ignore_ticks() -> None:
    assert [cls.name for cls in TICKING] == ["absence"]
    for cls in SILENT:
        assert cls.example(2).tick(1e9) is None


@ticking
@settings(max_examples=80, deadline=None)
@given(scenarios())
def test_ticks_are_deterministic_and_typed(
    cls: type[Detector], scenario: tuple[int, list[Op]]
) -> None:
    n_series, ops = scenario
    a, b = cls.example(n_series), cls.example(n_series)
    results = play(a, ops)
    assert_same(results, play(b, ops))
    for (kind, _), result in zip(ops, results, strict=True):
        if kind == "tick":
            out = TickOutput(*result)
            assert out.rows.dtype == np.intp and out.score.dtype == np.float64
            assert (np.diff(out.rows) > 0).all() and ((out.rows >= 0) & (out.rows < n_series)).all()
            assert ((out.score >= 0.0) & (out.score <= 1.0)).all()
            assert len(out.baseline) == len(out.deviation) == len(out.rows)


@ticking
@settings(max_examples=80, deadline=None)
@given(scenarios(), st.integers(0, 10))
def test_a_round_trip_between_ticks_continues_identically(
    cls: type[Detector], scenario: tuple[int, list[Op]], split: int
) -> None:
    n_series, ops = scenario
    original = cls.example(n_series)
    play(original, ops[:split])
    restored = cls.example(1)
    restored.load_state(roundtrip(original.export_state()))
    assert_same(play(restored, ops[split:]), play(original, ops[split:]))


@ticking
@settings(max_examples=80, deadline=None)
@given(scenarios())
def test_one_silence_is_reported_once_and_a_later_point_rearms(
    cls: type[Detector], scenario: tuple[int, list[Op]]
) -> None:
    n_series, ops = scenario
    det = cls.example(n_series)
    results = play(det, ops)
    reported = [r[0] if kind == "tick" else None for (kind, _), r in zip(ops, results, strict=True)]
    once_per_silence(ops, reported)
    # every row, given two points after everything so far, is reported by a late tick
    late = 1000.0
    rows = np.repeat(np.arange(n_series), 2)
    det.update(rows, np.tile([late, late + 1.0], n_series), np.ones(2 * n_series))
    first = det.tick(1e9)
    assert first is not None and first.rows.tolist() == list(range(n_series))
    again = det.tick(2e9)
    assert again is not None and again.rows.tolist() == []


def example_ensemble(n_series: int) -> Ensemble:
    return Ensemble([cls.example(n_series) for cls in ALL], realert_s=4.0)


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(0, 10))
def test_ensemble_ticks_are_deterministic_round_trip_and_alert_once_per_silence(
    scenario: tuple[int, list[Op]], split: int
) -> None:
    n_series, ops = scenario
    a, b = example_ensemble(n_series), example_ensemble(n_series)
    results = play(a, ops)
    assert_same(results, play(b, ops))
    alerted = [
        EnsembleTick(*r).rows[EnsembleTick(*r).alert] if kind == "tick" else None
        for (kind, _), r in zip(ops, results, strict=True)
    ]
    once_per_silence(ops, alerted)
    original = example_ensemble(n_series)
    play(original, ops[:split])
    restored = example_ensemble(1)
    restored.load_state(roundtrip(original.export_state()))
    assert_same(play(restored, ops[split:]), play(original, ops[split:]))


def watched(n_series: int = 2, **params: Any) -> Ensemble:
    ens = Ensemble([EwmaZScore(warmup=3), Absence(min_silence_s=0.0)], **params)
    ens.resize(n_series)
    ts = np.arange(0.0, 60.0, 10.0)  # every series every 10 s up to ts 50
    ens.update(np.repeat(np.arange(n_series), 6), np.tile(ts, n_series), np.ones(6 * n_series))
    return ens


def test_a_silence_alerts_once_names_absence_and_clears_when_the_series_is_back() -> None:
    ens = watched()
    ens.update([1], [60.0], [1.0])
    out = ens.tick(105.0)  # row 0: 55 s silent, threshold 50
    assert isinstance(out, EnsembleTick)
    assert out.rows.tolist() == [0] and out.alert.tolist() == [True]
    assert out.agreed.tolist() == [[False, True]] and out.top.tolist() == [1]
    assert out.scores[0, 0] == 0.0 and out.confidence[0] == out.scores[0, 1] > 0.5
    assert out.since.tolist() == [105.0] and out.active.tolist() == [True]
    assert out.baseline.tolist() == [10.0] and out.deviation.tolist() == [5.5]
    assert ens.tick(106.0).rows.tolist() == []
    assert ens.tick(1000.0).rows.tolist() == [1]  # row 1 in its turn, once
    back = ens.update([0], [1010.0], [1.0])  # a normal value: the series recovers
    assert back.active.tolist() == [False] and back.alert.tolist() == [False]
    again = ens.tick(2000.0)
    assert again.rows.tolist() == [0] and again.alert.tolist() == [True]


def test_a_silence_of_an_active_series_follows_the_realert_interval() -> None:
    ens = watched(1, realert_s=300.0)
    hot = ens.update([0], [60.0], [1e6])  # the value anomaly opens the incident at 60
    assert hot.alert.tolist() == [True]
    quiet = ens.tick(200.0)  # silent past 50 s, but the incident alerted 140 s ago
    assert quiet.rows.tolist() == [0] and quiet.alert.tolist() == [False]
    assert quiet.active.tolist() == [True] and quiet.since.tolist() == [60.0]


def test_the_tick_state_survives_a_restart_of_the_ensemble() -> None:
    ens = watched()
    assert ens.tick(200.0).alert.tolist() == [True, True]
    restarted = Ensemble([EwmaZScore(warmup=3), Absence(min_silence_s=0.0)])
    restarted.load_state(roundtrip(ens.export_state()))
    assert restarted.tick(300.0).rows.tolist() == []


class EarlyAbsence(Absence):
    """A second ticking detector (at 2 intervals) to see how the ensemble merges reports."""

    name = "early_absence"


def test_reports_of_several_detectors_are_merged_by_row() -> None:
    ens = Ensemble([Absence(min_silence_s=0.0), EarlyAbsence(k=2.0, min_silence_s=0.0)])
    ens.resize(3)
    ts = np.arange(0.0, 60.0, 10.0)
    ens.update(np.repeat([0, 1, 2], 6), np.tile(ts, 3), np.ones(18))
    ens.update([1, 2], [100.0, 150.0], [1.0, 1.0])
    # at 160: row 0 is 110 s silent (both fire), row 1 60 s (only the early one), row 2 10 s
    out = ens.tick(160.0)
    assert out.rows.tolist() == [0, 1]
    assert out.agreed.tolist() == [[True, True], [False, True]]
    assert out.top.tolist() == [1, 1]  # 110 s over a 20 s threshold beats 110 s over 50 s
    assert out.scores[1, 0] == 0.0 and out.alert.tolist() == [True, True]
    later = ens.tick(200.0)  # row 1 now silent for the main one too (already alerted); row 2
    # for the early one
    assert later.rows.tolist() == [1, 2] and later.alert.tolist() == [False, True]


def test_an_ensemble_without_ticking_detectors_returns_an_empty_tick() -> None:
    ens = default_ensemble()
    ens.resize(3)
    out = ens.tick(1e9)
    assert out.rows.dtype == np.intp and out.rows.tolist() == []
    assert out.scores.shape == (0, 2) and out.agreed.shape == (0, 2)
    assert [len(a) for a in out] == [0] * len(out)


def test_a_clock_that_is_not_finite_is_refused() -> None:
    with pytest.raises(InputError) as err:
        default_ensemble().tick(float("nan"))
    assert str(err.value) == "now must be finite, got nan"
