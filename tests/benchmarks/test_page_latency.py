"""page_latency's command line: option errors and how main hands over to the run."""

from __future__ import annotations

import pytest

from benchmarks import common
from benchmarks.page_latency import main
from tests.benchmarks.cli import usage_error


@pytest.mark.parametrize(("argv", "message"), [
    (["--trials", "0"], "--trials 0 must be in 1..100"),
    (["--prom-trials", "101"], "--prom-trials 101 must be in 1..100"),
    (["--history", "59"], "--history 59 must be at least 60 (the detectors' warm-up)"),
])
def test_bad_options_are_refused_with_the_reason(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(main, argv, capsys).endswith(f"error: {message}")


def test_main_tunes_the_collector_before_serve_runs_in_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def services(*args: object) -> None:
        calls.append("services")
        raise RuntimeError("no services in a unit test")

    # Both live in benchmarks.common.run_and_report, which main hands the measuring to.
    monkeypatch.setattr(common, "tune_gc", lambda: calls.append("tune_gc"))
    monkeypatch.setattr(common, "services", services)
    with pytest.raises(RuntimeError):
        main(["--quick"])
    assert calls == ["tune_gc", "services"]
