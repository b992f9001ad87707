"""Two processors in one consumer group on Apache Kafka: the one losing partitions commits
and checkpoints what it processed; the one gaining them resumes the detectors warm."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import batch_msg, produce, steady
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

SERVICES = [f"svc{i}" for i in range(8)]  # no remediation rules: every finding is paged
WARM = 40  # points per series, more than the 30-point detector warm-up


async def test_rebalance_commits_on_revoke_and_resumes_warm(
    kafka_broker: KafkaBroker, redis_client: object, make_config: MakeConfig,
    unique_topic: str, tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await kafka_broker.create_topic(unique_topic, partitions=4)
    rng = np.random.default_rng(3)
    t0 = time.time() - 200
    warm = [m for s in SERVICES for m in steady(s, {"rps": 100.0}, t0, WARM, 1.0, rng)]
    await produce(bootstrap, unique_topic, warm)
    total = len(warm)

    async with ActionReceiver() as actions, PageReceiver(None) as pages:
        group = f"g-{unique_topic}"
        cfg_a = make_config(bootstrap, unique_topic, action_url=actions.url,
                            page_url=pages.url, group=group)
        cfg_b = make_config(bootstrap, unique_topic, action_url=actions.url,
                            page_url=pages.url, group=group,
                            audit={"path": tmp_path / "audit-b.jsonl"},
                            spool={"dir": tmp_path / "spool-b"})
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        a: list[Running] = []
        b: list[Running] = []
        task_a = asyncio.create_task(serve(cfg_a, stop_a, ready=a.append))
        task_b: asyncio.Task[None] | None = None
        try:
            await wait_until(lambda: bool(a) and sum(a[0].states.processed.values()) == total,
                             what="A consumed the warm-up")
            processed_by_a = dict(a[0].states.processed)
            task_b = asyncio.create_task(serve(cfg_b, stop_b, ready=b.append))
            await wait_until(lambda: bool(b) and len(b[0].states.states) > 0
                             and len(a[0].states.states) + len(b[0].states.states) == 4,
                             timeout=60, what="partitions split between A and B")
            moved = set(b[0].states.states)
            # B resumed every partition it took from A's checkpoint, at A's processed offset.
            assert b[0].states.restored == {
                tp: processed_by_a[tp] for tp in moved if tp in processed_by_a}
            assert b[0].states.restored, "B took over at least one partition with data"

            spikes = [batch_msg(s, t0 + WARM + i, {"rps": 900.0})
                      for s in SERVICES for i in range(3)]
            await produce(bootstrap, unique_topic, spikes)
            await wait_until(lambda: {p["service"] for p in pages.pages} == set(SERVICES),
                             what="every service paged")
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.wait_for(task_a, 30)
            if task_b is not None:
                await asyncio.wait_for(task_b, 30)
    # B raised findings on the partitions it took over without warming up again.
    assert b[0].metrics.findings._value.get() >= 1
    assert all("no remediation rule" in p["reasons"] for p in pages.pages)
