"""``python -m benchmarks``: option errors, and the README section it writes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.common import REPO, target
from benchmarks.readme_table import BEGIN, END, ReadmeError, section, update


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_unknown_benchmark_is_refused_before_anything_starts() -> None:
    proc = _run("all", "--only", "throughput,warp")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "python -m benchmarks: error: --only: unknown benchmark 'warp' (known: detectors, "
        "throughput, latency, page_latency, scaleout)")


def test_a_missing_floors_file_is_refused() -> None:
    proc = _run("all", "--floors", "/nonexistent/floors.toml")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "python -m benchmarks: error: /nonexistent/floors.toml: [Errno 2] No such file or "
        "directory: '/nonexistent/floors.toml'")


def test_the_readme_has_the_markers_the_runner_writes_between() -> None:
    text = (REPO / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)


def test_section_lists_every_target_with_its_verdict() -> None:
    docs = {"latency": {"targets": [target("p99_ms_at_50pct", 31.0, 20.0, "ms",
                                           higher_is_better=False)]},
            "page_latency": {"targets": [{"name": "speedup_vs_prom_default", "value": None,
                                          "target": 300.0, "unit": "x", "met": None}]}}
    body = section(docs, {"cores": 2, "python": "3.11.7", "platform": "Linux-x"},
                   {"numpy": "2.4.6", "kafka": "3.9.1"}, "2026-11-26")
    assert body.splitlines()[:5] == [
        "Measured 2026-11-26 on 2 cores, Python 3.11.7, Linux-x; numpy 2.4.6, kafka 3.9.1.",
        "",
        "| benchmark | target | measured | goal | unit | met |",
        "|---|---|---|---|---|---|",
        "| latency | p99_ms_at_50pct | 31.00 | 20.00 | ms | **no** |",
    ]
    assert body.splitlines()[5] == ("| page_latency | speedup_vs_prom_default | - | 300 | x | "
                                    "not measured |")


def test_update_replaces_only_between_the_markers() -> None:
    text = f"# x\n{BEGIN}\nold table\n{END}\nafter\n"
    assert update(text, "new") == f"# x\n{BEGIN}\nnew\n{END}\nafter\n"


def test_update_refuses_markers_in_the_wrong_order() -> None:
    with pytest.raises(ReadmeError) as err:
        update(f"{END}\n{BEGIN}\n", "new")
    assert str(err.value) == f"README.md has {END!r} before {BEGIN!r}"
