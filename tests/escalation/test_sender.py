"""PageSender end to end: real redis-server, real HTTP receiver, injected sleep and clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from escalation.backoff import Backoff
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.fallback import FallbackPolicy
from escalation.outbox import PageOutbox
from escalation.page import Page
from escalation.pagers.base import Pager
from escalation.pagers.fake import FakePager
from escalation.pagers.webhook import WebhookPager
from escalation.rate_limit import RateDecision, RateLimit, RateLimiter
from escalation.retry import Outcome
from escalation.sender import PageSender
from escalation.spool import Spool
from escalation.storm import StormPolicy
from hotpath.services.redis_server import RedisServer

from .conftest import Receiver, Reply, serving
from .test_pagers_webhook import PAGE

A = replace(PAGE, dedup_key="hotpath-a", finding_id="a")
B = replace(PAGE, dedup_key="hotpath-b", finding_id="b")
STREAM = "hotpath:outbox:pages"


@dataclass
class Time:
    """The injected clock; with ``moves`` a sleep moves it to the sleeper's deadline."""

    now: float = 0.0
    moves: bool = False

    def clock(self) -> float:
        return self.now


@dataclass
class Rig:
    """A sender whose sleeps are recorded (and skipped) and whose results are kept."""

    outbox: PageOutbox
    time: Time = field(default_factory=Time)
    slept: list[float] = field(default_factory=list)
    results: list[tuple[str, Outcome]] = field(default_factory=list)

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        wake = self.time.now + s
        await asyncio.sleep(0)
        if self.time.moves:
            self.time.now = max(self.time.now, wake)

    def sender(self, pagers: Sequence[Pager], consumer: str = "s1",
               max_attempts: int = 8, **options: Any) -> PageSender:
        """``options``: fallback, fallback_policy, rate_limits, storm."""
        return PageSender(
            self.outbox, pagers, Backoff(jitter=lambda: 1.0), clock=self.time.clock,
            sleep=self.sleep, max_attempts=max_attempts,
            on_result=lambda name, outcome, lat: self.results.append((name, outcome)),
            consumer=consumer, block_ms=10, **options,
        )


def rig(redis: aioredis.Redis, tmp_path: Path, min_idle_ms: int = 60_000,
        time: Time | None = None) -> Rig:
    return Rig(PageOutbox(redis, Spool(tmp_path), min_idle_ms=min_idle_ms), time or Time())


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
            # Wait for a backed-off claim too: under load the spool can be drained before
            # the first claim has failed.
            if len(pager.sent) == 2 and not r.outbox.spool.has_pending() and r.slept:
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


# --- Retry-After, fallback, rate limits, storms ------------------------------------------


@pytest.fixture
async def fallback_receiver() -> AsyncIterator[Receiver]:
    """A second real receiver (the fallback: Slack, say), like ``receiver``."""
    async with serving(Receiver()) as rec:
        yield rec


class Declaring:
    """A real pager that declares its receiver's rate, as a PagerDuty adapter does."""

    def __init__(self, inner: Pager, rate_per_min: float) -> None:
        self._inner = inner
        self.rate_per_min = rate_per_min

    @property
    def name(self) -> str:
        return self._inner.name

    async def send(self, page: Page) -> None:
        await self._inner.send(page)


class Granting(RateLimiter):
    """The real Redis limiter, noting the (injected) time of every token it spends.

    The grant time is what the shared bucket accounted; with concurrent tasks and a clock
    moved by sleepers, the moment a request leaves can trail it in the simulation.
    """

    def __init__(self, redis: aioredis.Redis, rig: Rig) -> None:
        super().__init__(redis, rig.time.clock, rig.sleep)
        self._time = rig.time
        self.granted: list[float] = []

    async def try_take(self, key: str, limit: RateLimit) -> RateDecision:
        now = self._time.now
        decision = await super().try_take(key, limit)
        if decision.granted:
            self.granted.append(now)
        return decision


def pages(n: int, prefix: str = "p") -> list[Page]:
    return [replace(PAGE, dedup_key=f"hotpath-{prefix}{i}", finding_id=f"{prefix}{i}",
                    summary=f"checkout error_ratio page {i}") for i in range(n)]


async def drain(sender: PageSender) -> None:
    while await sender.run_once():
        pass


