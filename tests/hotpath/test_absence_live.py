"""A series that stops reporting is paged by the live loop's clock tick (Apache Kafka)."""

from __future__ import annotations

import asyncio
import time

import pytest

from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import serve
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import batch_msg, produce
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka


async def test_silent_series_is_paged_with_the_absence_detector(
    kafka_broker: KafkaBroker, redis_client: object, make_config: MakeConfig,
    unique_topic: str,
) -> None:
    await kafka_broker.create_topic(unique_topic, partitions=1)
    async with ActionReceiver() as actions, PageReceiver(None) as pages:
        cfg = make_config(kafka_broker.bootstrap, unique_topic, action_url=actions.url,
                          page_url=pages.url,
                          detectors={"tick_interval_s": 0.2,
                                     "profiles": [{"name": "heartbeats",
                                                   "match": {"metric": "heartbeat"},
                                                   "detectors": {
                                                       "ewma": None, "static": None,
                                                       "absence": {"k": 3,
                                                                   "min_silence_s": 2}}}]})
        now = time.time()
        # One point a second for 10 s, ending now; then nothing.
        await produce(kafka_broker.bootstrap, unique_topic,
                      [batch_msg("inventory", now - 9 + i, {"heartbeat": 1.0})
                       for i in range(10)])
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, stop))
        try:
            await wait_until(lambda: bool(pages.pages), timeout=30, what="absence page")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    (page,) = pages.pages
    assert (page["service"], page["metric"], page["detectors"]) == (
        "inventory", "heartbeat", ["absence"])
    assert page["reasons"] == ["no remediation rule"]
    assert page["baseline"] == pytest.approx(1.0)  # the expected interval, seconds
    assert page["ts"] == pytest.approx(now, abs=0.01)  # silent since the last point
    assert actions.accepted == []
