"""The whole path on real Apache Kafka and Redis: telemetry in → findings → actions,
pages, budget, audit chain, DLQ and committed offsets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from escalation.audit import verify
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import WARMUP, incident_stream, produce
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

NOW = time.time()
HUGE = b'{"service":"s","metric":"m","ts":1.0,"value":1.0,"pad":"' + b"x" * (1 << 20) + b'"}'
BAD: list[tuple[bytes, str]] = [
    (b"{not json", "not json"),
    (b"[1, 2]", "not an object"),
    (orjson.dumps({"service": "s", "metric": "m", "value": 1.0}), "missing field: ts"),
    (orjson.dumps({"service": 5, "metric": "m", "ts": NOW, "value": 1.0}),
     "wrong type: service (expected string)"),
    (b"", "empty message"),
    (orjson.dumps({"service": "s", "metric": "m", "ts": NOW + 3600, "value": 1.0}),
     "ts in the future: more than 300s ahead"),
    (orjson.dumps({"service": "s", "metric": "m", "ts": 900000000.0, "value": 1.0}),
     "ts before 2000"),
    (orjson.dumps({"service": "s", "metric": "m", "ts": NOW, "value": 1.0,
                   "labels": {"a": 1}}), "label not a string: labels.a"),
    (orjson.dumps({"service": "s", "metric": "m", "ts": NOW, "value": 1.0,
                   "labels": {f"k{i}": "v" for i in range(33)}}), "too many labels: 33 > 32"),
    (HUGE, f"message too large: {len(HUGE)} bytes > 1048576"),
]




async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(parts)
        ends = await c.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await c.stop()


async def _committed(bootstrap: str, group: str, topic: str, parts: list[int]) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {p: await c.committed(TopicPartition(topic, p)) for p in parts}
    finally:
        await c.stop()


async def _read_all(bootstrap: str, topic: str, n: int) -> list:  # type: ignore[type-arg]
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=4 << 20, fetch_max_bytes=8 << 20)
    await c.start()
    out: list = []  # type: ignore[type-arg]
    try:
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            got = await c.getmany(timeout_ms=500)
            for recs in got.values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


async def test_telemetry_to_actions_pages_audit_dlq_and_offsets(
    kafka_broker: KafkaBroker, redis_client: object, make_config: MakeConfig,
    unique_topic: str, tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await kafka_broker.create_topic(unique_topic, partitions=3)
    rng = np.random.default_rng(1)
    t0 = time.time() - 250
    await produce(bootstrap, unique_topic, incident_stream(t0, WARMUP + 80, rng))
    await produce(bootstrap, unique_topic, [(b"bad", raw) for raw, _ in BAD])

    async with ActionReceiver() as actions, PageReceiver(tmp_path / "received.jsonl") as pages:
        cfg = make_config(bootstrap, unique_topic, action_url=actions.url, page_url=pages.url)
        # Partitions that received nothing have nothing to process or commit.
        ends = {p: off for p, off in (await _end_offsets(bootstrap, unique_topic, 3)).items()
                if off}
        stop = asyncio.Event()
        box: list[Running] = []
        task = asyncio.create_task(serve(cfg, stop, ready=box.append))

        def reasons_for(service: str) -> list[str]:
            return [r for p in pages.pages if p["service"] == service for r in p["reasons"]]

        def done() -> bool:
            if not box:
                return False
            processed = {p: off for (_, p), off in box[0].states.processed.items()}
            return (processed == ends and len(actions.accepted) >= 3
                    and "budget exhausted" in reasons_for("payments")
                    and "no remediation rule" in reasons_for("search"))

        try:
            await wait_until(done, what=lambda: (
                f"processed {box[0].states.processed if box else None} of {ends}; "
                f"actions {[a['rule'] for a in actions.accepted]}; "
                f"pages {[(p['service'], p['reasons']) for p in pages.pages]}"))
            await wait_until(lambda: {p: off for (_, p), off in box[0].states.committed.items()}
                        == ends)
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://127.0.0.1:{box[0].metrics_port}/metrics") as resp:
                scraped = await resp.text()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    # Actions: checkout restarted once; payments scaled out twice, then the budget (2) ran out.
    by_rule = sorted((a["rule"], a["target"]) for a in actions.accepted)
    assert by_rule == [("restart-checkout", "deployment/checkout"),
                       ("scale-payments", "deployment/payments"),
                       ("scale-payments", "deployment/payments")]
    assert len({a["idempotency_key"] for a in actions.accepted}) == 3
    assert set(reasons_for("search")) >= {"no remediation rule"}
    exhausted = [p for p in pages.pages if p["service"] == "payments"
                 and p["reasons"][-1] == "budget exhausted"]
    assert exhausted and exhausted[0]["metric"] == "queue_depth"
    page = next(p for p in pages.pages if p["service"] == "search")
    assert page["metric"] == "error_ratio" and page["value"] > 10 * page["baseline"]
    assert len(page["recent"]) == 30

    # Audit: chain intact; one intent and one outcome per executed action.
    report = verify(cfg.audit.path)
    assert report.ok, report.reason
    recs = [orjson.loads(line) for line in cfg.audit.path.read_bytes().splitlines()]
    intents = [r for r in recs if r["kind"] == "intent"]
    outcomes = [r for r in recs if r["kind"] == "outcome"]
    assert len(intents) == 3 and len(outcomes) == 3
    assert {r["body"]["result"] for r in outcomes} == {"success"}
    assert {r["body"]["idempotency_key"] for r in intents} == {
        r["body"]["idempotency_key"] for r in outcomes}
    # Every automated request is audited with its authorization: the policy rule that
    # allowed it and the limits it was counted against.
    requests = [r["body"] for r in recs if r["kind"] == "request"]
    queued = [b for b in requests if b["result"] == "queued"]
    assert sorted(b["request"]["idempotency_key"] for b in queued) == sorted(
        r["body"]["idempotency_key"] for r in intents)
    assert {b["authorization"]["rule"] for b in queued} == {"automation-production"}
    assert all(b["authorization"]["limits"] and b["request"]["actor"]["kind"] == "automation"
               and b["request"]["evidence"]["finding_id"] == b["request"]["finding_id"]
               for b in queued)
    refused = [b for b in requests if b["result"] == "refused"]
    assert refused and {b["checks"][-1]["code"] for b in refused} == {"budget_action_service"}

    # DLQ: every bad message, original bytes, exact reason header.
    dlq = await _read_all(bootstrap, cfg.kafka.dlq_topic, len(BAD))
    got = sorted((dict(r.headers)["reason"].decode(), r.value) for r in dlq)
    assert got == sorted((reason, raw) for raw, reason in BAD)

    # Offsets: everything processed was committed.
    committed = await _committed(bootstrap, cfg.kafka.group, unique_topic, sorted(ends))
    assert committed == ends

    # Own metrics.
    for needle in (
        "hotpath_messages_total", "hotpath_points_total",
        'hotpath_dlq_messages_total{reason="not json"} 1.0',
        "hotpath_batch_seconds_bucket", "hotpath_end_to_end_lag_seconds_bucket",
        "hotpath_findings_total",
        'hotpath_decisions_total{kind="act",reason="limits claimed"} 3.0',
        'hotpath_decisions_total{kind="page",reason="no remediation rule"}',
        'hotpath_action_requests_total{actor="automation",code="budget_action_service",'
        'status="refused"}',
        'hotpath_action_requests_total{actor="automation",code="claimed",status="queued"} 3.0',
        'hotpath_pages_total{outcome="sent",pager="webhook"}',
        'hotpath_actions_total{action="scale_out",outcome="succeeded"} 2.0',
        "hotpath_consumer_lag_messages{partition=",
        "hotpath_series 6.0",  # 3 services x 2 metrics, one region
    ):
        assert needle in scraped, needle
