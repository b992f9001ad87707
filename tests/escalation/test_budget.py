"""Rolling-window budgets against a real redis-server; failures of every kind fail closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from escalation.budget import (
    DEFAULT_IDEMPOTENCY_TTL_S,
    BudgetRequest,
    RedisBudget,
    _outcome,
    budget_key,
    idempotency_key,
)
from escalation.decision import BudgetOutcome, BudgetStatus
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

CLAIMED, DUPLICATE, EXHAUSTED, UNAVAILABLE = (
    BudgetStatus.CLAIMED,
    BudgetStatus.DUPLICATE,
    BudgetStatus.EXHAUSTED,
    BudgetStatus.UNAVAILABLE,
)
T0 = 1764132000.0


class Clock:
    """A hand-moved clock that counts how often it is read."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budget(redis_client: aioredis.Redis, clock: Clock) -> RedisBudget:
    return RedisBudget(redis_client, clock)


def out(status: BudgetStatus, used: int, limit: int, window_s: float = 60.0) -> BudgetOutcome:
    return BudgetOutcome(status, used, limit, window_s)


async def test_claims_up_to_the_limit_then_exhausted(budget: RedisBudget) -> None:
    got = [await budget.claim("restart", "checkout", f"k{i}", 3, 60.0) for i in range(5)]
    assert got == [
        out(CLAIMED, 1, 3), out(CLAIMED, 2, 3), out(CLAIMED, 3, 3),
        out(EXHAUSTED, 3, 3), out(EXHAUSTED, 3, 3),
    ]


async def test_limit_zero_never_acts(budget: RedisBudget) -> None:
    assert await budget.claim("restart", "checkout", "k", 0, 60.0) == out(EXHAUSTED, 0, 0)


async def test_window_rolls_with_the_injected_clock(
    budget: RedisBudget, clock: Clock, redis_client: aioredis.Redis
) -> None:
    assert await budget.claim("restart", "checkout", "a", 2, 60.0) == out(CLAIMED, 1, 2)
    clock.now = T0 + 10
    assert await budget.claim("restart", "checkout", "b", 2, 60.0) == out(CLAIMED, 2, 2)
    clock.now = T0 + 60  # "a" is exactly one window old: still inside
    assert await budget.claim("restart", "checkout", "c", 2, 60.0) == out(EXHAUSTED, 2, 2)
    clock.now = T0 + 60.5  # "a" has left the window
    assert await budget.claim("restart", "checkout", "c", 2, 60.0) == out(CLAIMED, 2, 2)
    members = await redis_client.zrange(budget_key("restart", "checkout"), 0, -1, withscores=True)
    assert members == [(b"b", T0 + 10), (b"c", T0 + 60.5)]
    assert 0 < await redis_client.ttl(budget_key("restart", "checkout")) <= 61


async def test_same_idempotency_key_is_a_duplicate_and_spends_nothing(
    budget: RedisBudget, redis_client: aioredis.Redis
) -> None:
    assert await budget.claim("restart", "checkout", "k1", 2, 60.0) == out(CLAIMED, 1, 2)
    assert await budget.claim("restart", "checkout", "k1", 2, 60.0) == out(DUPLICATE, 1, 2)
    assert await budget.claim("restart", "checkout", "k2", 2, 60.0) == out(CLAIMED, 2, 2)
    # A replay of a claimed action stays a duplicate even once the budget is spent.
    assert await budget.claim("restart", "checkout", "k1", 2, 60.0) == out(DUPLICATE, 2, 2)
    assert await budget.claim("restart", "checkout", "k3", 2, 60.0) == out(EXHAUSTED, 2, 2)
    ttl = await redis_client.ttl(idempotency_key("k1"))
    assert DEFAULT_IDEMPOTENCY_TTL_S - 5 <= ttl <= DEFAULT_IDEMPOTENCY_TTL_S


