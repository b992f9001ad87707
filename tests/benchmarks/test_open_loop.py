"""The open-loop producer: its schedule, its messages, its punctuality report, its CLI.

One test sends a short schedule through the session's real Kafka broker and reads it back.
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2

from benchmarks.open_loop import (
    CYCLE_STEPS,
    Log,
    due,
    encode_tails,
    intended,
    keys_and_partitions,
    main,
    run,
    schedule_report,
)
from benchmarks.throughput import batch_messages, point_messages, series_values
from hotpath.services.kafka_admin import create_topic
from tests.benchmarks.cli import usage_error


def test_due_counts_messages_whose_intended_time_has_come() -> None:
    start, rate = 1000.0, 250.0
    for i in (0, 1, 17, 249, 250, 999):
        at = intended(start, rate, i)
        assert due(start, rate, at, 10_000) == i + 1
        assert due(start, rate, at - 1e-6, 10_000) == i
    assert due(start, rate, start + 3600.0, 500) == 500


@pytest.mark.parametrize(("case", "encode"), [("point", point_messages),
                                              ("batch100", batch_messages)])
def test_tails_make_the_same_messages_as_the_throughput_workload(case: str, encode: object) -> None:
    tails = encode_tails(case, services=2, seed=3)
    assert len(tails) == CYCLE_STEPS
    expected = list(encode(series_values(2, CYCLE_STEPS, seed=3), 1.7e9))  # type: ignore[operator]
    per_step = len(tails[0])
    for i, (_, body) in enumerate(expected):
        step, j = divmod(i, per_step)
        got = orjson.loads(b'{"ts":%.6f%b' % (1.7e9 + step, tails[step][j]))
        assert got == orjson.loads(body)


def test_keys_are_services_on_the_default_partitioners_partition() -> None:
    keys, parts = keys_and_partitions("batch100", 30, [0, 1, 2, 3])
    assert keys == [f"svc-{i:04d}".encode() for i in range(30)]
    assert parts == [(murmur2(k) & 0x7FFFFFFF) % 4 for k in keys]
    assert len(set(parts)) > 1
    point_keys, point_parts = keys_and_partitions("point", 2, [0, 1, 2, 3])
    assert point_keys == [b"svc-0000"] * 100 + [b"svc-0001"] * 100
    assert point_parts == [parts[0]] * 100 + [parts[1]] * 100


def _report(ticks: list[tuple[int, int, float]],
            acks: list[tuple[int, int, float]] | None = None) -> dict[str, float]:
    # 100 messages/s from t=0: warm-up 1 s (messages 0..99), window 1 s (100..199).
    return schedule_report(Log.of(ticks), Log.of(acks or []), 0.0, 100.0, 1.0, 1.0)


def test_report_only_counts_the_window_and_its_lag() -> None:
    ticks = [(0, 50, 0.0), (50, 50, 0.5), (100, 25, 1.0), (125, 25, 1.25), (150, 50, 1.5),
             (200, 10, 2.0)]
    # Batches acknowledged 5 ms after their oldest message was due; 8 ms for one of them.
    acks = [(0, 100, 0.505), (100, 50, 1.005), (150, 50, 1.508), (200, 10, 2.005)]
    assert _report(ticks, acks) == pytest.approx({
        "messages": 100, "achieved_per_s": 100.0, "max_lag_s": 0.0, "mean_lag_s": 0.0,
        "p99_lag_s": 0.0, "ack_p50_s": 0.005, "ack_p99_s": 0.008, "ack_max_s": 0.008})


def test_report_of_a_tick_spanning_the_window_start_counts_only_its_window_part() -> None:
    # A tick at 1.4 s takes messages 80..139 (the window, from 100, gets 40 of them, its
    # oldest 0.4 s late); the next takes 140..199 on time.
    report = _report([(80, 60, 1.4), (140, 60, 1.4)])
    assert report["messages"] == 100
    assert report["max_lag_s"] == pytest.approx(0.4)
    assert report["mean_lag_s"] == pytest.approx(0.2)
    assert report["p99_lag_s"] == pytest.approx(0.4)  # 40 of the 100 messages were late
    assert report["ack_max_s"] == 0.0  # no acknowledgement seen: none reported


def test_report_of_a_producer_that_sent_nothing_in_the_window() -> None:
    assert _report([(0, 10, 0.0)]) == {
        "messages": 0, "achieved_per_s": 0.0, "max_lag_s": 0.0, "mean_lag_s": 0.0,
        "p99_lag_s": 0.0, "ack_p50_s": 0.0, "ack_p99_s": 0.0, "ack_max_s": 0.0}


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", "0"], "argument --rate: --rate 0 must be greater than 0"),
    (["--rate", "fast"], "argument --rate: --rate 'fast' is not a number"),
    (["--services", "-2"], "argument --services: --services -2 must be greater than 0"),
    (["--warmup", "-1"], "--warmup -1.0 must not be negative"),
    (["--case", "batch7"], "argument --case: invalid choice: 'batch7' "
                           "(choose from 'batch100', 'point')"),
])
def test_bad_options_are_refused_with_the_option_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--bootstrap": "127.0.0.1:1", "--topic": "t", "--case": "point",
            "--services": "1", "--rate": "10", "--duration": "1"}
    base.update(zip(argv[::2], argv[1::2], strict=True))
    assert usage_error(main, [x for kv in base.items() for x in kv], capsys) == (
        f"python -m benchmarks.open_loop: error: {message}")


@pytest.mark.kafka
async def test_a_short_schedule_arrives_with_its_intended_times(kafka_bootstrap: str) -> None:
    topic = f"open-loop-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic, 4)
    report = await run(kafka_bootstrap, topic, "batch100", services=5, rate_points=50_000.0,
                       warmup=0.2, duration=0.5, seed=1, lead=0.1)
    # 500 messages/s for 0.7 s; the window is the last 0.5 s.
    assert (report["messages"], report["points"]) == (350, 35_000)
    assert report["window"]["messages"] == 250
    assert report["window"]["achieved_points_per_s"] == pytest.approx(50_000, rel=0.2)
    assert 0 < report["window"]["ack_p50_s"] <= report["window"]["ack_max_s"]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        ts: list[float] = []
        stamped: list[tuple[int, int]] = []
        while len(ts) < 350:
            for recs in (await consumer.getmany(timeout_ms=2000)).values():
                ts.extend(orjson.loads(r.value)["ts"] for r in recs)
                stamped.extend((r.timestamp, r.timestamp_type) for r in recs)
    finally:
        await consumer.stop()
    intended = [report["start"] + i / 500 for i in range(350)]
    assert sorted(ts) == pytest.approx(intended, abs=1e-6)
    # The record timestamp is the same intended time in whole ms, as the producer set it
    # (type 0, CreateTime), so a consumer that does not parse the JSON sees the schedule.
    assert sorted(stamped) == [(round(t * 1000), 0) for t in intended]
