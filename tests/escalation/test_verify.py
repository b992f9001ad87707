"""Verification after acting: the recovery condition, the streak, the window, the tracker."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.catalogue import Recovery, VerifySpec
from escalation.verdict import Check, Stage
from escalation.verify import (
    NO_PROGRESS,
    Progress,
    Verifier,
    Watch,
    advance,
    describe,
    expire,
    recovered,
)

T0 = 1764132000.0  # 2025-11-26T04:40:00Z
KEY = "checkout|http_latency_p99_ms|region=eu"
NEAR = VerifySpec(window_s=300.0, condition=Recovery.NEAR_BASELINE, threshold=0.25, for_points=3)


def watch(spec: VerifySpec = NEAR, *, rid: str = "req_1", key: str = KEY,
          baseline: float = 200.0, started_at: float = T0, action: str = "restart_pods",
          rollback: str | None = "undo_restart") -> Watch:
    return Watch(rid, f"rule:{rid}", key, action, "checkout", "checkout/pod-1", rollback,
                 spec, baseline, started_at, finding_id="f" + rid)


def arr(*xs: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array(xs, dtype=np.float64)


UP = np.nextafter  # the next float up/down from a boundary: just outside it


@pytest.mark.parametrize(("spec", "baseline", "value", "expected"), [
    # NEAR_BASELINE: |v - b| <= threshold * max(|b|, 1e-9), both ends inclusive.
    (NEAR, 200.0, 250.0, True),
    (NEAR, 200.0, 150.0, True),
    (NEAR, 200.0, UP(250.0, math.inf), False),
    (NEAR, 200.0, UP(150.0, -math.inf), False),
    (NEAR, -200.0, -150.0, True),                 # a negative baseline scales by |b|
    (NEAR, -200.0, -140.0, False),
    (NEAR, 0.0, 0.0, True),                       # zero baseline: tolerance 0.25e-9
    (NEAR, 0.0, 0.25e-9, True),
    (NEAR, 0.0, 1e-9, False),
    (NEAR, 200.0, math.nan, False),
    # BELOW: v <= threshold.
    (VerifySpec(60.0, Recovery.BELOW, 0.01), math.nan, 0.01, True),
    (VerifySpec(60.0, Recovery.BELOW, 0.01), math.nan, UP(0.01, 1.0), False),
    (VerifySpec(60.0, Recovery.BELOW, 0.01), math.nan, math.nan, False),
    (VerifySpec(60.0, Recovery.BELOW, 0.01), math.nan, -math.inf, True),
    # ABOVE: v >= threshold.
    (VerifySpec(60.0, Recovery.ABOVE, 0.99), math.nan, 0.99, True),
    (VerifySpec(60.0, Recovery.ABOVE, 0.99), math.nan, UP(0.99, 0.0), False),
    (VerifySpec(60.0, Recovery.ABOVE, 0.99), math.nan, math.nan, False),
])
def test_recovery_condition_at_its_boundary(spec: VerifySpec, baseline: float, value: float,
                                            expected: bool) -> None:
    assert recovered(spec, baseline, arr(value)).tolist() == [expected]


def test_recovered_is_vectorised_and_bool() -> None:
    got = recovered(NEAR, 200.0, arr(100.0, 200.0, 300.0, math.nan, 249.0))
    assert got.dtype == np.bool_
    assert got.tolist() == [False, True, False, False, True]


def test_describe_each_condition() -> None:
    assert describe(NEAR, 200.0) == "within 25% of baseline 200"
    assert describe(VerifySpec(1.0, Recovery.BELOW, 0.5), math.nan) == "at or below 0.5"
    assert describe(VerifySpec(1.0, Recovery.ABOVE, 1e6), math.nan) == "at or above 1e+06"


def test_recovered_after_for_points_in_a_row_with_exact_check() -> None:
    w = watch()
    p, check = advance(w, NO_PROGRESS, arr(T0 + 10, T0 + 20, T0 + 30, T0 + 42, T0 + 50),
                       arr(400.0, 250.0, 180.0, 210.0, 900.0))
    assert p == Progress(streak=3, last_ts=T0 + 42, points=4, last_value=210.0)
    assert check == Check(True, Stage.VERIFY, "recovered",
                          "3 points within 25% of baseline 200 by 2025-11-26T04:40:42Z, "
                          "42 s after acting", {
                              "recovered_at": T0 + 42, "request_id": "req_1", "series": KEY,
                              "action": "restart_pods", "target": "checkout/pod-1",
                              "condition": "near_baseline", "threshold": 0.25,
                              "baseline": 200.0, "for_points": 3, "window_s": 300.0,
                              "started_at": T0, "deadline": T0 + 300, "points": 4,
                              "streak": 3, "last_ts": T0 + 42, "last_value": 210.0})


def test_a_bad_point_breaks_the_streak() -> None:
    w = watch()
    p, check = advance(w, NO_PROGRESS, arr(T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5),
                       arr(200.0, 200.0, 500.0, 200.0, 200.0))
    assert check is None
    assert p == Progress(streak=2, last_ts=T0 + 5, points=5, last_value=200.0)
    p, check = advance(w, p, arr(T0 + 6), arr(201.0))
    assert check is not None and check.code == "recovered"
    assert check.detail == ("3 points within 25% of baseline 200 by 2025-11-26T04:40:06Z, "
                            "6 s after acting")


def test_a_nan_point_breaks_the_streak() -> None:
    w = watch(VerifySpec(300.0, Recovery.BELOW, 0.01, for_points=2))
    p, check = advance(w, NO_PROGRESS, arr(T0 + 1, T0 + 2, T0 + 3), arr(0.0, math.nan, 0.0))
    assert check is None
    assert (p.streak, p.points) == (1, 3)


def test_the_streak_carries_across_batches_and_points_are_counted_once() -> None:
    w = watch()
    p, check = advance(w, NO_PROGRESS, arr(T0 + 1, T0 + 2), arr(200.0, 200.0))
    assert check is None and p.streak == 2
    # The same batch replayed (at-least-once input) changes nothing.
    assert advance(w, p, arr(T0 + 1, T0 + 2), arr(200.0, 200.0)) == (p, None)
    # An older point arriving late is ignored too, even a bad one.
    assert advance(w, p, arr(T0 + 1.5), arr(999.0)) == (p, None)
    p, check = advance(w, p, arr(T0 + 2, T0 + 2.5), arr(200.0, 200.0))
    assert check is not None and check.code == "recovered" and p.points == 3


def test_points_at_or_before_acting_do_not_count() -> None:
    w = watch(VerifySpec(300.0, Recovery.BELOW, 10.0, for_points=1))
    assert advance(w, NO_PROGRESS, arr(T0 - 5, T0), arr(1.0, 1.0)) == (NO_PROGRESS, None)
    p, check = advance(w, NO_PROGRESS, arr(T0, T0 + 0.25), arr(1.0, 1.0))
    assert check is not None
    assert check.detail == ("1 point at or below 10 by 2025-11-26T04:40:00.250Z, "
                            "0.25 s after acting")
    assert p.points == 1


def test_unsorted_batch_with_duplicate_timestamps() -> None:
    w = watch()
    # Sorted: +1 bad, +2 good (first of the duplicates), +3 good, +4 good.
    p, check = advance(w, NO_PROGRESS, arr(T0 + 3, T0 + 1, T0 + 2, T0 + 2, T0 + 4),
                       arr(200.0, 900.0, 200.0, 900.0, 200.0))
    assert check is not None and check.code == "recovered"
    assert p == Progress(streak=3, last_ts=T0 + 4, points=4, last_value=200.0)


def test_points_past_the_deadline_do_not_count_and_end_the_watch() -> None:
    w = watch()
    p, check = advance(w, NO_PROGRESS, arr(T0 + 290, T0 + 295, T0 + 300, T0 + 301),
                       arr(200.0, 200.0, 200.0, 200.0))
    assert p == Progress(streak=2, last_ts=T0 + 295, points=2, last_value=200.0)
    assert check == Check(False, Stage.VERIFY, "no_recovery",
                          "restart_pods on checkout/pod-1: no recovery within 300 s of acting; "
                          "last value 200 at 2025-11-26T04:44:55Z (2 of 3 points in a row "
                          "within 25% of baseline 200)", {
                              "expired_at": T0 + 300, "request_id": "req_1", "series": KEY,
                              "action": "restart_pods", "target": "checkout/pod-1",
                              "condition": "near_baseline", "threshold": 0.25,
                              "baseline": 200.0, "for_points": 3, "window_s": 300.0,
                              "started_at": T0, "deadline": T0 + 300, "points": 2,
                              "streak": 2, "last_ts": T0 + 295, "last_value": 200.0})


def test_recovery_inside_the_window_wins_over_later_points_in_the_same_batch() -> None:
    w = watch(VerifySpec(300.0, Recovery.ABOVE, 0.99, for_points=1))
    _, check = advance(w, NO_PROGRESS, arr(T0 + 400, T0 + 299.5), arr(0.5, 0.995))
    assert check is not None and check.code == "recovered"


def test_expire_exactly_at_the_deadline() -> None:
    w = watch()
    p = Progress(streak=0, last_ts=T0 + 120, points=7, last_value=480.0)
    assert expire(w, p, T0 + 299.999) is None
    check = expire(w, p, T0 + 300)
    assert check is not None and not check.ok and check.stage is Stage.VERIFY
    assert (check.code, check.detail) == (
        "no_recovery",
        "restart_pods on checkout/pod-1: no recovery within 300 s of acting; last value 480 at "
        "2025-11-26T04:42:00Z (0 of 3 points in a row within 25% of baseline 200)")
    assert check.state["expired_at"] == T0 + 300


def test_expire_without_any_point() -> None:
    check = expire(watch(VerifySpec(60.0, Recovery.BELOW, 0.01)), NO_PROGRESS, T0 + 61)
    assert check is not None
    assert check.detail == ("restart_pods on checkout/pod-1: no recovery within 60 s of acting; "
                            f"no point of {KEY} arrived in the window (needed 3 in a row at or "
                            "below 0.01)")
    assert check.state["last_ts"] is None and check.state["last_value"] is None


@pytest.mark.parametrize(("spec", "baseline", "started_at", "message"), [
    (VerifySpec(0.0), 1.0, T0, "watch req_1: verify window_s must be a positive finite number "
                               "of seconds, got 0.0"),
    (VerifySpec(math.inf), 1.0, T0, "watch req_1: verify window_s must be a positive finite "
                                    "number of seconds, got inf"),
    (VerifySpec(60.0, for_points=0), 1.0, T0, "watch req_1: verify for_points must be >= 1, "
                                              "got 0"),
    (VerifySpec(60.0, threshold=math.nan), 1.0, T0, "watch req_1: verify threshold must be "
                                                     "finite, got nan"),
    (VerifySpec(60.0), math.nan, T0, "watch req_1: condition near_baseline needs a finite "
                                     "baseline, got nan"),
    (VerifySpec(60.0), 1.0, math.nan, "watch req_1: started_at must be finite, got nan"),
])
def test_invalid_watches_are_refused(spec: VerifySpec, baseline: float, started_at: float,
                                     message: str) -> None:
    with pytest.raises(ValueError) as err:
        watch(spec, baseline=baseline, started_at=started_at)
    assert str(err.value) == message


def test_watch_and_progress_round_trip() -> None:
    w = watch(VerifySpec(90.0, Recovery.ABOVE, 0.5, 2), baseline=math.nan, rollback=None)
    d = w.to_dict()
    assert d["baseline"] is None and d["spec"]["condition"] == "above"
    back = Watch.from_dict(d)
    assert back.to_dict() == d and back.deadline == T0 + 90 and math.isnan(back.baseline)
    assert Watch.from_dict(watch().to_dict()) == watch()
    assert NO_PROGRESS.to_dict() == {"streak": 0, "last_ts": None, "points": 0,
                                     "last_value": None}
    restored = Progress.from_dict(NO_PROGRESS.to_dict())
    assert restored.last_ts == -math.inf and math.isnan(restored.last_value)
    p = Progress(2, T0 + 5, 4, 210.5)
    assert Progress.from_dict(p.to_dict()) == p


# --- the tracker ---------------------------------------------------------------------------


def test_two_watches_on_one_series_finish_separately() -> None:
    v = Verifier()
    fast = watch(VerifySpec(300.0, Recovery.BELOW, 250.0, 1), rid="req_fast")
    slow = watch(VerifySpec(60.0, Recovery.BELOW, 250.0, 3), rid="req_slow",
                 action="scale_up", rollback=None)
    assert v.watch(fast) and v.watch(slow)
    assert v.watched_keys() == frozenset({KEY}) and len(v) == 2
    done = v.feed(KEY, arr(T0 + 10), arr(240.0))
    assert [(w.request_id, c.code) for w, c in done] == [("req_fast", "recovered")]
    assert len(v) == 1 and v.watched_keys() == frozenset({KEY})
    assert v.feed(KEY, arr(T0 + 20, T0 + 30), arr(240.0, 300.0)) == []
    [(w, check)] = v.feed(KEY, arr(T0 + 61), arr(100.0))
    assert (w, check.code) == (slow, "no_recovery")
    assert check.detail == ("scale_up on checkout/pod-1: no recovery within 60 s of acting; "
                            "last value 300 at 2025-11-26T04:40:30Z (0 of 3 points in a row "
                            "at or below 250)")
    assert len(v) == 0 and v.watched_keys() == frozenset()


def test_watch_is_idempotent_by_request_id() -> None:
    v = Verifier()
    w = watch()
    assert v.watch(w)
    v.feed(KEY, arr(T0 + 1), arr(200.0))
    # A second watch for the same request (a replay) keeps the first and its progress.
    assert not v.watch(watch(VerifySpec(10.0)))
    assert v.watches() == [(w, Progress(1, T0 + 1, 1, 200.0))]


def test_feed_batch_looks_only_at_watched_series() -> None:
    v = Verifier()
    other = "payments|error_ratio|"
    v.watch(watch(VerifySpec(300.0, Recovery.BELOW, 0.01, 2), rid="req_a", key=other))
    v.watch(watch(rid="req_b"))
    v.watch(watch(rid="req_c", key="gone|x|"))           # not in this partition's index
    rows_of = {KEY: 4, other: 1, "noise|a|": 0, "noise|b|": 2}
    rng = np.random.default_rng(7)
    n = 2000
    rows = rng.choice(np.array([0, 2, 3]), size=n)          # unwatched series, many points
    ts = T0 + rng.uniform(1, 250, size=n)
    values = rng.uniform(0, 1000, size=n)
    # The watched series' points, mixed in out of order.
    rows = np.concatenate([rows, [1, 4, 1, 4, 4]]).astype(np.intp)
    ts = np.concatenate([ts, T0 + arr(20, 12, 10, 11, 13)])
    values = np.concatenate([values, arr(0.001, 199, 0.5, 205, 240)])
    order = rng.permutation(rows.size)
    done = v.feed_batch(rows[order], ts[order], values[order], rows_of.get)
    assert [(w.request_id, c.code, c.state["last_ts"]) for w, c in done] == [
        ("req_b", "recovered", T0 + 13)]
    assert {w.request_id: p for w, p in v.watches()} == {
        "req_a": Progress(1, T0 + 20, 2, 0.001),
        "req_c": NO_PROGRESS,
    }


def test_expire_removes_only_watches_past_their_deadline() -> None:
    v = Verifier()
    v.watch(watch(rid="req_short", started_at=T0))
    v.watch(watch(VerifySpec(900.0), rid="req_long", key="api|lat|", started_at=T0))
    assert v.expire(T0 + 299) == []
    done = v.expire(T0 + 300)
    assert [(w.request_id, c.code) for w, c in done] == [("req_short", "no_recovery")]
    assert v.watched_keys() == frozenset({"api|lat|"})
    assert v.feed(KEY, arr(T0 + 301), arr(200.0)) == []
    assert [w.request_id for w, _ in v.expire(T0 + 900)] == ["req_long"] and len(v) == 0


def test_drain_changed_reports_moved_progress_once() -> None:
    v = Verifier()
    a, b = watch(rid="req_a"), watch(rid="req_b", key="api|lat|")
    v.watch(a)
    v.watch(b)
    v.feed(KEY, arr(T0 + 1), arr(200.0))
    v.feed("api|lat|", arr(T0 - 1), arr(200.0))            # before acting: no progress
    assert v.drain_changed() == [(a, Progress(1, T0 + 1, 1, 200.0))]
    assert v.drain_changed() == []
    v.feed(KEY, arr(T0 + 2), arr(200.0))
    assert v.forget("req_a") and not v.forget("req_a")
    assert v.drain_changed() == [] and len(v) == 1


# --- batching never changes the verdict ----------------------------------------------------


def _reference(w: Watch, ts: list[float], values: list[float]) -> tuple[str | None, float]:
    """One point at a time, in time order: the plain-Python meaning of a watch."""
    streak, last = 0, -math.inf
    for t, x in sorted(zip(ts, values, strict=True), key=lambda tx: tx[0]):
        if t <= max(w.started_at, last):
            continue
        if t >= w.deadline:
            return "no_recovery", t
        last = t
        streak = streak + 1 if bool(recovered(w.spec, w.baseline, arr(x))[0]) else 0
        if streak >= w.spec.for_points:
            return "recovered", t
    return None, last


@settings(max_examples=150, deadline=None)
@given(
    points=st.lists(st.tuples(st.integers(-20, 120), st.sampled_from([150.0, 200.0, 260.0])),
                    max_size=40, unique_by=lambda p: p[0]),
    cuts=st.lists(st.integers(0, 40), max_size=5),
    for_points=st.integers(1, 4),
)
def test_any_split_into_batches_gives_the_one_by_one_verdict(
        points: list[tuple[int, float]], cuts: list[int], for_points: int) -> None:
    w = watch(VerifySpec(100.0, Recovery.NEAR_BASELINE, 0.25, for_points), started_at=0.0)
    points = sorted(points)
    ts = [float(t) for t, _ in points]
    values = [x for _, x in points]
    want = _reference(w, ts, values)
    bounds = [0, *sorted(c for c in cuts if c <= len(points)), len(points)]
    p, got = NO_PROGRESS, None
    # Batches come in time order (one series stays on one partition, in order); inside a
    # batch the points are reversed, which advance must not care about.
    for lo, hi in itertools.pairwise(bounds):
        p, got = advance(w, p, arr(*ts[lo:hi][::-1]), arr(*values[lo:hi][::-1]))
        if got is not None:
            break
    if got is None:
        assert want == (None, p.last_ts)
    else:
        at = got.state["recovered_at" if got.ok else "expired_at"]
        assert (got.code, at) == want