async def test_429_retry_after_3_is_waited_in_full_then_delivered(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.script = [Reply(429, {"Retry-After": "3"})]
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    await r.sender([WebhookPager(http_session, receiver.url)]).run_once()
    assert r.slept == [3.0]  # not the 0.2 s backoff: the receiver's ask is the floor
    assert [q.json()["dedup_key"] for q in receiver.received] == ["hotpath-a"] * 2
    assert r.results == [("webhook", "retry"), ("webhook", "sent")]
    assert await r.outbox.queue.dead_letters() == []


async def test_400_is_dead_lettered_and_the_fallback_alerted_once(
    redis_client: aioredis.Redis, tmp_path: Path, receiver: Receiver,
    fallback_receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.default = Reply(400, body=b"unknown severity")
    r = rig(redis_client, tmp_path)
    slack = WebhookPager(http_session, fallback_receiver.url, name="slack")
    await r.outbox.put_many([A])
    await r.sender([WebhookPager(http_session, receiver.url)], fallback=slack).run_once()
    assert len(receiver.received) == 1 and r.slept == []
    assert await r.outbox.queue.dead_letters() == [
        (A, {"error": "webhook: HTTP 400: unknown severity"})]
    [alert] = fallback_receiver.received
    body = alert.json()
    assert alert.headers["Idempotency-Key"] == body["dedup_key"] == "hotpath-a-fallback-webhook"
    assert body["summary"] == (
        "Not delivered to webhook (rejected: HTTP 400: unknown severity) — " + A.summary)
    assert body["context"]["delivery_failure"] == {
        "receiver": "webhook", "reason": "rejected", "error": "HTTP 400: unknown severity",
        "status": 400, "attempts": 1, "dead_lettered": True, "page_dedup_key": "hotpath-a"}
    assert body["reasons"] == [*A.reasons, "delivery to webhook failed: rejected"]
    # Replayed (another sender, after a crash): the primary is tried again, the human who
    # already heard through the fallback is not told twice.
    await r.outbox.put_many([A])
    await r.sender([WebhookPager(http_session, receiver.url)], consumer="s2",
                   fallback=slack).run_once()
    assert len(receiver.received) == 2 and len(fallback_receiver.received) == 1


async def test_a_failing_receiver_alerts_the_fallback_before_the_retries_end(
    redis_client: aioredis.Redis, tmp_path: Path, receiver: Receiver,
    fallback_receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.script = [Reply(503, body=b"maintenance")] * 4
    r = rig(redis_client, tmp_path)
    await r.outbox.put_many([A])
    await r.sender(
        [WebhookPager(http_session, receiver.url)],
        fallback=WebhookPager(http_session, fallback_receiver.url, name="slack"),
        fallback_policy=FallbackPolicy(after_failures=3),
    ).run_once()
    assert [q.json()["dedup_key"] for q in receiver.received] == ["hotpath-a"] * 5
    [alert] = [q.json() for q in fallback_receiver.received]
    assert alert["summary"].startswith(
        "Delivery failing to webhook (repeated failures: HTTP 503: maintenance) — ")
    assert alert["context"]["delivery_failure"]["attempts"] == 3
    assert alert["context"]["delivery_failure"]["dead_lettered"] is False
    assert await r.outbox.queue.dead_letters() == []  # delivered in the end


async def test_a_pager_failing_for_t_seconds_alerts_the_fallback_on_a_new_page_at_once(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    t = Time(moves=True)
    r = rig(redis_client, tmp_path, time=t)
    pd = FakePager("pd", failures=[RetryableDeliveryError("HTTP 503", status=503)] * 4)
    slack = FakePager("slack")
    sender = r.sender([pd], max_attempts=3, fallback=slack,
                      fallback_policy=FallbackPolicy(after_failures=10, after_s=2.0))
    await r.outbox.put_many([A])
    await sender.run_once()               # fails at t = 0, 0.2, 0.6: dead-lettered
    t.now = 5.0
    await r.outbox.put_many([B])
    await sender.run_once()               # pd has failed since t=0: B alerts at its 1st try
    assert [p.dedup_key for p in pd.sent] == ["hotpath-b"]
    got = [(p.dedup_key, p.context["delivery_failure"]["reason"],
            p.context["delivery_failure"]["attempts"]) for p in slack.sent]
    assert got == [("hotpath-a-fallback-pd", "retries spent", 3),
                   ("hotpath-b-fallback-pd", "receiver failing", 1)]
    assert await r.outbox.queue.dead_letters() == [(A, {"error": "pd: HTTP 503"})]


async def test_a_fallback_that_fails_too_dead_letters_its_alert(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    r = rig(redis_client, tmp_path)
    pd = FakePager("pd", failures=[PermanentDeliveryError("HTTP 400", status=400)])
    slack = FakePager("slack", failures=[PermanentDeliveryError("HTTP 403", status=403)])
    await r.outbox.put_many([A])
    await r.sender([pd], fallback=slack).run_once()
    dead = [(p.dedup_key, meta["error"]) for p, meta in await r.outbox.queue.dead_letters()]
    assert dead == [("hotpath-a-fallback-pd", "slack: HTTP 403"), ("hotpath-a", "pd: HTTP 400")]


async def test_130_pages_to_a_120_per_minute_pager_wait_for_tokens_and_none_is_lost(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    t = Time(now=1764132000.0, moves=True)
    r = rig(redis_client, tmp_path, time=t)
    batch = pages(130)
    await r.outbox.put_many(batch)
    pd = Declaring(WebhookPager(http_session, receiver.url), rate_per_min=120)
    limiter = Granting(redis_client, r)
    await drain(r.sender([pd], limiter=limiter))
    assert Counter(at - 1764132000.0 for at in limiter.granted) == {0.0: 120, 60.0: 10}
    assert r.slept and set(r.slept) == {60.0}  # waited for the refill, through the sleep
    assert sorted(q.json()["dedup_key"] for q in receiver.received) == sorted(
        p.dedup_key for p in batch)
    assert await redis_client.xlen(STREAM) == 0
    assert await r.outbox.queue.dead_letters() == []


async def test_two_senders_sharing_redis_never_exceed_the_rate_together(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    t = Time(moves=True)
    other = aioredis.Redis.from_url(redis_url)  # the second replica's own connection
    try:
        r1 = rig(redis_client, tmp_path / "1", time=t)
        r2 = rig(other, tmp_path / "2", time=t)
        batch = pages(200)
        await r1.outbox.put_many(batch)
        l1, l2 = Granting(redis_client, r1), Granting(other, r2)
        limit = {"webhook": RateLimit.per_minute(120)}  # from config, not the pager
        await asyncio.gather(
            drain(r1.sender([WebhookPager(http_session, receiver.url)], consumer="s1",
                            rate_limits=limit, limiter=l1)),
            drain(r2.sender([WebhookPager(http_session, receiver.url)], consumer="s2",
                            rate_limits=limit, limiter=l2)))
    finally:
        await other.aclose()
    assert l1.granted and l2.granted, "both replicas sent"
    times = sorted(l1.granted + l2.granted)
    assert Counter(times) == {0.0: 120, 60.0: 80}
    assert all(times[i + 120] - times[i] >= 60.0 for i in range(len(times) - 120))
    assert sorted(q.json()["dedup_key"] for q in receiver.received) == sorted(
        p.dedup_key for p in batch)


async def test_a_storm_of_50_pages_is_20_pages_and_one_storm_page_listing_30(
    redis_client: aioredis.Redis, tmp_path: Path,
    receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    t = Time(now=1764132010.0)  # bucket 29402200 runs from 1764132000 to 1764132060
    r = rig(redis_client, tmp_path, time=t)
    sender = r.sender([WebhookPager(http_session, receiver.url)], storm=StormPolicy(20))
    batch = pages(50)
    await r.outbox.put_many(batch)
    await drain(sender)
    singles = [q.json()["dedup_key"] for q in receiver.received]
    assert len(singles) == 20 and r.results.count(("webhook", "collapsed")) == 30
    t.now = 1764132059.9
    assert await sender.run_once() == 0  # the minute is not over: no storm page yet
    t.now = 1764132060.0
    assert await sender.run_once() == 1
    [storm] = [q.json() for q in receiver.received[20:]]
    assert storm["dedup_key"] == "hotpath-storm-webhook-29402200"
    assert storm["summary"].startswith("Page storm: 30 more pages for webhook in the 60 s "
                                       "from 2025-11-26 04:40:00 UTC (over 20 per 60 s)")
    listed = storm["context"]["storm"]["pages"]
    assert {tuple(sorted(e)) for e in listed} == {
        ("dedup_key", "metric", "service", "severity", "summary")}
    keys = [e["dedup_key"] for e in listed]
    assert len(keys) == 30 and not set(keys) & set(singles)
    assert sorted(singles + keys) == sorted(p.dedup_key for p in batch)  # nothing lost
    assert await sender.run_once() == 0 and len(receiver.received) == 21
    assert await redis_client.xlen(STREAM) == 0


async def test_storm_protection_fails_open_while_redis_is_down(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path,
) -> None:
    pager = FakePager()
    r = rig(redis_client, tmp_path)
    stop = asyncio.Event()
    redis_server.stop()
    try:
        await r.outbox.put_many(pages(3))  # spooled
        task = asyncio.create_task(r.sender([pager], storm=StormPolicy(1)).run(stop))
        for _ in range(500):
            if len(pager.sent) == 3:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        redis_server.start()
    assert [p.dedup_key for p in pager.sent] == ["hotpath-p0", "hotpath-p1", "hotpath-p2"]


def test_rate_limits_must_name_a_configured_pager(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"^rate limits for unknown pagers \['pd'\]; "
                                         r"pagers are \['fake'\]$"):
        rig(redis_client, tmp_path).sender([FakePager()], rate_limits={
            "pd": RateLimit.per_minute(120)})


async def test_a_page_goes_only_to_the_receivers_it_names(
    redis_client: aioredis.Redis, tmp_path: Path,
) -> None:
    slack, pd = FakePager("slack"), FakePager("pagerduty")
    r = rig(redis_client, tmp_path)
    level_1 = replace(A, receivers=("slack",))
    stray = replace(B, receivers=("slack", "opsgenie"))  # opsgenie is not configured
    await r.outbox.put_many([level_1, stray])
    await r.sender([slack, pd]).run_once()
    assert sorted(p.dedup_key for p in slack.sent) == ["hotpath-a", "hotpath-b"]
    assert pd.sent == []
    assert await r.outbox.queue.dead_letters() == [(stray, {"error": "opsgenie: no such pager"})]
