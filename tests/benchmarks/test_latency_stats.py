"""The latency benchmark's figures: windows, histograms, rates, limits, ratios, table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from benchmarks.latency_stats import (
    PERCENTILES,
    Stamps,
    chosen_max,
    decided_rate,
    drain_rate,
    guard,
    histogram,
    latencies_us,
    level_result,
    next_probe,
    probe_result,
    producer_limited,
    render,
    stamps_from_ms,
    summary,
    targets,
    window,
    with_raw,
)


def test_latencies_take_only_points_whose_ts_is_in_the_window() -> None:
    stamps: Stamps = [(100.010, [np.array([99.0, 100.0, 100.005]), np.array([100.009])]),
                      (101.0, [np.array([100.999, 101.0])])]
    assert latencies_us(stamps, 100.0, 101.0).tolist() == [10_000, 5_000, 1_000, 1_000]
    assert latencies_us([], 0.0, 1.0).tolist() == []


def test_record_timestamps_in_ms_become_the_same_stamps_as_ts_in_seconds() -> None:
    # Kafka timestamps of the epoch's size: ms → s keeps well under 1 µs of error.
    stamps = stamps_from_ms([(1_764_132_000.010, [[1_764_132_000_000, 1_764_132_000_005],
                                                  []])])
    assert latencies_us(stamps, 1_764_132_000.0, 1_764_132_001.0).tolist() == [10_000, 5_000]
    assert stamps_from_ms([]) == []


def test_histogram_percentiles_and_encoding_round_trip() -> None:
    rng = np.random.default_rng(1)
    us = rng.integers(500, 50_000, size=20_000)
    h = histogram(us)
    assert h.get_total_count() == 20_000
    for p in (50.0, 99.0, 99.9):
        # 3 significant digits: within 0.1 % of the exact percentile.
        assert h.get_value_at_percentile(p) == pytest.approx(np.percentile(us, p), rel=2e-3)
    s = summary(h)
    assert [row[0] for row in s["percentiles"]] == list(PERCENTILES)
    assert s["max_ms"] == pytest.approx(us.max() / 1000, rel=1e-3)
    back = HdrHistogram.decode(h.encode())
    assert back.get_total_count() == 20_000
    assert back.get_value_at_percentile(99.0) == h.get_value_at_percentile(99.0)


def test_a_weight_counts_every_value_as_that_many_points_without_moving_percentiles() -> None:
    us = np.array([1000, 2000, 3000, 4000])
    one, hundred = summary(histogram(us)), summary(histogram(us, weight=100))
    assert (one["points"], hundred["points"]) == (4, 400)
    assert one["percentiles"] == hundred["percentiles"]


def test_decided_rate_counts_by_decision_time_over_the_window() -> None:
    stamps: Stamps = [(0.5, [np.ones(100)]), (1.0, [np.ones(30), np.ones(20)]),
                      (2.5, [np.ones(50)]), (3.0, [np.ones(999)])]
    assert decided_rate(stamps, 1.0, 3.0) == 50.0
    assert decided_rate(stamps, 1.0, 3.0, weight=100) == 5000.0


def test_drain_rate_needs_more_than_one_batch_and_every_point() -> None:
    with pytest.raises(ValueError) as one:
        drain_rate([(1.0, [np.ones(10)])], 10)
    assert str(one.value) == "10 points were decided in one batch: too few to time"
    with pytest.raises(ValueError) as short:
        drain_rate([(1.0, [np.ones(5)]), (2.0, [np.ones(5)])], 20)
    assert str(short.value) == "only 10 of 20 points were decided"


def test_a_probe_counts_decisions_inside_the_producer_window_only() -> None:
    producer = {**_producer(), "window": {"achieved_points_per_s": 1000.0}}
    assert window(producer) == (101.0, 103.0)
    # Before the window: the probe's start-up; after it: the catch-up with no producer.
    stamps: Stamps = [(100.5, [np.ones(900)]), (101.0, [np.ones(400)]),
                      (102.9, [np.ones(300), np.ones(300)]), (103.0, [np.ones(5000)])]
    r = probe_result(1200.0, producer, stamps)
    assert r == {"offered_points_per_s": 1200.0, "producer_points_per_s": 1000.0,
                 "decided_points_per_s": 500.0, "overloaded": True}
    kept = probe_result(1000.0, producer, [(101.0 + i / 10, [np.ones(100)]) for i in range(20)])
    assert (kept["decided_points_per_s"], kept["overloaded"]) == (1000.0, False)


def _probe(decided: float, overloaded: bool) -> dict[str, Any]:
    return {"decided_points_per_s": decided, "overloaded": overloaded}


@pytest.mark.parametrize(("probes", "offered"), [
    ([], 449_000.0),                                      # first: the ceiling itself
    ([_probe(449_000.0, False)], None),                   # kept up with the ceiling: done
    ([_probe(200_000.0, True)], 250_000.0),               # overloaded: a lighter producer
    ([_probe(400_000.0, True)], None),                    # 1.25x would pass the ceiling
    ([_probe(200_000.0, True), _probe(230_000.0, True)], None),  # two probes at most
])
def test_next_probe(probes: list[dict[str, Any]], offered: float | None) -> None:
    assert next_probe(449_000.0, probes) == offered


def test_the_maximum_is_the_most_decided_live_when_under_the_ceiling() -> None:
    # The lighter second probe decided more: the first's busier producer held hotpath back.
    probes = [_probe(210_000.0, True), _probe(235_000.0, True)]
    assert chosen_max(449_000.0, "drain", probes) == (235_000.0, "live probe")
    assert chosen_max(449_000.0, "given", [_probe(450_000.0, False)]) == (449_000.0, "given")
    assert chosen_max(449_000.0, "drain", []) == (449_000.0, "drain")


@pytest.mark.parametrize(("offered", "achieved", "lag", "limited"), [
    (1000.0, 1000.0, 0.001, False),
    (1000.0, 950.0, 0.020, False),   # on both floors: still the consumer's figure
    (1000.0, 949.0, 0.001, True),    # sent under 95 % of the schedule
    (1000.0, 1000.0, 0.021, True),   # 1 % of messages later than the whole target allows
])
def test_producer_limited(offered: float, achieved: float, lag: float, limited: bool) -> None:
    assert producer_limited(offered, achieved, lag) is limited


def _producer(start: float = 100.0) -> dict[str, Any]:
    return {"start": start, "warmup_s": 1.0, "duration_s": 2.0, "points": 3000, "nice": -5,
            "window": {"messages": 2000, "points": 2000, "achieved_points_per_s": 1000.0,
                       "max_lag_s": 0.002, "mean_lag_s": 0.0005, "p99_lag_s": 0.001,
                       "ack_p50_s": 0.001,
                       "ack_p99_s": 0.002, "ack_max_s": 0.003}}


def test_level_result_measures_the_window_after_the_warm_up() -> None:
    # 1000 points/s offered; each batch decides the last 10 ms of points 4 ms later.
    ts = np.arange(100.0, 103.0, 0.001)
    stamps: Stamps = [(float(chunk[-1]) + 0.004, [chunk]) for chunk in np.split(ts, 300)]
    lv = level_result(0.5, 1000.0, _producer(), stamps)
    assert lv["points"] == 2000  # only ts in [101, 103)
    assert 4.0 <= lv["p50_ms"] <= 9.0
    assert lv["p99_ms"] == pytest.approx(13.0, abs=0.1)
    assert lv["kept_up"] == pytest.approx(1.0, abs=0.01)
    assert lv["producer_limited"] is False
    assert (lv["broker_ack_p99_ms"], lv["producer_max_lag_ms"]) == (2.0, 2.0)
    assert HdrHistogram.decode(lv["histogram"]).get_total_count() == 2000


def test_level_result_of_batch_records_counts_each_as_its_points() -> None:
    # 10 batch messages/s of 100 points (1000 points/s), each received 3 ms after its ts.
    ms = np.arange(100_000, 103_000, 100)
    raw = stamps_from_ms([(m / 1000 + 0.003, [[int(m)]]) for m in ms])
    lv = level_result(0.5, 1000.0, _producer(), raw, weight=100)
    assert lv["points"] == 2000
    # 3 ms sits in a 2 µs bucket of the histogram, which reports the bucket's top.
    assert lv["p50_ms"] == lv["p99_ms"] == pytest.approx(3.0, abs=0.002)
    assert lv["kept_up"] == pytest.approx(1.0)


def test_with_raw_nests_the_raw_level_and_divides_raw_by_hotpath() -> None:
    lv = with_raw({"p50_ms": 8.0, "p99_ms": 50.0}, {"p50_ms": 2.0, "p99_ms": 40.0})
    assert (lv["raw_over_hotpath_p50"], lv["raw_over_hotpath_p99"]) == (0.25, 0.8)
    # Nothing measured on the hotpath side: a 0 the guard refuses, not a ZeroDivisionError.
    assert with_raw({"p50_ms": 0.0, "p99_ms": 0.0}, lv["raw"])["raw_over_hotpath_p50"] == 0.0


def _doc() -> dict[str, Any]:
    def level(fraction: float, p99: float, kept_up: float) -> dict[str, Any]:
        hot = {"fraction": fraction, "offered_points_per_s": 1000.0 * fraction,
               "producer_points_per_s": 990.0 * fraction,
               "decided_points_per_s": 1000.0 * fraction * kept_up, "p50_ms": 2.0,
               "p99_ms": p99, "p99_9_ms": p99 * 2, "max_ms": p99 * 3,
               "producer_p99_lag_ms": 1.5, "processing_ms_per_batch": 0.8,
               "broker_ack_p99_ms": 1.2, "producer_limited": fraction == 0.9,
               "kept_up": kept_up}
        return with_raw(hot, {"p50_ms": 1.5, "p99_ms": p99 / 2,
                              "producer_limited": fraction >= 0.5})
    results = [{"case": "batch100", "max_points_per_s": 1.5e6, "max_rate_source": "live probe",
                "live_max_points_per_s": 1.5e6, "drain_max_points_per_s": 2e6,
                "given_max_points_per_s": None,
                "levels": [level(0.1, 3.0, 1.0), level(0.5, 12.5, 1.0),
                           level(0.9, 80.0, 0.93)]}]
    return {"params": {"series": 10_000, "duration_s": 10.0},
            "machine": {"cores": 2, "python": "3.11.7"}, "results": results,
            "targets": targets(results), "guard": guard(results)}


def test_targets_carry_raw_p99_and_guard_takes_the_50_and_90_percent_levels() -> None:
    doc = _doc()
    assert doc["targets"] == [{
        "name": "p99_produce_to_decision_at_50pct_max", "value": 12.5, "target": 20.0,
        "unit": "ms", "met": True, "case": "batch100", "producer_limited": False,
        "raw_p99_ms": 6.25, "raw_producer_limited": True}]
    assert doc["guard"] == {"batch100_raw_over_hotpath_p50_at_50pct": 0.75,
                            "batch100_kept_up_at_90pct": 0.93}


def test_render_prints_raw_beside_hotpath_and_which_producer_limited() -> None:
    lines = render(_doc()).splitlines()
    assert lines[0].startswith("latency: produce→decision (raw: produce→receipt by plain "
                               "aiokafka), 10,000 series, 10 s per level; max batch100 "
                               "1,500,000 pts/s (live probe; live 1,500,000, drain "
                               "2,000,000)")
    header = lines[1].split()
    assert header[5:9] == ["p50", "ms", "raw", "p50"]
    rows = [ln.split() for ln in lines[3:6]]
    assert [r[:2] for r in rows] == [["batch100", "10%"], ["batch100", "50%"],
                                     ["batch100", "90%"]]
    assert rows[1][5:9] == ["2.00", "1.50", "12.50", "6.25"]
    assert [r[-1] for r in rows] == ["1.50", "raw", "both"]
    assert lines[-2] == "batch100 p99 at 50% 12.5 ms (met, target ≤ 20; raw 6.2 ms)"
    assert lines[-1] == "batch100 raw/hotpath at 50%: p50 0.75, p99 0.50"
