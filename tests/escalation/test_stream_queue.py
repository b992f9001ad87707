"""StreamQueue against a real redis-server: claim, ack, reclaim after a crash, poison."""

from __future__ import annotations

import contextlib

import redis
import redis.asyncio as aioredis

from escalation.stream_queue import StreamQueue
from hotpath.services.redis_server import RedisServer


def queue(redis: aioredis.Redis, min_idle_ms: int = 60_000) -> StreamQueue[str]:
    def decode(b: bytes) -> str:
        text = b.decode()
        if text.startswith("!"):
            raise ValueError(f"bad item {text!r}")
        return text

    return StreamQueue(redis, "q", "g", encode=str.encode, decode=decode,
                       min_idle_ms=min_idle_ms)


Rows = list[tuple[bytes, dict[bytes, bytes]]]


async def queue_entries(redis: aioredis.Redis, stream: str) -> Rows:
    rows: Rows = await redis.xrange(stream)  # type: ignore[assignment]
    return rows


async def test_put_claim_ack(redis_client: aioredis.Redis) -> None:
    q = queue(redis_client)
    ids = await q.put_many(["a", "b", "c"])
    assert len(ids) == 3
    got = await q.claim("c1", count=2, block_ms=10)
    assert [item for _, item in got] == ["a", "b"]
    for eid, _ in got:
        await q.ack(eid)
    assert [item for _, item in await q.claim("c1", 10, 10)] == ["c"]
    assert await redis_client.xlen("q") == 1  # acked entries are deleted, "c" is pending
    assert await q.claim("c1", 10, 10) == []


async def test_a_restarted_consumer_rereads_its_own_pending_entries(
    redis_client: aioredis.Redis,
) -> None:
    await queue(redis_client).put_many(["a", "b"])
    crashed = queue(redis_client)
    assert [i for _, i in await crashed.claim("c1", 10, 10)] == ["a", "b"]
    # SIGKILL: nothing acked. The new process reuses the consumer name.
    restarted = queue(redis_client)
    again = await restarted.claim("c1", 1, 10)
    assert [i for _, i in again] == ["a"]
    await restarted.ack(again[0][0])
    assert [i for _, i in await restarted.claim("c1", 10, 10)] == ["b"]


async def test_idle_entries_of_a_dead_consumer_are_claimed_by_another(
    redis_client: aioredis.Redis,
) -> None:
    await queue(redis_client).put_many(["a"])
    assert [i for _, i in await queue(redis_client).claim("dead", 10, 10)] == ["a"]
    assert await queue(redis_client, min_idle_ms=60_000).claim("other", 10, 10) == []
    stolen = await queue(redis_client, min_idle_ms=0).claim("other", 10, 10)
    assert [i for _, i in stolen] == ["a"]
    pending = await redis_client.xpending_range("q", "g", "-", "+", 10)
    assert [p["consumer"] for p in pending] == [b"other"]


async def test_an_undecodable_entry_is_dead_lettered_and_acked(
    redis_client: aioredis.Redis,
) -> None:
    q = queue(redis_client)
    await q.put_many(["a", "!x", "b"])
    assert [i for _, i in await q.claim("c1", 10, 10)] == ["a", "b"]
    [(_, fields)] = await queue_entries(redis_client, "q:dead")
    assert fields[b"d"] == b"!x"
    assert fields[b"error"] == b"undecodable: bad item '!x'"
    # The poison entry is gone; the two good ones wait for their ack.
    assert (await redis_client.xpending("q", "g"))["pending"] == 2
    assert await redis_client.xlen("q") == 2


async def test_the_group_is_recreated_after_redis_restarts_empty(
    redis_client: aioredis.Redis, redis_server: RedisServer,
) -> None:
    q = queue(redis_client)
    await q.put_many(["a"])
    assert len(await q.claim("c1", 10, 10)) == 1
    redis_server.stop()
    redis_server.start()
    with contextlib.suppress(redis.ConnectionError):
        await redis_client.ping()  # the pooled connection died with the old server
    await q.put_many(["b"])  # XADD recreates the stream, not the group
    assert [i for _, i in await q.claim("c1", 10, 10)] == ["b"]


async def test_resp3_replies_are_read_too(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, protocol=3)
    try:
        await client.flushall()
        q = queue(client, min_idle_ms=0)
        await q.put_many(["a", "b"])
        assert [i for _, i in await q.claim("c1", 10, 10)] == ["a", "b"]
        assert [i for _, i in await queue(client, min_idle_ms=0).claim("c2", 10, 10)] == [
            "a", "b"]
        assert await queue(client).dead_letters() == []
    finally:
        await client.aclose()
