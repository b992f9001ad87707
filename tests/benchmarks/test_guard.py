"""The CI guard's floors file and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.guard import FLOORS, Check, FloorsError, check, load_floors


def test_the_repo_floors_cover_every_benchmark_with_positive_ratios() -> None:
    floors = load_floors(FLOORS)
    assert sorted(floors) == ["detectors", "latency", "page_latency", "scaleout", "throughput"]
    assert all(v > 0 for table in floors.values() for v in table.values())


@pytest.mark.parametrize(("text", "error"), [
    ("[throughput]\npoint_ratio_to_raw = 0\n",
     "throughput.point_ratio_to_raw = 0 must be a number > 0"),
    ("[throughput]\npoint_ratio_to_raw = 'high'\n",
     "throughput.point_ratio_to_raw = 'high' must be a number > 0"),
    ("throughput = 3\n", "[throughput] must be a table of ratio = floor"),
])
def test_a_malformed_floor_is_refused_naming_the_entry(tmp_path: Path, text: str,
                                                      error: str) -> None:
    path = tmp_path / "floors.toml"
    path.write_text(text)
    with pytest.raises(FloorsError) as err:
        load_floors(path)
    assert str(err.value) == f"{path}: {error}"


def test_unreadable_toml_is_refused_with_the_parser_message(tmp_path: Path) -> None:
    path = tmp_path / "floors.toml"
    path.write_text("[throughput\n")
    with pytest.raises(FloorsError) as err:
        load_floors(path)
    assert str(err.value) == (f"{path}: Expected ']' at the end of a table declaration "
                              "(at line 1, column 12)")


def test_check_judges_each_floor_and_skips_benchmarks_not_run() -> None:
    floors = {"throughput": {"point_ratio_to_raw": 0.27, "batch100_ratio_to_raw": 0.05},
              "scaleout": {"two_over_one": 1.2}, "latency": {"kept_up_at_90pct": 0.9}}
    docs = {"throughput": {"guard": {"point_ratio_to_raw": 0.2, "batch100_ratio_to_raw": 0.08}},
            "scaleout": {},  # ran but failed: its ratio is missing
            "latency": None}  # not selected
    got = check(docs, floors)
    assert [(c.benchmark, c.name, c.ok, c.reason) for c in got] == [
        ("throughput", "point_ratio_to_raw", False, "below its floor: 0.2 < 0.27"),
        ("throughput", "batch100_ratio_to_raw", True, "ok: 0.08 >= 0.05"),
        ("scaleout", "two_over_one", False, "not measured: the run produced no such ratio"),
    ]


def test_a_ratio_equal_to_its_floor_passes() -> None:
    assert Check("scaleout", "two_over_one", 1.2, 1.2).ok


def test_a_ratio_the_run_skipped_with_a_reason_is_reported_skipped_not_failed() -> None:
    floors = {"page_latency": {"prom_fast_over_hotpath": 8.0, "prom_default_over_hotpath": 50.0}}
    why = "not installed: /usr/bin/prometheus, /usr/bin/prometheus-alertmanager"
    docs = {"page_latency": {"guard": {}, "guard_skipped": {
        "prom_fast_over_hotpath": why, "prom_default_over_hotpath": "skipped in --quick"}}}
    got = check(docs, floors)
    assert [(c.name, c.value, c.skipped, c.ok, c.reason) for c in got] == [
        ("prom_fast_over_hotpath", None, why, True, f"skipped: {why}"),
        ("prom_default_over_hotpath", None, "skipped in --quick", True,
         "skipped: skipped in --quick"),
    ]


def test_a_measured_ratio_is_judged_even_if_also_listed_as_skipped() -> None:
    docs = {"page_latency": {"guard": {"prom_fast_over_hotpath": 3.0},
                             "guard_skipped": {"prom_fast_over_hotpath": "stale reason"}}}
    [c] = check(docs, {"page_latency": {"prom_fast_over_hotpath": 8.0}})
    assert (c.skipped, c.ok, c.reason) == (None, False, "below its floor: 3 < 8")


def test_a_skip_reason_for_another_ratio_does_not_excuse_a_missing_one() -> None:
    docs = {"page_latency": {"guard": {}, "guard_skipped": {"prom_default_over_hotpath": "x"}}}
    [c] = check(docs, {"page_latency": {"prom_fast_over_hotpath": 8.0}})
    assert (c.ok, c.reason) == (False, "not measured: the run produced no such ratio")
