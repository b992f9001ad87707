"""``python -m benchmarks``: option errors, stopping stuck runs, and the README section."""

from __future__ import annotations

import doctest
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import benchmarks.__main__ as runner
from benchmarks.__main__ import (
    RunError,
    _argv,
    _with_earlier_results,
    group_members,
    readme_left_because,
    run_process,
)
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


# --- stopping a stuck benchmark, bad wiring, README after failures ----------------------------

def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


# A benchmark stuck in a sleep, with a grandchild in its process group (as scaleout's
# `hotpath run` children are); it writes its grandchild's pid, and "cleaned" when its
# `finally` runs. With IGNORE it (and, by inheritance, the grandchild) ignores SIGINT.
STUCK = """
import signal, subprocess, sys, time
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "60"])
open(sys.argv[1] + ".pid", "w").write(str(child.pid))
try:
    time.sleep(60)
finally:
    open(sys.argv[1] + ".done", "w").write("cleaned")
"""


def test_a_stuck_benchmark_gets_sigint_and_its_cleanup_runs(tmp_path: Path) -> None:
    base = str(tmp_path / "b")
    with pytest.raises(RunError) as err:
        run_process("stuck", [sys.executable, "-c", STUCK, base, "obey"], timeout_s=1.5,
                    grace_s=5.0)
    assert str(err.value) == ("stuck: still running after 1.5 s; its process group was "
                              "stopped with SIGINT")
    assert Path(base + ".done").read_text() == "cleaned"
    assert _gone(int(Path(base + ".pid").read_text()))


def test_a_benchmark_deaf_to_sigint_has_its_whole_group_killed(tmp_path: Path) -> None:
    base = str(tmp_path / "b")
    with pytest.raises(RunError) as err:
        run_process("deaf", [sys.executable, "-c", STUCK, base, "ignore"], timeout_s=1.5,
                    grace_s=0.5)
    assert str(err.value) == ("deaf: still running after 1.5 s; its process group outlived "
                              "SIGINT by 0.5 s and was sent SIGKILL")
    assert not Path(base + ".done").exists()
    assert _gone(int(Path(base + ".pid").read_text()))


def test_a_finished_benchmark_gives_its_exit_status() -> None:
    assert run_process("ok", [sys.executable, "-c", "raise SystemExit(3)"], timeout_s=30) == 3


def test_group_members_skips_zombies_and_other_groups(tmp_path: Path) -> None:
    for pid, stat in [(12, "12 (we ird) x) S 1 77 77 0"), (13, "13 (z) Z 1 77 77 0"),
                      (14, "14 (other) S 1 78 78 0")]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
    assert group_members(77, tmp_path) == [12]


def test_a_service_benchmark_without_services_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError) as err:
        _argv("throughput", tmp_path / "t.json", True, None, "redis://127.0.0.1:1/0")
    assert str(err.value) == ("throughput: needs a Kafka broker and Redis, but the runner was "
                              "given bootstrap=None and redis_url='redis://127.0.0.1:1/0'")
    assert _argv("detectors", tmp_path / "d.json", False, None, None)[-2:] == [
        "--out", str(tmp_path / "d.json")]


@pytest.mark.parametrize(("quick", "skip", "ran", "failed", "why"), [
    (False, False, ["latency"], [], None),
    (False, False, ["latency", "scaleout"], ["scaleout"],
     "scaleout failed: its rows would disappear"),
    (False, False, ["latency", "scaleout"], ["latency", "scaleout"],
     "latency, scaleout failed: their rows would disappear"),
    (False, True, ["latency"], [], "--skip-readme"),
    (True, False, ["latency"], [], "--quick never writes it"),
    (False, False, [], [], "no benchmark was selected"),
])
def test_readme_is_left_alone_unless_every_benchmark_ran(
        quick: bool, skip: bool, ran: list[str], failed: list[str], why: str | None) -> None:
    assert readme_left_because(quick, skip, ran, failed) == why


def test_a_failed_benchmark_leaves_the_readme_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\nthe last table\n{END}\n")

    def failing(name: str, *args: object) -> dict[str, object]:
        raise RunError(f"{name}: exited with status 1")

    monkeypatch.setattr(runner, "README", readme)
    monkeypatch.setattr(runner, "run_one", failing)
    assert runner.main(["all", "--only", "detectors", "--results-dir", str(tmp_path)]) == 1
    assert readme.read_text() == f"{BEGIN}\nthe last table\n{END}\n"
    out, err = capsys.readouterr()
    assert f"left {readme} as it was: detectors failed: its rows would disappear" in \
        out.splitlines()
    assert "- detectors: exited with status 1" in err.splitlines()


def test_a_run_of_some_benchmarks_keeps_the_others_rows_from_their_json(tmp_path: Path) -> None:
    (tmp_path / "detectors.json").write_bytes(orjson.dumps({"targets": [
        target("speedup", 90.0, 50.0, "x")]}))
    fresh = {"throughput": {"targets": [target("ratio", 0.4, 0.6, "x raw")]}}
    table, earlier = _with_earlier_results(fresh, tmp_path)
    assert list(table) == ["detectors", "throughput"] and earlier == ["detectors"]
    body = section(table, {"cores": 2, "python": "3.11.7", "platform": "L"}, {}, "2026-11-26",
                   earlier=earlier)
    assert body.splitlines()[-1].endswith(
        "Rows of detectors are from an earlier run (`--only` left them).")


def test_the_runner_examples_hold() -> None:
    # pytest does not collect doctests from a __main__ module; run them here.
    result = doctest.testmod(runner, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 7 and result.failed == 0


def test_rows_name_their_case_and_carry_the_ceiling_beside_the_verdict() -> None:
    doc = {"targets": [{"name": "p99_at_50pct", "value": 32.5, "target": 20.0, "unit": "ms",
                        "met": False, "case": "point", "raw_p99_ms": 33.31,
                        "producer_limited": True}]}
    body = section({"latency": doc}, {"cores": 2, "python": "3.11.7", "platform": "L"}, {},
                   "2026-11-26")
    assert body.splitlines()[4] == ("| latency | p99_at_50pct (point) | 32.50 | 20.00 | ms | "
                                    "**no** (raw aiokafka 33.3 ms; producer-limited) |")
