"""The throughput benchmark in --quick mode against the session's real Kafka and Redis.

Checks the results document and that every message and point was counted; never speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from benchmarks.common import REPO
from benchmarks.throughput import Params, main, measure
from tests.benchmarks.cli import usage_error

pytestmark = pytest.mark.kafka

RATES = ("hotpath_points_per_s", "hotpath_points_per_cpu_s", "raw_points_per_s",
         "raw_points_per_cpu_s", "ratio_to_raw", "wall_ratio_to_raw")


async def test_quick_run_counts_every_point_in_both_cases(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    params = Params.smoke()
    doc = await measure(params, kafka_bootstrap, redis_url, tmp_path, quick=True)

    assert doc["benchmark"] == "throughput"
    assert sorted(doc["machine"]) == ["aiokafka", "cores", "numpy", "platform", "python"]
    assert doc["params"] | {"messages": 20_000, "series": 400, "batch_messages": 200,
                            "services": 4, "points_per_series": 50, "repeat": 1,
                            "quick": True} == doc["params"]
    assert [r["case"] for r in doc["results"]] == ["point", "batch100"]
    point, batch = doc["results"]
    assert (point["messages"], point["points_per_message"]) == (20_000, 1)
    assert (batch["messages"], batch["points_per_message"]) == (200, 100)
    for r in doc["results"]:
        assert r["points"] == 20_000
        assert r["hotpath_points_processed"] == r["points"]
        assert r["raw_messages_consumed"] == r["messages"]
        # Steady-state values: no finding, nothing rejected, nobody paged or acted on.
        assert (r["findings"], r["dlq"], r["pages"], r["actions"]) == (0, 0, 0, 0)
        [run] = r["runs"]
        assert (run["raw"]["messages"], run["hotpath"]["points"]) == (r["messages"], 20_000)
        assert all(isinstance(r[k], float) and r[k] > 0 for k in RATES)
        assert r["ratio_to_raw"] == pytest.approx(
            r["hotpath_points_per_cpu_s"] / r["raw_points_per_cpu_s"])
        assert r["wall_ratio_to_raw"] == pytest.approx(
            r["hotpath_points_per_s"] / r["raw_points_per_s"])
    # One target per issue threshold this benchmark measures, judged as the issue says.
    assert [(t["name"], t["target"], t["unit"]) for t in doc["targets"]] == [
        ("point_points_per_cpu_s", 150_000.0, "points/s/core"),
        ("point_ratio_to_raw", 0.6, "x raw aiokafka"),
        ("batch100_points_per_cpu_s", 2_000_000.0, "points/s/core")]
    assert [t["met"] for t in doc["targets"]] == [
        point["hotpath_points_per_cpu_s"] >= 150_000, point["ratio_to_raw"] >= 0.6,
        batch["hotpath_points_per_cpu_s"] >= 2_000_000]
    assert doc["guard"] == {"point_ratio_to_raw": point["ratio_to_raw"],
                            "batch100_ratio_to_raw": batch["ratio_to_raw"]}
    # The document is JSON as written (no numpy scalars or paths left in it).
    assert orjson.loads(orjson.dumps(doc)) == doc


def test_cli_writes_the_json_and_prints_the_table(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--quick", "--messages", "2000",
         "--batch-messages", "20",
         "--series", "200", "--bootstrap", kafka_bootstrap, "--redis-url", redis_url,
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = orjson.loads(out.read_bytes())
    assert [(r["case"], r["messages"], r["hotpath_points_processed"])
            for r in doc["results"]] == [("point", 2000, 2000), ("batch100", 20, 2000)]
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["case", "messages", "points", "hotpath", "pts/s", "hotpath",
                                "pts/cpu-s", "raw", "pts/s", "raw", "pts/cpu-s", "ratio",
                                "(cpu)", "findings"]
    assert [ln.split()[0] for ln in lines[3:5]] == ["point", "batch100"]
    assert lines[-1] == f"wrote {out}"


@pytest.mark.parametrize(("argv", "message"), [
    (["--series", "150"],
     "--series 150 must be a multiple of 100 (metrics per batch message)"),
    (["--messages", "1050", "--series", "100"],
     "--messages 1050 must be a multiple of --series 100 (every series gets the same number"
     " of points)"),
    (["--messages", "1000", "--series", "200", "--batch-messages", "5"],
     "--batch-messages 5 must be a multiple of 2 services"),
    (["--repeat", "0"], "--repeat 0 must be at least 1"),
])
def test_bad_sizes_are_refused_before_any_service_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_error(main, argv, capsys) == (
        f"python -m benchmarks.throughput: error: {message}")
