"""Redis down: automation fails closed (zero actions, paged "budget store unavailable"),
paging fails open (pages spooled to disk and delivered), and all resumes when it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_broker import KafkaBroker
from hotpath.services.redis_server import RedisServer
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import batch_msg, produce, steady
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

LATENCY = {"http_latency_p99_ms": 200.0}


async def test_redis_down_pages_instead_of_acting_and_recovers(
    kafka_broker: KafkaBroker, redis_server: RedisServer, redis_client: object,
    make_config: MakeConfig, unique_topic: str, tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await kafka_broker.create_topic(unique_topic, partitions=1)
    rng = np.random.default_rng(5)
    t0 = time.time() - 200
    await produce(bootstrap, unique_topic, steady("checkout", LATENCY, t0, 40, 1.0, rng))

    async with ActionReceiver() as actions, PageReceiver(None) as pages:
        cfg = make_config(bootstrap, unique_topic, action_url=actions.url, page_url=pages.url)
        stop = asyncio.Event()
        box: list[Running] = []
        task = asyncio.create_task(serve(cfg, stop, ready=box.append))
        try:
            await wait_until(lambda: bool(box) and sum(box[0].states.processed.values()) >= 40,
                             what="warm-up consumed")
            redis_server.stop()
            # Incident while Redis is down: rule matches, but the budget cannot be checked.
            spike = [batch_msg("checkout", t0 + 40 + i, {"http_latency_p99_ms": 1500.0})
                     for i in range(3)]
            calm = steady("checkout", LATENCY, t0 + 43, 20, 1.0, rng)
            await produce(bootstrap, unique_topic, spike + calm)
            await wait_until(lambda: any("budget store unavailable" in p["reasons"]
                                         for p in pages.pages), what="page while Redis down")
            assert actions.accepted == []
            page = next(p for p in pages.pages if "budget store unavailable" in p["reasons"])
            assert page["service"] == "checkout" and page["metric"] == "http_latency_p99_ms"
            assert page["summary"].endswith("budget store unavailable")
            assert any(cfg.spool.dir.iterdir()), "pages were spooled to disk while Redis was down"

            redis_server.start()
            spike2 = [batch_msg("checkout", t0 + 63 + i, {"http_latency_p99_ms": 1500.0})
                      for i in range(3)]
            tail = steady("checkout", LATENCY, t0 + 66, 5, 1.0, rng)
            await produce(bootstrap, unique_topic, spike2 + tail)
            total = 40 + len(spike) + len(calm) + len(spike2) + len(tail)
            await wait_until(lambda: len(actions.accepted) == 1, what="action after recovery")
            await wait_until(lambda: sum(box[0].states.committed.values()) == total,
                             what="all offsets committed after recovery")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert actions.accepted[0]["rule"] == "restart-checkout"
    denied = box[0].metrics.requests.labels("automation", "refused",
                                             "unavailable")._value.get()
    assert denied >= 1
