"""PageSender end to end: real redis-server, real HTTP receiver, injected sleep and clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from escalation.backoff import Backoff
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.outbox import PageOutbox
from escalation.pagers.base import Pager
from escalation.pagers.fake import FakePager
from escalation.pagers.webhook import WebhookPager
from escalation.retry import Outcome
from escalation.sender import PageSender
from escalation.spool import Spool
from hotpath.services.redis_server import RedisServer

from .conftest import Receiver, Reply
from .test_pagers_webhook import PAGE

A = replace(PAGE, dedup_key="hotpath-a", finding_id="a")
B = replace(PAGE, dedup_key="hotpath-b", finding_id="b")
STREAM = "hotpath:outbox:pages"


@dataclass
class Rig:
    """A sender whose sleeps are recorded (and skipped) and whose results are kept."""

    outbox: PageOutbox
    slept: list[float] = field(default_factory=list)
    results: list[tuple[str, Outcome]] = field(default_factory=list)

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        await asyncio.sleep(0)

    def sender(self, pagers: Sequence[Pager], consumer: str = "s1",
               max_attempts: int = 8) -> PageSender:
        return PageSender(
            self.outbox, pagers, Backoff(jitter=lambda: 1.0), clock=lambda: 0.0,
            sleep=self.sleep, max_attempts=max_attempts,
            on_result=lambda name, outcome, lat: self.results.append((name, outcome)),
            consumer=consumer, block_ms=10,
        )


def rig(redis: aioredis.Redis, tmp_path: Path, min_idle_ms: int = 60_000) -> Rig:
    return Rig(PageOutbox(redis, Spool(tmp_path), min_idle_ms=min_idle_ms))


async def test_500_then_202_is_delivered_once_after_a_retry(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.script = [Reply(500)]
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    assert await r.sender([WebhookPager(http_session, receiver.url)]).run_once() == 1
    assert [q.headers["Idempotency-Key"] for q in receiver.received] == ["hotpath-a"] * 2
    assert r.results == [("webhook", "retry"), ("webhook", "sent")]
    assert r.slept == [0.2]
    assert await redis_client.xlen(STREAM) == 0
    assert await r.outbox.queue.dead_letters() == []


async def test_429_retry_after_is_honoured(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.script = [Reply(429, {"Retry-After": "1"})]
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    await r.sender([WebhookPager(http_session, receiver.url)]).run_once()
    assert len(r.slept) == 1 and r.slept[0] >= 1.0
    assert len(receiver.received) == 2


async def test_400_is_dead_lettered_and_not_retried(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.default = Reply(400, body=b"unknown severity")
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    await r.sender([WebhookPager(http_session, receiver.url)]).run_once()
    assert len(receiver.received) == 1 and r.slept == []
    assert r.results == [("webhook", "failed")]
    assert await r.outbox.queue.dead_letters() == [
        (A, {"error": "webhook: HTTP 400: unknown severity"})
    ]
    assert await redis_client.xlen(STREAM) == 0  # acked: it will not come back


async def test_a_timeout_is_retried(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.script = [Reply(202, delay_s=0.3)]
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    pager = WebhookPager(http_session, receiver.url, timeout_s=0.05)
    await r.sender([pager]).run_once()
    assert r.results == [("webhook", "retry"), ("webhook", "sent")]
    assert [q.json()["dedup_key"] for q in receiver.received] == ["hotpath-a"] * 2


async def test_retries_are_spent_then_dead_lettered(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    r = rig(redis_client, tmp_path)
    pager = FakePager(failures=[RetryableDeliveryError("HTTP 503", status=503)] * 3)
    await r.outbox.put_many([A])
    await r.sender([pager], max_attempts=3).run_once()
    assert len(pager.attempts) == 3 and pager.sent == []
    assert r.slept == [0.2, 0.4]
    assert await r.outbox.queue.dead_letters() == [(A, {"error": "fake: HTTP 503"})]


async def test_one_refusing_pager_does_not_hold_back_the_others(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    good = FakePager("good")
    bad = FakePager("bad", failures=[PermanentDeliveryError("HTTP 403", status=403)])
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A, B])
    await r.sender([good, bad]).run_once()
    # The two pages go out concurrently, so which one meets the scripted 403 first varies;
    # what must hold: the good pager got both, the bad one the other, the refused one is dead.
    assert sorted(p.dedup_key for p in good.sent) == ["hotpath-a", "hotpath-b"]
    (delivered,) = bad.sent
    refused = A if delivered.dedup_key == B.dedup_key else B
    assert await r.outbox.queue.dead_letters() == [(refused, {"error": "bad: HTTP 403"})]


async def test_the_same_page_queued_twice_is_sent_once(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    pager = FakePager()
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    await r.sender([pager]).run_once()
    await r.outbox.put_many([A])  # a replayed batch after a crash
    await r.sender([pager], consumer="s2").run_once()
    assert [p.dedup_key for p in pager.sent] == ["hotpath-a"]
    assert await redis_client.xlen(STREAM) == 0


async def test_pages_spooled_while_redis_is_down_are_delivered(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path,
) -> None:
    pager = FakePager()
    r = rig(redis_client, tmp_path)
    stop = asyncio.Event()
    redis_server.stop()
    try:
        await r.outbox.put_many([A, B])
        assert r.outbox.spool.has_pending()
        task = asyncio.create_task(r.sender([pager]).run(stop))
        for _ in range(500):
            if len(pager.sent) == 2 and not r.outbox.spool.has_pending():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        redis_server.start()
    assert [p.dedup_key for p in pager.sent] == ["hotpath-a", "hotpath-b"]
    assert r.outbox.spool.pending() == []
    assert r.slept, "the claim failures backed off through the injected sleep"


async def test_pages_claimed_by_a_crashed_sender_are_delivered_by_a_new_one(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A, B])
    claimed = await r.outbox.claim("crashed", 10, 10)  # then SIGKILL: never acked
    assert len(claimed) == 2
    # A new process: fresh objects, another consumer name, min idle elapsed.
    fresh = rig(redis_client, tmp_path / "fresh", min_idle_ms=0)
    await fresh.sender([WebhookPager(http_session, receiver.url)], consumer="s2").run_once()
    assert sorted(q.json()["dedup_key"] for q in receiver.received) == ["hotpath-a", "hotpath-b"]
    assert await redis_client.xlen(STREAM) == 0


async def test_a_restart_under_the_same_name_redelivers_its_pending_pages(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    assert len(await r.outbox.claim("s1", 10, 10)) == 1  # crashed before sending
    pager = FakePager()
    await rig(redis_client, tmp_path).sender([pager], consumer="s1").run_once()
    assert [p.dedup_key for p in pager.sent] == ["hotpath-a"]


async def test_run_stops_promptly_when_idle(redis_client: aioredis.Redis, tmp_path: Path) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(rig(redis_client, tmp_path).sender([FakePager()]).run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert task.done() and task.exception() is None
