"""The detector cost benchmark in --quick mode: the JSON it writes and what it counts.

Never speed: only that every figure is there, counted from the configured ensemble, and
that the Python reference it times computed the same scores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest

from benchmarks.common import REPO
from benchmarks.detectors import (
    CONFIG,
    TUNED_MALLOC,
    Params,
    Workload,
    build_ensemble,
    longest_warmup,
    main,
    measure_size,
    render,
)
from detectors.ensemble import Ensemble
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds
from hotpath.config import load_config
from hotpath.runtime import make_ensemble
from hotpath.series import RecentValues
from tests.benchmarks.cli import usage_error

TARGETS = ["updates_per_s_100k", "speedup_vs_python_100k", "state_bytes_per_series"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str], Path]:
    out = tmp_path_factory.mktemp("bench") / "detectors.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.detectors", "--quick",
                           "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    return orjson.loads(out.read_bytes()), proc.stdout.splitlines(), out


def test_quick_run_writes_the_document(quick: tuple[dict[str, Any], list[str], Path]) -> None:
    doc, _, _ = quick
    names = list(make_ensemble(load_config(CONFIG)).detector_names)
    assert doc["benchmark"] == "detectors"
    assert {"cores", "python", "numpy", "libc"} <= set(doc["machine"])
    assert doc["params"] | {"series": [1000, 5000], "points": 20_000,
                            "python_points": 2_000, "quick": True} == doc["params"]
    ens = doc["ensemble"]
    assert ens["detectors"] == names  # built from the config at run time
    assert sorted(ens["python_reference"] + ens["no_python_reference"]) == sorted(names)
    assert [(r["malloc"], r["env"]) for r in doc["runs"]] == [("default", {}),
                                                              ("tuned", TUNED_MALLOC)]
    assert orjson.loads(orjson.dumps(doc)) == doc


def test_every_size_counts_points_state_and_the_reference(
    quick: tuple[dict[str, Any], list[str], Path]
) -> None:
    doc, _, _ = quick
    for run in doc["runs"]:
        assert [r["series"] for r in run["results"]] == [1000, 5000]
        for r in run["results"]:
            vec, py, state = r["vectorised"], r["python"], r["state"]
            assert vec["points"] >= 20_000
            assert r["points_per_batch"] == pytest.approx(vec["points"] / r["batches"])
            # past the longest member warm-up (the config's EWMA: 30)
            assert r["warm_points_per_series"] == longest_warmup(
                make_ensemble(load_config(CONFIG))) + 2
            assert py["points"] == 2_000 and py["extrapolated_from_sample"] is True
            assert py["detectors"] == doc["ensemble"]["python_reference"]
            assert py["no_reference"] == doc["ensemble"]["no_python_reference"]
            assert py["max_abs_score_diff"] < 1e-9  # the loop timed did the same math
            assert r["speedup_cpu"] == pytest.approx(
                vec["updates_per_cpu_s"] / py["updates_per_cpu_s"])
            fresh = build_ensemble(load_config(CONFIG), r["series"])
            assert state["ensemble_bytes_per_series"] == pytest.approx(
                sum(a.nbytes for a in fresh.export_state().values()) / r["series"])
            # a row of RecentValues: the window of float64s and its int64 count
            assert state["recent_window"] == RecentValues().window
            assert state["recent_bytes_per_series"] == pytest.approx(
                8 * state["recent_window"] + 8, rel=0.01)
            assert state["index_bytes_per_series"] > 0
            assert state["total_bytes_per_series"] == pytest.approx(
                state["ensemble_bytes_per_series"] + state["recent_bytes_per_series"]
                + state["index_bytes_per_series"])


def test_targets_are_listed_and_not_judged_off_size(
    quick: tuple[dict[str, Any], list[str], Path]
) -> None:
    doc, _, _ = quick
    assert [t["name"] for t in doc["targets"]] == TARGETS + [f"{n}_malloc_tuned"
                                                             for n in TARGETS]
    assert [(t["target"], t["unit"]) for t in doc["targets"][:3]] == [
        (5e6, "series-updates/s/core"), (50.0, "x (cpu time)"), (1024.0, "bytes/series")]
    for t in doc["targets"]:
        # --quick measures 1000 and 5000 series: the 100k targets are reported, not judged
        assert (t["series"], t["met"]) == (5000, None)
        assert t["note"] == "measured at 5000 series, not 100000: not judged"
        assert isinstance(t["value"], float) and t["value"] > 0


def test_cli_prints_tables_commands_and_notes(
    quick: tuple[dict[str, Any], list[str], Path]
) -> None:
    doc, lines, out = quick
    assert lines[-1] == f"wrote {out}"
    commands = [ln for ln in lines if ln.startswith("malloc ")]
    assert [c.split(":")[0] for c in commands] == ["malloc default", "malloc tuned"]
    assert "env -u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_ " in commands[0]
    assert "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 " in commands[1]
    assert any("rate extrapolated per update" in ln for ln in lines)
    assert render(doc).splitlines() == lines[:-1]


class _Renamed(EwmaZScore):
    """The same math under another class: it has no Python reference."""

    name: ClassVar[str] = "renamed"


def test_a_member_without_reference_is_named_in_results_and_output(
    quick: tuple[dict[str, Any], list[str], Path]
) -> None:
    ens = Ensemble([EwmaZScore(warmup=5), _Renamed(warmup=5), StaticBounds()])
    ens.resize(300)
    r = measure_size(ens, Params(series=(300,), points=3_000, python_points=500))
    assert r["python"]["no_reference"] == ["renamed"]
    assert r["python"]["detectors"] == ["ewma", "static"]
    assert r["warm_points_per_series"] == 7
    assert r["python"]["max_abs_score_diff"] < 1e-9

    doc, _, _ = quick
    missing = {**doc, "ensemble": {**doc["ensemble"], "no_python_reference": ["renamed"]}}
    assert ("NO PYTHON REFERENCE for ['renamed']: left out of the Python loop, so the speedup"
            " is understated by their cost.") in render(missing).splitlines()


def test_workload_batches_are_time_ordered_with_one_to_four_points_per_series() -> None:
    wl = Workload(1000, seed=3)
    rows, ts, values = wl.batch(touched=400)
    counts = np.bincount(rows, minlength=1000)
    assert int((counts > 0).sum()) == 400
    assert set(counts[counts > 0].tolist()) == {1, 2, 3, 4}
    assert bool(np.all(np.diff(ts) >= 0))
    later = wl.batch(touched=1000, points=2)
    assert float(later[1].min()) > float(ts.max())  # series' clocks only move forward
    assert np.isfinite(values).all()


@pytest.mark.parametrize(("argv", "message"), [
    (["--series", "50"], "--series sizes must be >= 100, got 50"),
    (["--series", "1k"], "invalid literal for int() with base 10: '1k'"),
    (["--points", "0"], "--points and --python-points must be >= 1"),
    (["--warm-points", "-1"], "--warm-points must be >= 0, got -1"),
])
def test_bad_sizes_are_refused(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(main, argv, capsys) == (
        f"python -m benchmarks.detectors: error: {message}")
