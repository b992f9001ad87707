"""PageOutbox: Redis first, the fsynced spool when Redis is down, an error only if both fail."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from escalation.errors import OutboxError
from escalation.outbox import PageOutbox
from escalation.spool import Spool
from hotpath.services.redis_server import RedisServer

from .test_pagers_webhook import PAGE

A = replace(PAGE, dedup_key="hotpath-a", finding_id="a")
B = replace(PAGE, dedup_key="hotpath-b", finding_id="b")


async def test_put_many_goes_to_the_stream(redis_client: aioredis.Redis, tmp_path: Path) -> None:
    ob = PageOutbox(redis_client, Spool(tmp_path))
    await ob.put_many([A, B])
    assert await redis_client.xlen("hotpath:outbox:pages") == 2
    got = await ob.claim("s1", 10, 10)
    assert [p for _, p in got] == [A, B]
    await ob.ack(got[0][0])
    assert await redis_client.xlen("hotpath:outbox:pages") == 1
    assert not ob.spool.has_pending()


async def test_redis_down_spools_and_returns(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    ob = PageOutbox(redis_client, Spool(tmp_path))
    redis_server.stop()
    try:
        await ob.put_many([A, B])
    finally:
        redis_server.start()
    # On disk, readable by a fresh process.
    assert Spool(tmp_path).pending() == [A, B]


async def test_redis_and_spool_both_down_raise_outbox_error(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    spool.pages_path.mkdir()  # the spool file cannot be opened for append
    ob = PageOutbox(redis_client, spool)
    redis_server.stop()
    try:
        with pytest.raises(OutboxError, match=r"^neither Redis nor the spool at .* took 1 page"):
            await ob.put_many([A])
    finally:
        redis_server.start()


async def test_dead_letter_goes_to_the_dead_stream_or_the_spool(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    ob = PageOutbox(redis_client, Spool(tmp_path))
    await ob.dead_letter(A, "webhook: HTTP 400")
    assert await ob.queue.dead_letters() == [(A, {"error": "webhook: HTTP 400"})]
    redis_server.stop()
    try:
        await ob.dead_letter(B, "webhook: HTTP 404")
    finally:
        redis_server.start()
    assert ob.spool.dead() == [(B, "webhook: HTTP 404")]


async def test_put_many_of_nothing_touches_nothing(tmp_path: Path) -> None:
    ob = PageOutbox(aioredis.Redis(port=1), Spool(tmp_path))
    await ob.put_many([])
    assert not ob.spool.pages_path.exists()


async def test_depth_counts_what_waits_in_the_stream_and_the_spool(
        redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path) -> None:
    outbox = PageOutbox(redis_client, Spool(tmp_path))
    assert await outbox.depth() == 0
    pages = [replace(PAGE, dedup_key=f"k{i}") for i in range(3)]
    await outbox.put_many(pages)
    assert await outbox.depth() == 3           # nobody has read yet
    claimed = await outbox.claim("s1", 2, 1)
    assert len(claimed) == 2
    assert await outbox.depth() == 3           # 2 claimed (pending), 1 not yet read
    await outbox.ack(claimed[0][0])
    assert await outbox.depth() == 2
    redis_server.stop()
    try:
        await outbox.put_many([replace(PAGE, dedup_key="k9")])  # spooled
        assert await outbox.depth() is None    # Redis cannot say
    finally:
        redis_server.start()
    # The test server keeps nothing across a restart: only the spooled page waits now.
    assert await outbox.depth() == 1
