"""The loop sizes getmany by points, not only messages: batch messages make small batches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.processor import BatchResult
from hotpath.runtime import Running, serve
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import produce
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka


async def test_batches_of_batch_messages_stay_near_max_batch_points(
    kafka_broker: KafkaBroker, redis_client: object, make_config: MakeConfig,
    unique_topic: str, tmp_path: Path,
) -> None:
    await kafka_broker.create_topic(unique_topic, partitions=1)
    t0 = time.time() - 400
    msgs = [(b"svc", orjson.dumps({"service": "svc", "ts": t0 + k,
                                   "metrics": {f"m{j:02d}": 10.0 + (j + k) % 3
                                               for j in range(50)}}))
            for k in range(300)]  # 15,000 points in 300 messages of 50
    await produce(kafka_broker.bootstrap, unique_topic, msgs)
    batches: list[BatchResult] = []
    box: list[Running] = []

    def ready(running: Running) -> None:
        box.append(running)
        running.on_batch.append(batches.append)

    stop = asyncio.Event()
    async with ActionReceiver() as actions, PageReceiver() as pages:
        cfg = make_config(kafka_broker.bootstrap, unique_topic, action_url=actions.url,
                          page_url=pages.url, kafka={"max_batch": 5000, "max_batch_points": 1000})
        task = asyncio.create_task(serve(cfg, stop, ready=ready))
        try:
            await wait_until(lambda: sum(b.points for b in batches) == 15_000, timeout=60)
        finally:
            stop.set()
            await task
    sizes = [b.messages for b in batches if b.messages]
    # The first batch is sized as if messages carried 100 points (10 of them); from then on
    # the measured 50 points per message give 20 messages, 1,000 points.
    assert sizes[0] <= 10
    assert max(sizes[1:]) <= 20
    assert max(b.points for b in batches) <= 1000