async def test_idempotency_ttl_is_configurable(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    budget = RedisBudget(redis_client, clock, idempotency_ttl_s=90.5)
    await budget.claim("restart", "checkout", "k1", 2, 60.0)
    assert await redis_client.ttl(idempotency_key("k1")) in (90, 91)


async def test_budgets_are_per_action_and_service(budget: RedisBudget) -> None:
    assert await budget.claim("restart", "checkout", "a", 1, 60.0) == out(CLAIMED, 1, 1)
    assert await budget.claim("restart", "payments", "b", 1, 60.0) == out(CLAIMED, 1, 1)
    assert await budget.claim("scale_up", "checkout", "c", 1, 60.0) == out(CLAIMED, 1, 1)
    assert await budget.claim("restart", "checkout", "d", 1, 60.0) == out(EXHAUSTED, 1, 1)


async def test_concurrent_claims_never_overspend(budget: RedisBudget) -> None:
    got = await asyncio.gather(
        *(budget.claim("restart", "checkout", f"k{i}", 10, 60.0) for i in range(50))
    )
    claimed = [o for o in got if o.status is CLAIMED]
    assert len(claimed) == 10
    assert sorted(o.used for o in claimed) == list(range(1, 11))
    assert all(o == out(EXHAUSTED, 10, 10) for o in got if o.status is not CLAIMED)


async def test_claim_many_mixes_statuses_in_one_clock_reading(
    budget: RedisBudget, clock: Clock, redis_client: aioredis.Redis
) -> None:
    await budget.claim("restart", "checkout", "seen", 2, 60.0)
    clock.reads = 0
    await redis_client.config_resetstat()
    got = await budget.claim_many([
        BudgetRequest("restart", "checkout", "seen", 2, 60.0),
        BudgetRequest("restart", "checkout", "new1", 2, 60.0),
        BudgetRequest("restart", "checkout", "new2", 2, 60.0),
        BudgetRequest("restart", "payments", "new3", 1, 30.0),
        BudgetRequest("restart", "payments", "new3", 1, 30.0),  # same key twice in one batch
        BudgetRequest("scale_up", "checkout", "new4", 0, 60.0),
    ])
    assert got == [
        out(DUPLICATE, 1, 2), out(CLAIMED, 2, 2), out(EXHAUSTED, 2, 2),
        out(CLAIMED, 1, 1, 30.0), out(DUPLICATE, 1, 1, 30.0), out(EXHAUSTED, 0, 0),
    ]
    assert clock.reads == 1
    # Six EVALSHAs and nothing else: no SCRIPT EXISTS round trip before the pipeline.
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 6
    assert not [name for name in stats if name.startswith("cmdstat_script")]
    assert await budget.claim_many([]) == []
    assert clock.reads == 1


async def test_claim_many_error_answer_fails_only_that_claim(
    budget: RedisBudget, redis_client: aioredis.Redis
) -> None:
    await redis_client.set(budget_key("restart", "broken"), "not a sorted set")
    got = await budget.claim_many([
        BudgetRequest("restart", "checkout", "a", 2, 60.0),
        BudgetRequest("restart", "broken", "b", 2, 60.0),
        BudgetRequest("restart", "checkout", "c", 2, 60.0),
    ])
    assert got == [out(CLAIMED, 1, 2), out(UNAVAILABLE, 0, 2), out(CLAIMED, 2, 2)]
    assert budget.last_error is not None and "WRONGTYPE" in budget.last_error
    assert await budget.claim("restart", "broken", "d", 2, 60.0) == out(UNAVAILABLE, 0, 2)


async def test_redis_stopped_fails_closed_then_recovers(
    budget: RedisBudget, redis_server: RedisServer
) -> None:
    assert await budget.claim("restart", "checkout", "a", 5, 60.0) == out(CLAIMED, 1, 5)
    redis_server.stop()
    try:
        started = time.monotonic()
        assert await budget.claim("restart", "checkout", "b", 5, 60.0) == out(UNAVAILABLE, 0, 5)
        batch = [BudgetRequest("restart", "checkout", f"m{i}", 5, 60.0) for i in range(3)]
        assert await budget.claim_many(batch) == [out(UNAVAILABLE, 0, 5)] * 3
        assert time.monotonic() - started < 2 * 0.25 + 0.5
    finally:
        redis_server.start()
    # A restarted Redis has lost the script cache (and, unpersisted, the budget): both
    # paths load the script again rather than failing.
    batch = [BudgetRequest("restart", "checkout", f"n{i}", 5, 60.0) for i in range(2)]
    assert await budget.claim_many(batch) == [out(CLAIMED, 1, 5), out(CLAIMED, 2, 5)]
    redis_server.stop()
    redis_server.start()
    # The pooled connection died with the old server; the client may notice only on use,
    # and that claim fails closed without spending anything.
    first = await budget.claim("restart", "checkout", "c", 5, 60.0)
    assert first in (out(UNAVAILABLE, 0, 5), out(CLAIMED, 1, 5))
    used = 2 if first.status is CLAIMED else 1
    assert await budget.claim("restart", "checkout", "d", 5, 60.0) == out(CLAIMED, used, 5)


@pytest.fixture
async def silent_redis_url() -> AsyncIterator[str]:
    """A TCP server that accepts connections, reads, and never answers."""
    open_conns: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_conns.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for w in open_conns:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("timeout_s", [0.1, 0.3])
async def test_silent_redis_times_out_to_unavailable(
    silent_redis_url: str, clock: Clock, timeout_s: float
) -> None:
    client = aioredis.Redis.from_url(silent_redis_url)
    budget = RedisBudget(client, clock, timeout_s=timeout_s)
    try:
        for call in (
            lambda: budget.claim("restart", "checkout", "a", 3, 60.0),
            lambda: budget.claim_many([BudgetRequest("restart", "checkout", "a", 3, 60.0)]),
        ):
            started = time.monotonic()
            got: Any = await call()
            elapsed = time.monotonic() - started
            assert got in (out(UNAVAILABLE, 0, 3), [out(UNAVAILABLE, 0, 3)])
            assert timeout_s * 0.9 <= elapsed < timeout_s + 0.2
            assert budget.last_error == "TimeoutError: "
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("limit", "window_s", "message"),
    [
        (-1, 60.0, "budget limit must be >= 0, got -1"),
        (3, 0.0, "budget window_s must be a positive finite number of seconds, got 0.0"),
        (3, float("inf"), "budget window_s must be a positive finite number of seconds, got inf"),
        (3, float("nan"), "budget window_s must be a positive finite number of seconds, got nan"),
    ],
)
async def test_bad_request_is_refused_before_redis(
    budget: RedisBudget, limit: int, window_s: float, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        await budget.claim("restart", "checkout", "a", limit, window_s)
    assert str(err.value) == message


REQ = BudgetRequest("restart", "checkout", "a", 3, 60.0)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ([b"claimed", 2], out(CLAIMED, 2, 3)),
        (["exhausted", 3], out(EXHAUSTED, 3, 3)),
        ([b"duplicate", 1], out(DUPLICATE, 1, 3)),
        ([b"unavailable", 0], out(UNAVAILABLE, 0, 3)),  # not a word the script may say
        ([b"granted", 1], out(UNAVAILABLE, 0, 3)),
        ([b"claimed", b"2"], out(UNAVAILABLE, 0, 3)),
        ([b"claimed"], out(UNAVAILABLE, 0, 3)),
        (b"OK", out(UNAVAILABLE, 0, 3)),
        (None, out(UNAVAILABLE, 0, 3)),
    ],
)
def test_a_reply_we_cannot_read_fails_closed(reply: Any, expected: BudgetOutcome) -> None:
    assert _outcome(reply, REQ) == expected
