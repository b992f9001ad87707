"""The scale-out benchmark's own parts: its options and sizes, the dealing of services over
partitions, the targets, guard, table and notes; and one real processor draining a backlog.

Never speed: the measured runs belong to ``python -m benchmarks scaleout``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scaleout import (
    Params,
    Setup,
    deal_partitions,
    guard,
    main,
    notes,
    produce_dealt,
    render,
    run_group,
    targets,
)
from benchmarks.scaleout_procs import listener_pid
from benchmarks.throughput import PARTITIONS, point_messages, series_values
from hotpath.services.kafka_admin import create_topic
from tests.benchmarks.cli import usage_error

# --- sizes and options -----------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--series", "150"], "--series 150 must be a multiple of 100 (metrics per batch message)"),
    (["--series", "300"],
     "--series 300 must give at least 4 services (400 series), one per partition"),
    (["--messages", "1050", "--series", "1000"],
     "--messages 1050 must be a multiple of --series 1000 (every series gets the same number"
     " of points)"),
    (["--series", "1000", "--batch-messages", "25"],
     "--batch-messages 25 must be a multiple of 10 services"),
    (["--repeat", "0"], "--repeat 0 must be at least 1"),
    (["--sample-ms", "5"], "--sample-ms 5 must be between 10 and 1000"),
])
def test_bad_sizes_are_refused_before_any_service_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_error(main, argv, capsys) == (
        f"python -m benchmarks.scaleout: error: {message}")


def test_default_and_quick_sizes_are_valid() -> None:
    assert Params().check() == Params()
    assert Params.quick().check().repeat == 1


# --- the workload ----------------------------------------------------------------------------


def test_services_are_dealt_evenly_and_each_stays_on_one_partition() -> None:
    keys = [f"svc-{i % 10}".encode() for i in range(1000)]
    dealt = list(deal_partitions(iter((k, b"v") for k in keys), 4))
    assert [k for k, _, _ in dealt] == keys
    owner: dict[bytes, int] = {}
    for key, _, part in dealt:
        assert owner.setdefault(key, part) == part
    per_partition = [sum(1 for p in owner.values() if p == q) for q in range(4)]
    assert per_partition == [3, 3, 2, 2]


# --- the document -----------------------------------------------------------------------------


def _run(rate: float, cores: list[float], broker: float | None) -> dict[str, Any]:
    return {"points_per_s": rate, "process_cores": cores, "broker_cores": broker,
            "other_cores": 0.1}


def test_table_and_notes_show_the_ratio_and_who_used_the_cores() -> None:
    results = [{"case": c, "points": 1000, "one_points_per_s": 100.0,
                "two_points_per_s": 170.0, "two_over_one": 1.7,
                "one_process": [_run(100.0, [0.9], 0.1)],
                "two_processes": [_run(170.0, [0.8, 0.85], None)]}
               for c in ("point", "batch100")]
    doc = {"params": {"partitions": 4, "series": 400, "repeat": 1},
           "machine": {"cores": 2}, "results": results}
    lines = render(doc).splitlines()
    assert lines[1].split() == ["case", "points", "1", "proc", "pts/s", "2", "procs", "pts/s",
                                "2/1", "cores", "1p", "cores", "2p", "broker", "2p", "others",
                                "2p"]
    assert lines[3].split() == ["point", "1,000", "100", "170", "1.70", "0.90", "1.65",
                                "unknown", "0.10"]
    said = notes(results, 2)
    assert said[0].startswith("2 cores shared by the broker JVM")
    assert ("point, 2 processes: processors used 1.65 cores, the broker unknown, everything "
            "else 0.10 (medians over repeats)") in said


def test_each_case_gets_its_own_target_entry_and_guard_ratio() -> None:
    results = [{"case": "point", "two_over_one": 1.7}, {"case": "batch100", "two_over_one": 1.2}]
    assert [(t["name"], t["case"], t["value"], t["target"], t["unit"], t["met"])
            for t in targets(results)] == [
        ("two_over_one_point", "point", 1.7, 1.6, "x one process", True),
        ("two_over_one_batch100", "batch100", 1.2, 1.6, "x one process", False)]
    assert guard(results) == {"two_over_one_point": 1.7, "two_over_one_batch100": 1.2}


# --- one real processor ----------------------------------------------------------------------


@pytest.mark.kafka
async def test_one_real_processor_drains_a_backlog_and_exits_cleanly(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    # One process only: a second one joins about a second late, and a backlog big enough to
    # leave the pair a window would take this test past its time budget (the CI guard's
    # --quick run covers two).
    topic = f"test-scaleout-{os.getpid()}-{time.monotonic_ns()}"
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    values = series_values(4, 200_000 // 400, seed=1)  # ~0.6 s of one processor
    sent = await produce_dealt(kafka_bootstrap, topic, point_messages(values, time.time() - 200))
    setup = Setup(kafka_bootstrap, redis_url, topic, sent, tmp_path, "http://127.0.0.1:9/p",
                  "http://127.0.0.1:9/a", listener_pid(int(kafka_bootstrap.rsplit(":")[1])),
                  0.05)
    run = await run_group(setup, 1, "e2e")
    assert (run["processes"], run["points_counted"]) == (1, sent)
    assert run["points_per_s"] > 0 and run["samples"] >= 2
    assert run["broker_cores"] is not None and run["broker_cores"] >= 0
    [cores] = run["process_cores"]
    assert 0 < cores <= os.cpu_count()
    log = (tmp_path / "e2e-p0" / "e2e-p0.log").read_text()
    assert "partitions assigned" in log
