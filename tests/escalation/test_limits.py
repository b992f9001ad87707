"""Limits against a real redis-server: every limit at its boundary, rolling windows, leases,
replays, peeks, and every kind of Redis trouble failing closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from escalation.limits import (
    DEFAULT_IDEMPOTENCY_TTL_S,
    LimitOutcome,
    LimitRequest,
    Limits,
    LimitStatus,
    RedisLimits,
    Window,
    limit_keys,
    parse_reply,
)
from escalation.request import Actor, Request
from escalation.verdict import Stage
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

CLAIMED, DUPLICATE, REFUSED, UNAVAILABLE = (
    LimitStatus.CLAIMED, LimitStatus.DUPLICATE, LimitStatus.REFUSED, LimitStatus.UNAVAILABLE,
)  # fmt: skip
T0 = 1764132000.0  # 2025-11-26T04:40:00Z
NO_BUDGET = Limits(per_action_service=None)


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


def req(key: str, *, action: str = "restart_pods", service: str = "checkout",
        target: str = "pod-1") -> Request:
    return Request(Actor.parse("automation:restart"), action, service, "production", target,
                   key, T0)


def item(key: str, *, targets: int = 1, budget: Window | None = None, **kw: str) -> LimitRequest:
    return LimitRequest(req(key, **kw), service_targets=targets, action_budget=budget)


def make(redis_client: aioredis.Redis, clock: Clock, limits: Limits, **kw: Any) -> RedisLimits:
    return RedisLimits(redis_client, limits, clock, **kw)


def said(out: LimitOutcome) -> tuple[LimitStatus, str, str]:
    return out.status, out.check.code, out.check.detail


async def test_action_service_budget_at_its_boundary(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(2, 3600.0)))
    first, second, third = [await limits.claim(item(k)) for k in ("k1", "k2", "k3")]
    assert said(first) == (CLAIMED, "claimed", "action/service 1/2 per 1h")
    assert first.ok and first.check.stage is Stage.LIMITS
    assert said(second) == (CLAIMED, "claimed", "action/service 2/2 per 1h")
    assert said(third) == (REFUSED, "budget_action_service",
                           "restart_pods on checkout: 2/2 per 1h used")
    assert not third.ok
    assert third.check.state == {
        "budget_action_service": {"used": 2, "limit": 2, "window_s": 3600.0}}
    # Another action, another service: budgets of their own.
    assert (await limits.claim(item("k4", action="scale_up"))).status is CLAIMED
    assert (await limits.claim(item("k5", service="payments"))).status is CLAIMED


async def test_service_and_global_budgets(redis_client: aioredis.Redis, clock: Clock) -> None:
    cfg = Limits(per_action_service=None, per_service=Window(2, 60.0), global_=Window(3, 86400.0))
    limits = make(redis_client, clock, cfg)
    a = await limits.claim(item("a", action="restart_pods"))
    assert said(a) == (CLAIMED, "claimed", "service 1/2 per 1m; global 1/3 per 1d")
    assert (await limits.claim(item("b", action="scale_up"))).status is CLAIMED
    assert said(await limits.claim(item("c", action="flush_cache"))) == (
        REFUSED, "budget_service", "actions on checkout: 2/2 per 1m used")
    assert (await limits.claim(item("d", service="payments"))).status is CLAIMED
    refused = await limits.claim(item("e", service="search"))
    assert said(refused) == (REFUSED, "budget_global", "all actions: 3/3 per 1d used")
    assert refused.check.state == {
        "budget_service": {"used": 0, "limit": 2, "window_s": 60.0},
        "budget_global": {"used": 3, "limit": 3, "window_s": 86400.0}}


async def test_windows_roll_with_the_injected_clock(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(2, 60.0)))
    assert (await limits.claim(item("a"))).status is CLAIMED
    clock.now = T0 + 10
    assert (await limits.claim(item("b"))).status is CLAIMED
    clock.now = T0 + 60  # "a" is exactly one window old: still inside
    assert (await limits.claim(item("c"))).check.code == "budget_action_service"
    clock.now = T0 + 60.5  # "a" has left the window
    assert said(await limits.claim(item("c"))) == (CLAIMED, "claimed", "action/service 2/2 per 1m")
    key = limit_keys(req("c"))[1]
    assert await redis_client.zrange(key, 0, -1, withscores=True) == [
        (b"b", T0 + 10), (b"c", T0 + 60.5)]


async def test_concurrency_release_and_lease(redis_client: aioredis.Redis, clock: Clock) -> None:
    cfg = Limits(None, concurrency_per_service=1, concurrency_global=2, lease_s=300.0)
    limits = make(redis_client, clock, cfg)
    a = await limits.claim(item("a"))
    assert said(a) == (CLAIMED, "claimed", "in flight 1/1 on checkout; in flight 1/2 in all")
    assert said(await limits.claim(item("b"))) == (
        REFUSED, "concurrency_service", "1/1 actions in flight on checkout")
    assert (await limits.claim(item("c", service="payments"))).status is CLAIMED
    assert said(await limits.claim(item("d", service="search"))) == (
        REFUSED, "concurrency_global", "2/2 actions in flight in all")
    await limits.release(req("a"))
    await limits.release(req("a"))  # idempotent
    assert said(await limits.claim(item("b"))) == (
        CLAIMED, "claimed", "in flight 1/1 on checkout; in flight 2/2 in all")
    # Nobody releases "b" and "c": their leases end 300 s after the claim.
    clock.now = T0 + 299.9
    assert (await limits.claim(item("e"))).check.code == "concurrency_service"
    clock.now = T0 + 300
    assert said(await limits.claim(item("e"))) == (
        CLAIMED, "claimed", "in flight 1/1 on checkout; in flight 1/2 in all")
    assert await redis_client.zrange(limit_keys(req("e"))[6], 0, -1) == [b"e"]


async def test_cooldown_is_per_target(redis_client: aioredis.Redis, clock: Clock) -> None:
    limits = make(redis_client, clock, Limits(None, cooldown_s=300.0))
    assert said(await limits.claim(item("a"))) == (CLAIMED, "claimed", "cooldown 5m")
    clock.now = T0 + 30
    refused = await limits.claim(item("b", action="scale_up"))
    assert said(refused) == (
        REFUSED, "cooldown", "checkout/pod-1 acted on at 2025-11-26T04:40:00Z; cooldown 5m; "
        "free again at 2025-11-26T04:45:00Z (in 270s)")
    assert refused.check.state == {
        "cooldown": {"cooldown_s": 300.0, "last_at": T0, "free_at": T0 + 300}}
    assert (await limits.claim(item("c", target="pod-2"))).status is CLAIMED
    assert (await limits.claim(item("d", service="payments"))).status is CLAIMED
    clock.now = T0 + 300
    assert (await limits.claim(item("b", action="scale_up"))).status is CLAIMED


async def test_blast_radius_counts_distinct_targets(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    cfg = Limits(None, blast_fraction=0.5, blast_window_s=600.0)
    limits = make(redis_client, clock, cfg)
    assert said(await limits.claim(item("a", targets=6, target="p1"))) == (
        CLAIMED, "claimed", "blast 1/6 targets per 10m")
    for key, target in (("b", "p2"), ("c", "p1"), ("d", "p3"), ("e", "p2")):
        assert (await limits.claim(item(key, targets=6, target=target))).status is CLAIMED
    refused = await limits.claim(item("f", targets=6, target="p4"))
    assert said(refused) == (
        REFUSED, "blast_radius", "acting on p4 would touch 4/6 targets of checkout within "
        "10m, more than 0.5 of them")
    assert refused.check.state == {
        "blast_radius": {"used": 3, "targets": 6, "fraction": 0.5, "window_s": 600.0}}
    # A target already touched adds nothing.
    assert said(await limits.claim(item("g", targets=6, target="p3"))) == (
        CLAIMED, "claimed", "blast 3/6 targets per 10m")
    clock.now = T0 + 600.5  # p1..p3 were touched at T0 and have left the window
    assert said(await limits.claim(item("f", targets=6, target="p4"))) == (
        CLAIMED, "claimed", "blast 1/6 targets per 10m")


async def test_blast_radius_zero_fraction_and_small_service(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(None, blast_fraction=0.0))
    assert said(await limits.claim(item("a", targets=100))) == (
        REFUSED, "blast_radius",
        "acting on pod-1 would touch 1/100 targets of checkout within 1h, more than 0 of them")


async def test_distinct_services_per_window(redis_client: aioredis.Redis, clock: Clock) -> None:
    limits = make(redis_client, clock, Limits(None, max_services=2, blast_window_s=60.0))
    assert said(await limits.claim(item("a", service="checkout"))) == (
        CLAIMED, "claimed", "services 1/2 per 1m")
    assert (await limits.claim(item("b", service="payments"))).status is CLAIMED
    assert (await limits.claim(item("c", service="checkout", target="pod-2"))).status is CLAIMED
    assert said(await limits.claim(item("d", service="search"))) == (
        REFUSED, "blast_services", "acting on search would touch 3 services within 1m, "
        "more than 2")
    clock.now = T0 + 61
    assert said(await limits.claim(item("d", service="search"))) == (
        CLAIMED, "claimed", "services 1/2 per 1m")


async def test_first_failing_check_in_order_is_reported(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    cfg = Limits(Window(1, 60.0), per_service=Window(1, 60.0), global_=Window(1, 60.0),
                 concurrency_per_service=1, concurrency_global=1, cooldown_s=60.0,
                 blast_fraction=0.5, max_services=1)
    limits = make(redis_client, clock, cfg)
    a = await limits.claim(item("a", targets=2))
    assert said(a) == (CLAIMED, "claimed",
                       "action/service 1/1 per 1m; service 1/1 per 1m; global 1/1 per 1m; "
                       "in flight 1/1 on checkout; in flight 1/1 in all; cooldown 1m; "
                       "blast 1/2 targets per 1h; services 1/1 per 1h")
    assert a.check.state == {
        "budget_action_service": {"used": 1, "limit": 1, "window_s": 60.0},
        "budget_service": {"used": 1, "limit": 1, "window_s": 60.0},
        "budget_global": {"used": 1, "limit": 1, "window_s": 60.0},
        "concurrency_service": {"used": 1, "limit": 1},
        "concurrency_global": {"used": 1, "limit": 1},
        "cooldown": {"cooldown_s": 60.0, "last_at": T0, "free_at": T0 + 60},
        "blast_radius": {"used": 1, "targets": 2, "fraction": 0.5, "window_s": 3600.0},
        "blast_services": {"used": 1, "limit": 1, "window_s": 3600.0},
    }
    # Every limit is now full for "b"; the first in the fixed order speaks.
    assert (await limits.claim(item("b", targets=2))).check.code == "budget_action_service"
    assert (await limits.claim(item("b", targets=2, action="x"))).check.code == "budget_service"
    b = item("b", targets=2, service="other")
    assert (await limits.claim(b)).check.code == "budget_global"


async def test_duplicate_claims_nothing(redis_client: aioredis.Redis, clock: Clock) -> None:
    limits = make(redis_client, clock, Limits(Window(2, 60.0), concurrency_global=5))
    await limits.claim(item("k1"))
    snapshot = {k: await redis_client.dump(k) for k in await redis_client.keys("*")}
    clock.now = T0 + 5
    dup = await limits.claim(item("k1"))
    assert said(dup) == (DUPLICATE, "duplicate",
                         "idempotency key 'k1' was claimed before; nothing new runs")
    assert dup.check.state == {
        "budget_action_service": {"used": 1, "limit": 2, "window_s": 60.0},
        "concurrency_global": {"used": 1, "limit": 5}}
    assert {k: await redis_client.dump(k) for k in await redis_client.keys("*")} == snapshot
    assert (await limits.claim(item("k2"))).status is CLAIMED
    # A replay stays a duplicate even once the budget is spent.
    assert (await limits.claim(item("k1"))).status is DUPLICATE
    ttl = await redis_client.ttl(limit_keys(req("k1"))[0])
    assert DEFAULT_IDEMPOTENCY_TTL_S - 5 <= ttl <= DEFAULT_IDEMPOTENCY_TTL_S


async def test_rule_budget_overrides_the_default(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(1, 60.0)))
    rule = Window(3, 3600.0)
    assert said(await limits.claim(item("a", budget=rule))) == (
        CLAIMED, "claimed", "action/service 1/3 per 1h")
    assert (await limits.claim(item("b"))).check.code == "budget_action_service"
    assert (await limits.claim(item("b", budget=rule))).status is CLAIMED
    # A claim under the 1-minute default must not evict what the 1-hour rule still counts.
    clock.now = T0 + 120
    assert said(await limits.claim(item("c"))) == (CLAIMED, "claimed", "action/service 1/1 per 1m")
    assert said(await limits.claim(item("d", budget=rule))) == (
        REFUSED, "budget_action_service", "restart_pods on checkout: 3/3 per 1h used")


async def test_peek_claims_nothing(redis_client: aioredis.Redis, clock: Clock) -> None:
    limits = make(redis_client, clock, Limits(Window(1, 60.0), concurrency_global=3))
    peeked = await limits.peek(item("a"))
    assert said(peeked) == (CLAIMED, "claimed", "action/service 1/1 per 1m; in flight 1/3 in all")
    assert peeked.check.state["peek"] is True
    assert await redis_client.dbsize() == 0
    claimed = await limits.claim(item("a"))
    assert said(claimed) == said(peeked)
    assert "peek" not in claimed.check.state
    assert said(await limits.peek(item("b"))) == (
        REFUSED, "budget_action_service", "restart_pods on checkout: 1/1 per 1m used")
    assert (await limits.peek(item("a"))).status is DUPLICATE


async def test_concurrent_claims_never_overspend(
    redis_client: aioredis.Redis, redis_url: str, clock: Clock
) -> None:
    other = aioredis.Redis.from_url(redis_url)
    cfg = Limits(Window(10, 60.0), concurrency_global=7)
    pair = [make(redis_client, clock, cfg), make(other, clock, cfg)]
    try:
        got = await asyncio.gather(*(pair[i % 2].claim(item(f"k{i}")) for i in range(40)))
    finally:
        await other.aclose()
    claimed = [o for o in got if o.status is CLAIMED]
    assert sorted(o.check.state["concurrency_global"]["used"] for o in claimed) == [*range(1, 8)]
    assert {o.check.code for o in got if o.status is not CLAIMED} == {"concurrency_global"}


async def test_claim_many_is_one_round_trip_in_order(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(2, 60.0)))
    await limits.claim(item("seen"))
    clock.reads = 0
    await redis_client.config_resetstat()
    got = await limits.claim_many([
        item("seen"), item("new1"), item("new2"),
        item("new3", service="payments"), item("new3", service="payments"),
    ])
    assert [(o.status, o.check.code) for o in got] == [
        (DUPLICATE, "duplicate"), (CLAIMED, "claimed"), (REFUSED, "budget_action_service"),
        (CLAIMED, "claimed"), (DUPLICATE, "duplicate"),
    ]
    assert clock.reads == 1
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 5
    assert not [name for name in stats if name.startswith("cmdstat_script")]
    assert await limits.claim_many([]) == []


async def test_every_key_expires(redis_client: aioredis.Redis, clock: Clock) -> None:
    cfg = Limits(Window(3, 60.0), per_service=Window(3, 120.0), global_=Window(9, 180.0),
                 cooldown_s=30.0, blast_fraction=1.0, max_services=3, lease_s=90.0,
                 blast_window_s=240.0)
    limits = make(redis_client, clock, cfg)
    await limits.claim(item("a"))
    keys = limit_keys(req("a"))
    ttls = {k.split(":")[2]: await redis_client.ttl(k) for k in keys}
    expected = {"idem": int(DEFAULT_IDEMPOTENCY_TTL_S), "as": 61, "ash": 61, "svc": 121,
                "global": 181, "cc": 91, "ccg": 91, "cd": 31, "bt": 241, "bs": 241}
    assert ttls.keys() == expected.keys()
    # TTL counts down in wall time; a slow machine may have crossed one second.
    assert all(expected[k] - 1 <= ttls[k] <= expected[k] for k in expected), ttls


async def test_one_error_answer_fails_only_that_claim(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(2, 60.0)))
    await redis_client.set(limit_keys(req("x", service="broken"))[1], "not a sorted set")
    got = await limits.claim_many([item("a"), item("b", service="broken"), item("c")])
    assert [o.status for o in got] == [CLAIMED, UNAVAILABLE, CLAIMED]
    assert got[1].check.code == "unavailable"
    assert got[1].check.detail.startswith("limits store unavailable (ResponseError: WRONGTYPE")
    assert got[1].check.detail.endswith("); failing closed")


async def test_redis_stopped_fails_closed_then_recovers(
    redis_client: aioredis.Redis, redis_server: RedisServer, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits(Window(5, 60.0), concurrency_global=5))
    assert (await limits.claim(item("a"))).status is CLAIMED
    redis_server.stop()
    try:
        started = time.monotonic()
        outs = [await limits.claim(item("b")), await limits.peek(item("b")),
                *await limits.claim_many([item(f"m{i}") for i in range(3)])]
        assert [o.status for o in outs] == [UNAVAILABLE] * 5
        assert all(not o.ok and o.check.code == "unavailable" for o in outs)
        assert "ConnectionError" in outs[0].check.detail
        await limits.release(req("a"))  # logged, never raised
        assert time.monotonic() - started < 4 * 0.25 + 1.0
    finally:
        redis_server.start()
    # A restarted Redis lost the script cache (and, unpersisted, the counts): the claim
    # loads the script again. The pooled connection may notice the restart only on use,
    # and that claim fails closed without spending anything.
    first = await limits.claim(item("c"))
    assert first.status in (CLAIMED, UNAVAILABLE)
    again = await limits.claim_many([item("d"), item("e")])
    assert [o.status for o in again] == [CLAIMED, CLAIMED]


async def test_script_cache_flushed_reloads(redis_client: aioredis.Redis, clock: Clock) -> None:
    limits = make(redis_client, clock, Limits(Window(3, 60.0)))
    assert (await limits.claim(item("a"))).status is CLAIMED
    await redis_client.script_flush()
    got = await limits.claim_many([item("b"), item("c")])
    assert [said(o) for o in got] == [(CLAIMED, "claimed", "action/service 2/3 per 1m"),
                                      (CLAIMED, "claimed", "action/service 3/3 per 1m")]


async def test_garbled_script_reply_fails_closed(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, Limits())
    # A different script under our name: Redis answers, but not as limits.lua would.
    limits._script.sha = await redis_client.script_load("return {'claimed', 'claimed', 1}")
    out = await limits.claim(item("a"))
    assert said(out) == (UNAVAILABLE, "unavailable",
                         "limits store unavailable (ValueError: garbled reply); failing closed")


GOOD = [b"refused", b"cooldown", 0, 1, 2, 3, 4, b"1764132000.5", 5, 1, 6, 0]


@pytest.mark.parametrize(
    "reply",
    [
        [b"claimed", b"cooldown", *GOOD[2:]],      # a refusal code with a claim
        [b"refused", b"claimed", *GOOD[2:]],
        [b"refused", b"over_budget", *GOOD[2:]],  # not a code the script has
        [b"unavailable", b"unavailable", *GOOD[2:]],
        [*GOOD[:2], b"0", *GOOD[3:]],             # a count as a string
        [*GOOD[:2], -1, *GOOD[3:]],
        [*GOOD[:7], b"soon", *GOOD[8:]],
        [*GOOD[:7], b"inf", *GOOD[8:]],
        GOOD[:-1],
        [*GOOD, 0],
        b"OK",
        None,
        7,
    ],
)
def test_a_reply_we_cannot_read_is_none(reply: Any) -> None:
    assert parse_reply(reply) is None


def test_a_good_reply_is_read() -> None:
    r = parse_reply(GOOD)
    assert r is not None
    assert (r.status, r.code, r.as_used, r.svc_used, r.glob_used, r.in_flight_service,
            r.in_flight_global, r.last_target_at, r.targets_touched, r.target_touched,
            r.services_touched, r.service_touched) == (
        REFUSED, "cooldown", 0, 1, 2, 3, 4, 1764132000.5, 5, True, 6, False)


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


async def test_silent_redis_times_out_to_unavailable(silent_redis_url: str, clock: Clock) -> None:
    client = aioredis.Redis.from_url(silent_redis_url)
    limits = RedisLimits(client, Limits(), clock, timeout_s=0.1)
    try:
        started = time.monotonic()
        out = await limits.claim(item("a"))
        await limits.release(req("a"))
        elapsed = time.monotonic() - started
        assert said(out) == (UNAVAILABLE, "unavailable",
                             "limits store unavailable (TimeoutError: ); failing closed")
        assert 0.18 <= elapsed < 0.6
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Window(-1, 60.0), "window limit must be >= 0, got -1"),
        (lambda: Window(1, float("nan")),
         "window_s must be a positive finite number of seconds, got nan"),
        (lambda: Limits(concurrency_global=-2), "concurrency_global must be >= 0, got -2"),
        (lambda: Limits(max_services=-1), "max_services must be >= 0, got -1"),
        (lambda: Limits(lease_s=0.0),
         "lease_s must be a positive finite number of seconds, got 0.0"),
        (lambda: Limits(blast_window_s=float("inf")),
         "blast_window_s must be a positive finite number of seconds, got inf"),
        (lambda: Limits(cooldown_s=-1.0), "cooldown_s must be a finite number >= 0, got -1.0"),
        (lambda: Limits(blast_fraction=-0.1), "blast_fraction must be within [0, 1], got -0.1"),
        (lambda: LimitRequest(req("a"), service_targets=-3),
         "service_targets must be >= 1, got -3"),
    ],
)
def test_bad_limits_are_refused_with_the_reason(build: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value) == message


def test_keys_escape_separators_and_share_one_hash_tag() -> None:
    a = limit_keys(req("k", action="a:b", service="c"), prefix="p")
    b = limit_keys(req("k", action="a", service="b:c"), prefix="p")
    assert a[1] == "{p:lim}:as:a%3Ab:c" and b[1] == "{p:lim}:as:a:b%3Ac"
    assert all(k.startswith("{p:lim}:") for k in a + b)


FULL = Limits(Window(2, 60.0), per_service=Window(3, 60.0), global_=Window(4, 60.0),
              concurrency_per_service=2, concurrency_global=3)


async def snapshot(redis_client: aioredis.Redis) -> dict[bytes, Any]:
    return {k: await redis_client.dump(k) for k in await redis_client.keys("*")}


async def test_unclaim_undoes_the_claim_as_if_it_never_happened(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, FULL)
    assert (await limits.claim(item("a"))).status is CLAIMED
    first_b = await limits.claim(item("b"))
    assert await limits.unclaim(req("b")) is True
    keys = limit_keys(req("b"))
    assert await redis_client.exists(keys[0]) == 0
    for i in (1, 3, 4, 5, 6):
        assert await redis_client.zrange(keys[i], 0, -1) == [b"a"], keys[i]
    clock.now = T0 + 5
    again = await limits.claim(item("b"))  # claimed afresh, not a duplicate
    assert said(again) == said(first_b) == (
        CLAIMED, "claimed", "action/service 2/2 per 1m; service 2/3 per 1m; global 2/4 per 1m; "
        "in flight 2/2 on checkout; in flight 2/3 in all")
    assert again.check.state == {
        "budget_action_service": {"used": 2, "limit": 2, "window_s": 60.0},
        "budget_service": {"used": 2, "limit": 3, "window_s": 60.0},
        "budget_global": {"used": 2, "limit": 4, "window_s": 60.0},
        "concurrency_service": {"used": 2, "limit": 2},
        "concurrency_global": {"used": 2, "limit": 3}}
    # The first "b" left nothing behind: its budget entry was replaced, not added to.
    assert await redis_client.zrange(keys[1], 0, -1, withscores=True) == [
        (b"a", T0), (b"b", T0 + 5)]
    assert said(await limits.claim(item("c"))) == (
        REFUSED, "budget_action_service", "restart_pods on checkout: 2/2 per 1m used")


async def test_unclaim_twice_is_true_then_false(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, FULL)
    await limits.claim(item("a"))
    await limits.claim(item("b"))
    await redis_client.script_flush()  # a restarted Redis: the script loads itself again
    assert await limits.unclaim(req("a")) is True
    after = await snapshot(redis_client)
    assert await limits.unclaim(req("a")) is False
    assert await snapshot(redis_client) == after
    assert (await limits.claim(item("b"))).status is DUPLICATE  # "b" untouched


async def test_unclaim_of_a_never_claimed_request_changes_nothing(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, FULL)
    assert await limits.unclaim(req("never")) is False
    assert await redis_client.dbsize() == 0
    await limits.claim(item("a"))
    before = await snapshot(redis_client)
    assert await limits.unclaim(req("never")) is False
    assert await snapshot(redis_client) == before
    assert (await limits.claim(item("b"))).check.state["budget_action_service"]["used"] == 2


async def test_unclaim_keeps_cooldown_and_blast_records(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    cfg = Limits(None, cooldown_s=300.0, blast_fraction=0.5, max_services=1,
                 blast_window_s=600.0)
    limits = make(redis_client, clock, cfg)
    assert (await limits.claim(item("a", targets=2))).status is CLAIMED
    assert await limits.unclaim(req("a")) is True
    keys = limit_keys(req("a"))
    assert await redis_client.get(keys[7]) == b"1764132000"
    assert await redis_client.zscore(keys[8], "pod-1") == T0
    assert await redis_client.zscore(keys[9], "checkout") == T0
    clock.now = T0 + 30
    retry = await limits.claim(item("a", targets=2))  # the same request: no longer a replay
    assert said(retry) == (
        REFUSED, "cooldown", "checkout/pod-1 acted on at 2025-11-26T04:40:00Z; cooldown 5m; "
        "free again at 2025-11-26T04:45:00Z (in 270s)")
    other_target = await limits.claim(item("b", targets=2, target="pod-2"))
    assert said(other_target) == (
        REFUSED, "blast_radius", "acting on pod-2 would touch 2/2 targets of checkout within "
        "10m, more than 0.5 of them")
    assert other_target.check.state["blast_radius"]["used"] == 1
    assert said(await limits.claim(item("c", targets=4, service="payments"))) == (
        REFUSED, "blast_services", "acting on payments would touch 2 services within 10m, "
        "more than 1")


async def test_unclaim_is_all_or_nothing_on_a_corrupt_key(
    redis_client: aioredis.Redis, clock: Clock
) -> None:
    limits = make(redis_client, clock, FULL)
    await limits.claim(item("a"))
    keys = limit_keys(req("a"))
    await redis_client.delete(keys[6])
    await redis_client.set(keys[6], "not a sorted set")
    before = await snapshot(redis_client)
    assert await limits.unclaim(req("a")) is False
    assert limits.last_error is not None and limits.last_error.startswith(
        "ResponseError: WRONGTYPE {hotpath:lim}:ccg is a string, not a zset")
    assert await snapshot(redis_client) == before


async def test_unclaim_with_redis_stopped_is_false(
    redis_client: aioredis.Redis, redis_server: RedisServer, clock: Clock
) -> None:
    limits = make(redis_client, clock, FULL)
    assert (await limits.claim(item("a"))).status is CLAIMED
    redis_server.stop()
    try:
        assert await limits.unclaim(req("a")) is False
        assert limits.last_error is not None and "ConnectionError" in limits.last_error
    finally:
        redis_server.start()


async def test_unclaim_on_a_silent_redis_times_out_to_false(
    silent_redis_url: str, clock: Clock
) -> None:
    client = aioredis.Redis.from_url(silent_redis_url)
    limits = RedisLimits(client, Limits(), clock, timeout_s=0.1)
    try:
        assert await limits.unclaim(req("a")) is False
        assert limits.last_error == "TimeoutError: "
    finally:
        await client.aclose()
