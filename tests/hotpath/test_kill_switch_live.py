"""The kill switch in the live loop (Apache Kafka, Redis): paused within one batch, paged
with the reason, audited; resumed, automation acts again."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from escalation.audit import verify
from escalation.kill_switch import KillSwitch
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import batch_msg, produce, steady
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

LATENCY = {"http_latency_p99_ms": 200.0}


async def test_pause_pages_instead_of_acting_and_resume_acts_again(
    kafka_broker: KafkaBroker, redis_client: aioredis.Redis, make_config: MakeConfig,
    unique_topic: str,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await kafka_broker.create_topic(unique_topic, partitions=1)
    rng = np.random.default_rng(9)
    t0 = time.time() - 200
    await produce(bootstrap, unique_topic, steady("checkout", LATENCY, t0, 40, 1.0, rng))
    switch = KillSwitch(redis_client)
    async with ActionReceiver() as actions, PageReceiver(None) as pages:
        cfg = make_config(bootstrap, unique_topic, action_url=actions.url, page_url=pages.url)
        stop = asyncio.Event()
        box: list[Running] = []
        task = asyncio.create_task(serve(cfg, stop, ready=box.append))
        try:
            await wait_until(lambda: bool(box) and sum(box[0].states.processed.values()) >= 40,
                             what="warm-up consumed")
            await switch.set(paused=True, actor="alice", reason="bad deploy", now=time.time())
            spike = [batch_msg("checkout", t0 + 40 + i, {"http_latency_p99_ms": 1500.0})
                     for i in range(3)]
            await produce(bootstrap, unique_topic,
                          spike + steady("checkout", LATENCY, t0 + 43, 20, 1.0, rng))
            await wait_until(lambda: any("automation paused" in p["reasons"]
                                         for p in pages.pages), what="page while paused")
            assert actions.accepted == []

            await switch.set(paused=False, actor="bob", reason="rolled back", now=time.time())
            spike2 = [batch_msg("checkout", t0 + 63 + i, {"http_latency_p99_ms": 1500.0})
                      for i in range(3)]
            await produce(bootstrap, unique_topic, spike2)
            await wait_until(lambda: len(actions.accepted) == 1, what="action after resume")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert verify(cfg.audit.path).ok
    recs = [orjson.loads(line) for line in cfg.audit.path.read_bytes().splitlines()]
    switches = [(r["body"]["paused"], r["body"]["actor"], r["body"]["reason"])
                for r in recs if r["kind"] == "automation"]
    assert switches == [(True, "alice", "bad deploy"), (False, "bob", "rolled back")]
    paused_page = next(p for p in pages.pages if "automation paused" in p["reasons"])
    assert paused_page["summary"].endswith("automation paused")
