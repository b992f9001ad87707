"""The latency benchmark's sizes and options (measuring: test_latency_probe, test_latency_raw;
figures: test_latency_stats)."""

from __future__ import annotations

import pytest

from benchmarks.latency import Params, main
from tests.benchmarks.cli import usage_error


def test_quick_params_stay_past_the_detector_warm_up() -> None:
    q = Params.quick().check()
    assert 0 < q.probe_s <= Params().probe_s
    assert q.backlog_steps_for("point") >= 30
    assert q.backlog_steps_for("batch100") == 10 * q.backlog_steps


@pytest.mark.parametrize(("argv", "message"), [
    (["--series", "150"],
     "--series 150 must be a positive multiple of 100 (metrics per batch message)"),
    (["--backlog-steps", "29"], "--backlog-steps 29 must be at least 30 (the detectors' warm-up)"),
    (["--warmup", "-1"], "--warmup -1 must not be negative"),
    (["--duration", "0"], "--duration 0 must be greater than 0"),
    (["--probe", "-1"], "--probe -1 must not be negative (0 skips it)"),
    (["--cases", "point,batch7"], "unknown case 'batch7': choose from point, batch100"),
    (["--cases", ","], "--cases must name at least one case"),
    (["--max-rate", "point"], "--max-rate 'point' must be CASE=POINTS_PER_S, e.g. point=250000"),
    (["--max-rate", "point=fast"],
     "--max-rate 'point=fast' must be CASE=POINTS_PER_S, e.g. point=250000"),
    (["--max-rate", "point=-5"], "--max-rate point=-5 must be greater than 0"),
    (["--max-rate", "pt=5"], "unknown case 'pt': choose from point, batch100"),
])
def test_bad_options_are_refused_before_any_service_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_error(main, argv, capsys) == (
        f"python -m benchmarks.latency: error: {message}")
