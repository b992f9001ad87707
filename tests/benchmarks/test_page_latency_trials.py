"""page_latency_trials: schedule, statistics, targets, guard ratios and table."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.guard import check, load_floors
from benchmarks.page_latency_trials import THRESHOLD as PROM_THRESHOLD
from benchmarks.page_latency_trials import (
    WARM_TICKS,
    Params,
    assess,
    guard_skipped,
    live_schedule,
    percentile,
    ratio,
    render,
    series_value,
    stagger,
    step_spacing_s,
    summarize,
)


def test_quick_skips_the_slow_prometheus_setting() -> None:
    assert Params.quick().prom_settings == ("prom_fast",)
    assert Params().prom_settings == ("prom_default", "prom_fast")
    assert Params.quick().check() == Params.quick()


def test_stepped_and_normal_values_sit_on_either_side_of_the_rule_threshold() -> None:
    rng = np.random.default_rng(0)
    normal = [series_value(rng, False) for _ in range(2000)]
    stepped = [series_value(rng, True) for _ in range(2000)]
    assert max(normal) < PROM_THRESHOLD < min(stepped)


def test_stagger_puts_one_offset_in_each_slot_and_is_seeded() -> None:
    offs = stagger(10, 15.0, np.random.default_rng(5))
    assert [int(o // 1.5) for o in offs] == list(range(10))
    assert offs == stagger(10, 15.0, np.random.default_rng(5))
    assert offs != stagger(10, 15.0, np.random.default_rng(6))


def test_live_schedule_steps_each_series_in_its_own_slot_after_the_warm_ticks() -> None:
    schedule = live_schedule(10, 20, np.random.default_rng(5))
    spacing = step_spacing_s(20)
    assert all(0.0 <= phase < 1.0 for phase, _ in schedule)
    # Each step falls in its own slot of ``spacing`` seconds after the warm-up, whole ticks.
    for i, (_, tick) in enumerate(schedule):
        assert int(i * spacing) <= tick - WARM_TICKS < (i + 1) * spacing
    assert schedule == live_schedule(10, 20, np.random.default_rng(5))


@pytest.mark.parametrize(("storm", "spacing"), [(None, 2.0), (20, 60 / 18), (62, 2.0),
                                                (1, 60.0)])
def test_step_spacing_keeps_each_minute_under_the_storm_threshold(
        storm: int | None, spacing: float) -> None:
    assert step_spacing_s(storm) == pytest.approx(spacing)


def test_shipped_storm_threshold_is_never_reached() -> None:
    # Worst case: steps at the ends of slots; a minute then holds 60/spacing + 1 of them.
    assert 60 / step_spacing_s(20) + 1 <= 20


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 5.0), (90, 9.0), (99, 10.0),
                                             (100, 10.0)])
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(x) for x in range(10, 0, -1)], q) == expected


def test_summarize_without_pages_has_no_percentiles() -> None:
    assert summarize([], missed=3) == {"n": 0, "missed": 3, "p50_ms": None, "p99_ms": None,
                                       "max_ms": None}


def test_ratio_refuses_unmeasured_or_zero() -> None:
    assert ratio(10.0, 0.0) is None
    assert ratio(10.0, None) is None
    assert ratio(45_000.0, 30.0) == 1500.0


HOT = {"n": 6, "missed": 0, "p50_ms": 30.0, "p99_ms": 80.0, "max_ms": 80.0}
SLOW = {"n": 8, "missed": 0, "p50_ms": 45_000.0, "p99_ms": 58_000.0, "max_ms": 58_000.0}
FAST = {"n": 8, "missed": 0, "p50_ms": 600.0, "p99_ms": 1100.0, "max_ms": 1100.0}


def test_assess_full_run_measures_all_three_targets() -> None:
    targets, guard = assess({"hotpath": HOT, "prom_default": SLOW, "prom_fast": FAST}, {})
    assert [(t["name"], t["value"], t["target"], t["met"]) for t in targets] == [
        ("deviation_to_page_p99_ms", 80.0, 100.0, True),
        ("speedup_vs_prom_default", 1500.0, 300.0, True),
        ("speedup_vs_prom_fast", 20.0, 8.0, True),
    ]
    assert targets[1]["p99_ratio"] == 725.0
    assert guard == {"prom_default_over_hotpath": 1500.0, "prom_fast_over_hotpath": 20.0}


def test_assess_missed_hotpath_trial_fails_the_p99_target() -> None:
    targets, _ = assess({"hotpath": HOT | {"missed": 1}}, {})
    assert targets[0]["met"] is False
    assert targets[0]["note"] == "1 trial(s) never paged"


def test_assess_without_prometheus_reports_null_targets_and_no_guard() -> None:
    why = "not installed: /usr/bin/prometheus"
    targets, guard = assess({"hotpath": HOT}, {"prom_default": why, "prom_fast": why})
    assert [(t["value"], t["met"], t["note"]) for t in targets[1:]] == [(None, None, why)] * 2
    assert targets[0]["met"] is True
    assert guard == {}


def test_assess_blames_hotpath_when_it_never_paged() -> None:
    silent = {"n": 0, "missed": 6, "p50_ms": None, "p99_ms": None, "max_ms": None}
    targets, guard = assess({"hotpath": silent, "prom_default": SLOW, "prom_fast": FAST}, {})
    assert [(t["name"], t["met"], t["note"]) for t in targets] == [
        ("deviation_to_page_p99_ms", False, "6 trial(s) never paged"),
        ("speedup_vs_prom_default", None, "hotpath: no trial paged"),
        ("speedup_vs_prom_fast", None, "hotpath: no trial paged"),
    ]
    assert guard == {}


def test_assess_blames_prometheus_when_only_it_never_paged() -> None:
    silent = {"n": 0, "missed": 8, "p50_ms": None, "p99_ms": None, "max_ms": None}
    targets, _ = assess({"hotpath": HOT, "prom_fast": silent}, {"prom_default": "skipped"})
    assert targets[2]["note"] == "prom_fast: no trial paged"
    both, _ = assess({"hotpath": HOT | {"p50_ms": None}, "prom_fast": silent}, {})
    assert both[2]["note"] == "hotpath and prom_fast: no trial paged"


def test_guard_skipped_names_the_ratio_of_each_skipped_side_with_its_reason() -> None:
    assert guard_skipped({"prom_default": "skipped in --quick (about 1.5 min)",
                          "prom_fast": "not installed: /usr/bin/prometheus"}) == {
        "prom_default_over_hotpath": "skipped in --quick (about 1.5 min)",
        "prom_fast_over_hotpath": "not installed: /usr/bin/prometheus"}
    assert guard_skipped({}) == {}


def test_a_skipped_side_passes_the_repo_guard_and_a_silent_one_fails_it() -> None:
    why = "not installed: /usr/bin/prometheus"
    skipped = {"prom_default": why, "prom_fast": why}
    _, guard = assess({"hotpath": HOT}, skipped)
    doc = {"guard": guard, "guard_skipped": guard_skipped(skipped)}
    [c] = check({"page_latency": doc}, {"page_latency": load_floors()["page_latency"]})
    assert (c.name, c.ok, c.reason) == ("prom_fast_over_hotpath", True, f"skipped: {why}")
    silent = {"n": 0, "missed": 8, "p50_ms": None, "p99_ms": None, "max_ms": None}
    _, guard = assess({"hotpath": HOT, "prom_fast": silent}, {"prom_default": "skipped"})
    doc = {"guard": guard, "guard_skipped": guard_skipped({"prom_default": "skipped"})}
    [c] = check({"page_latency": doc}, {"page_latency": load_floors()["page_latency"]})
    assert (c.ok, c.reason) == (False, "not measured: the run produced no such ratio")


def test_render_shows_each_side_and_the_skipped_one() -> None:
    targets, guard = assess({"hotpath": HOT, "prom_fast": FAST}, {"prom_default": "skipped"})
    doc = {"machine": {"cores": 2, "python": "3.11"}, "targets": targets, "guard": guard,
           "results": {"hotpath": HOT, "prom_fast": FAST}, "skipped": {"prom_default": "skipped"}}
    lines = render(doc).splitlines()
    assert lines[1].split() == ["side", "n", "missed", "p50", "ms", "p99", "ms", "max", "ms",
                                "p50", "speed-up"]
    assert [ln.split()[0] for ln in lines[3:6]] == ["hotpath", "prom_fast", "prom_default"]
    assert lines[4].split()[-1] == "20.0x"
    assert lines[-1].strip() == ("speedup_vs_prom_fast: 20.0 (target 8.0 x (ratio of medians))"
                                 " met=True")
