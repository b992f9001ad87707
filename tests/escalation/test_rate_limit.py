"""Rate limits: the pure rule as a table, the Redis script against the rule, and the wait."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from escalation.rate_limit import (
    RateDecision,
    RateLimit,
    RateLimiter,
    RateReason,
    decide,
    declared_limit,
)

FREE = RateDecision(True, 0.0, RateReason.TOKEN_FREE)


def full(wait: float) -> RateDecision:
    return RateDecision(False, wait, RateReason.WINDOW_FULL)


@pytest.mark.parametrize(
    ("spent", "now", "limit", "expected"),
    [
        ([], 0.0, RateLimit(1, 60.0), FREE),
        ([0.0], 0.0, RateLimit(1, 60.0), full(60.0)),
        ([0.0], 59.5, RateLimit(1, 60.0), full(0.5)),
        ([0.0], 60.0, RateLimit(1, 60.0), FREE),           # a token returns a window after
        ([5.0, 1.0, 3.0], 6.0, RateLimit(3, 10.0), full(5.0)),  # order does not matter
        ([1.0, 3.0, 5.0], 11.0, RateLimit(3, 10.0), FREE),
        # the limit was lowered with 4 spends outstanding: wait until only 1 is left
        ([1.0, 2.0, 3.0, 4.0], 5.0, RateLimit(2, 10.0), full(8.0)),
        ([0.0] * 119, 0.0, RateLimit.per_minute(120), FREE),
        ([0.0] * 120, 0.0, RateLimit.per_minute(120), full(60.0)),
    ],
)
def test_decide(spent: list[float], now: float, limit: RateLimit,
                expected: RateDecision) -> None:
    assert decide(spent, now, limit) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(120, RateLimit(120, 60.0)), (120.5, RateLimit(120, 60.0 * 120 / 120.5)),
     (1, RateLimit(1, 60.0)), (0.25, RateLimit(1, 240.0))],
)
def test_per_minute(rate: float, expected: RateLimit) -> None:
    assert RateLimit.per_minute(rate) == expected


def test_bad_limits_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"^rate must be > 0 events per minute, got -1$"):
        RateLimit.per_minute(-1)
    with pytest.raises(ValueError, match=r"^rate must be > 0 events per minute, got inf$"):
        RateLimit.per_minute(float("inf"))
    with pytest.raises(ValueError, match=r"^rate limit window must be > 0 s, got 0.0$"):
        RateLimit(1, 0.0)

    class Bad:
        name = "pd"
        rate_per_min = "120"

    with pytest.raises(ValueError, match=r"^pager 'pd': rate_per_min must be a number, got str$"):
        declared_limit(Bad())


async def test_the_script_decides_as_the_rule(redis_client: aioredis.Redis) -> None:
    """A seeded walk of arrival times: Redis grants exactly when the pure rule does."""
    rng = random.Random(7)
    limit = RateLimit(5, 10.0)
    now = [1764132000.0]
    limiter = RateLimiter(redis_client, lambda: now[0], asyncio.sleep)
    spent: list[float] = []
    for _ in range(200):
        now[0] += rng.choice([0.0, 0.0, 0.3, 1.7, 4.0, 9.99, 10.0])
        want = decide(spent, now[0], limit)
        got = await limiter.try_take("pd", limit)
        assert got.granted == want.granted
        assert got.wait_s == pytest.approx(want.wait_s, abs=1e-6)
        if want.granted:
            spent.append(now[0])
    assert 20 < len(spent) < 200  # the walk exercised both grants and refusals


async def test_acquire_waits_for_the_token_through_the_injected_sleep(
    redis_client: aioredis.Redis,
) -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(redis_client, lambda: now[0], sleep)
    limit = RateLimit(2, 10.0)
    waited = [await limiter.acquire("pd", limit) for _ in range(5)]
    assert waited == [0.0, 0.0, 10.0, 0.0, 10.0]
    assert slept == [10.0, 10.0] and now[0] == 120.0


async def test_buckets_are_per_pager_and_shared_by_every_limiter(
    redis_client: aioredis.Redis, redis_url: str,
) -> None:
    other = aioredis.Redis.from_url(redis_url)
    try:
        a = RateLimiter(redis_client, lambda: 0.0, asyncio.sleep)
        b = RateLimiter(other, lambda: 0.0, asyncio.sleep)  # another replica
        limit = RateLimit(4, 60.0)
        grants = await asyncio.gather(*(
            lim.try_take("pd", limit) for lim in (a, b, a, b, a, b, a, b)))
        assert sum(g.granted for g in grants) == 4
        assert (await b.try_take("slack", limit)).granted  # another pager's own bucket
    finally:
        await other.aclose()


async def test_with_redis_down_each_process_keeps_its_own_window() -> None:
    now = [0.0]
    down = RateLimiter(aioredis.Redis(host="127.0.0.1", port=1), lambda: now[0],
                       asyncio.sleep, timeout_s=0.5)
    limit = RateLimit(2, 30.0)
    assert (await down.try_take("pd", limit)).granted
    now[0] = 10.0
    assert (await down.try_take("pd", limit)).granted
    assert await down.try_take("pd", limit) == full(20.0)
    now[0] = 30.0
    assert (await down.try_take("pd", limit)).granted
