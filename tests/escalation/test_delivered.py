"""DeliveredSet: shared through Redis across restarts, local while Redis is down."""

from __future__ import annotations

import redis.asyncio as aioredis

from escalation.delivered import DeliveredSet
from hotpath.services.redis_server import RedisServer


async def test_survives_a_restart_through_redis_with_a_ttl(redis_client: aioredis.Redis) -> None:
    await DeliveredSet(redis_client, clock=lambda: 0.0).add("pd", "hotpath-a")
    fresh = DeliveredSet(redis_client, clock=lambda: 0.0)
    assert await fresh.contains("pd", "hotpath-a")
    assert not await fresh.contains("slack", "hotpath-a")  # per pager
    ttl = await redis_client.ttl("hotpath:outbox:delivered:pd:hotpath-a")
    assert 7 * 24 * 3600 - 5 < ttl <= 7 * 24 * 3600


async def test_remembers_locally_while_redis_is_down_until_the_ttl(
    redis_client: aioredis.Redis, redis_server: RedisServer,
) -> None:
    now = [0.0]
    ds = DeliveredSet(redis_client, clock=lambda: now[0], ttl_s=60)
    redis_server.stop()
    try:
        await ds.add("pd", "hotpath-a")
        assert await ds.contains("pd", "hotpath-a")
        assert not await ds.contains("pd", "hotpath-b")  # unknown: better twice than never
        now[0] = 61.0
        assert not await ds.contains("pd", "hotpath-a")
    finally:
        redis_server.start()
