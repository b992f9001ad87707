"""The kill switch's state in a real Redis: versions, concurrent flips, an outage."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from escalation.kill_switch import RUNNING, KillSwitch, PauseState
from hotpath.services.redis_server import RedisServer


async def test_never_set_reads_as_running(redis_client: aioredis.Redis) -> None:
    assert await KillSwitch(redis_client).read() == RUNNING


async def test_pause_and_resume_are_versioned(redis_client: aioredis.Redis) -> None:
    switch = KillSwitch(redis_client, prefix="t")
    paused = await switch.set(paused=True, actor="alice", reason="bad deploy", now=100.0)
    assert paused == PauseState(True, "alice", 100.0, "bad deploy", 1)
    assert await switch.read() == paused
    resumed = await switch.set(paused=False, actor="bob", reason="rolled back", now=160.0)
    assert (await switch.read()) == resumed == PauseState(False, "bob", 160.0, "rolled back", 2)
    assert await redis_client.exists("t:automation:pause") == 1


async def test_concurrent_flips_get_distinct_versions(redis_client: aioredis.Redis) -> None:
    switch = KillSwitch(redis_client)
    states = await asyncio.gather(*(
        switch.set(paused=i % 2 == 0, actor=f"op{i}", reason="drill", now=float(i))
        for i in range(10)))
    assert sorted(s.version for s in states) == list(range(1, 11))
    last = max(states, key=lambda s: s.version)
    assert await switch.read() == last


async def test_unreachable_redis_reads_as_unknown(redis_server: RedisServer,
                                                  redis_client: aioredis.Redis) -> None:
    switch = KillSwitch(redis_client, timeout_s=0.2)
    redis_server.stop()
    try:
        assert await switch.read() is None
    finally:
        redis_server.start()


async def test_a_read_sent_before_long_work_still_answers_after_it(
        redis_client: aioredis.Redis) -> None:
    switch = KillSwitch(redis_client, prefix="soon", timeout_s=0.25)
    paused = await switch.set(paused=True, actor="alice", reason="drill", now=5.0)
    pending = switch.read_soon()
    await asyncio.sleep(0)  # the GET goes out
    time.sleep(0.4)  # a batch's decode+detect holding the loop longer than the timeout
    assert await pending.result() == paused


async def test_an_abandoned_read_leaves_nothing_behind(redis_client: aioredis.Redis) -> None:
    switch = KillSwitch(redis_client, prefix="gone")
    pending = switch.read_soon()
    pending.cancel()
    pending.cancel()  # twice is harmless
    assert await switch.read() == RUNNING
