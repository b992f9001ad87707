"""The on-call store against a real redis-server: steps happen once across replicas."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from escalation.errors import StoreUnavailable
from escalation.oncall import EscalationPolicy, Level, Notify, Reason, Status
from escalation.oncall_store import OnCallStore
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1764132000.0
POLICY = EscalationPolicy("checkout", (Level(("alice",), 300.0), Level(("bob",), 600.0)),
                          repeat=1)


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> OnCallStore:
    return OnCallStore(redis_client, timeout_s=2.0)


@pytest.fixture
async def replica(redis_server: RedisServer,
                  redis_client: aioredis.Redis) -> AsyncIterator[OnCallStore]:
    """A second replica: its own connection to the same Redis."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield OnCallStore(client, timeout_s=2.0)
    finally:
        await client.aclose()


async def test_start_pages_level_one_once_even_when_replayed(store: OnCallStore,
                                                             replica: OnCallStore) -> None:
    first = await store.start(POLICY, "inc-1", T0)
    assert first.reason is Reason.STARTED
    assert first.actions == (Notify("inc-1", 1, 0, ("alice",)),)
    again = await replica.start(POLICY, "inc-1", T0 + 5.0)
    assert (again.reason, again.actions, again.state) == (Reason.ALREADY_STARTED, (),
                                                          first.state)
    assert again.detail == "inc-1: escalation already paging at level 1"
    assert await replica.get("inc-1") == first.state
    assert await store.get("nope") is None


async def test_no_ack_by_the_timeout_escalates_to_the_next_level(store: OnCallStore) -> None:
    await store.start(POLICY, "inc-1", T0)
    assert await store.due(T0 + 299.0) == []
    (t,) = await store.due(T0 + 300.0)
    assert t.reason is Reason.ESCALATED
    assert t.actions == (Notify("inc-1", 2, 0, ("bob",)),)
    assert await store.due(T0 + 300.0) == []  # already taken: its next deadline is later
    state = await store.get("inc-1")
    assert state is not None and (state.level, state.deadline) == (2, T0 + 900.0)


async def test_repeat_loops_back_then_stops_and_leaves_the_index(
        store: OnCallStore, redis_client: aioredis.Redis) -> None:
    await store.start(POLICY, "inc-1", T0)
    seen = []
    for i in range(1, 7):
        for t in await store.due(T0 + 1000.0 * i):
            seen.append((t.reason, tuple((a.level, a.loop) for a in t.actions)))
    assert seen == [(Reason.ESCALATED, ((2, 0),)), (Reason.REPEATED, ((1, 1),)),
                    (Reason.ESCALATED, ((2, 1),)), (Reason.EXHAUSTED, ())]
    state = await store.get("inc-1")
    assert state is not None and state.status is Status.EXHAUSTED
    assert await redis_client.zcard("hotpath:oncall:due") == 0


async def test_ack_stops_escalation(store: OnCallStore, replica: OnCallStore) -> None:
    await store.start(POLICY, "inc-1", T0)
    t = await replica.ack("inc-1", "human:alice", T0 + 120.0)
    assert t is not None and t.reason is Reason.ACKED
    assert await store.due(T0 + 1e6) == []
    again = await store.ack("inc-1", "human:bob", T0 + 130.0)
    assert again is not None and again.reason is Reason.ALREADY_ACKED
    assert again.detail == "inc-1: already acknowledged by human:alice at 2025-11-26T04:42:00Z"
    state = await store.get("inc-1")
    assert state is not None
    assert (state.status, state.acked_by, state.acked_at) == (Status.ACKED, "human:alice",
                                                              T0 + 120.0)
    assert await store.ack("unknown", "human:alice", T0) is None


async def test_resolve_ends_it_and_the_record_expires_after_retention(
        redis_client: aioredis.Redis) -> None:
    store = OnCallStore(redis_client, timeout_s=2.0, retention_s=3600.0)
    await store.start(POLICY, "inc-1", T0)
    assert await redis_client.ttl("hotpath:oncall:inc-1") == -1  # open: kept
    t = await store.resolve("inc-1", "automation:clear", T0 + 10.0)
    assert t is not None and t.reason is Reason.RESOLVED
    assert 3590 <= await redis_client.ttl("hotpath:oncall:inc-1") <= 3600
    assert await store.due(T0 + 1e6) == []
    late = await store.ack("inc-1", "human:alice", T0 + 20.0)
    assert late is not None and late.reason is Reason.ALREADY_RESOLVED
    assert await store.resolve("missing", "human:alice", T0) is None


async def test_two_replicas_sweeping_at_once_take_each_step_once(
        store: OnCallStore, replica: OnCallStore) -> None:
    keys = [f"inc-{i}" for i in range(40)]
    for k in keys:
        await store.start(POLICY, k, T0)
    pages: Counter[tuple[str, int, int]] = Counter()
    for now in (T0 + 300.0, T0 + 900.0, T0 + 1200.0, T0 + 1800.0):
        a, b = await asyncio.gather(store.due(now), replica.due(now))
        for t in (*a, *b):
            for n in t.actions:
                pages[(n.incident_key, n.level, n.loop)] += 1
        # Each sweep advanced every incident exactly once between the two replicas.
        assert sorted(t.state.incident_key for t in (*a, *b)) == sorted(keys)
    assert set(pages.values()) == {1}
    assert set(pages) == {(k, lv, loop) for k in keys
                          for lv, loop in ((2, 0), (1, 1), (2, 1))}


async def test_an_ack_racing_a_sweep_is_never_lost(store: OnCallStore,
                                                    replica: OnCallStore) -> None:
    for i in range(20):
        await store.start(POLICY, f"inc-{i}", T0)
    sweep, acks = await asyncio.gather(
        store.due(T0 + 300.0),
        asyncio.gather(*(replica.ack(f"inc-{i}", "human:alice", T0 + 300.0)
                         for i in range(20))))
    assert all(t is not None and t.reason is Reason.ACKED for t in acks)
    swept = {t.state.incident_key for t in sweep}
    for i in range(20):
        state = await store.get(f"inc-{i}")
        assert state is not None and state.status is Status.ACKED
        # Paged level 2 only if the sweep's write came first; the ack applied either way.
        assert state.level == (2 if f"inc-{i}" in swept else 1)


async def test_a_record_gone_from_redis_leaves_the_index(store: OnCallStore,
                                                         redis_client: aioredis.Redis) -> None:
    await store.start(POLICY, "inc-1", T0)
    await redis_client.delete("hotpath:oncall:inc-1")
    assert await store.due(T0 + 300.0) == []
    assert await redis_client.zcard("hotpath:oncall:due") == 0


async def test_event_ids_are_claimed_once_and_can_be_released(store: OnCallStore,
                                                              replica: OnCallStore) -> None:
    assert await store.claim_event("pagerduty", "01EV", 60.0) is True
    assert await replica.claim_event("pagerduty", "01EV", 60.0) is False
    assert await replica.claim_event("slack", "01EV", 60.0) is True  # sources are apart
    await store.release_event("pagerduty", "01EV")
    assert await replica.claim_event("pagerduty", "01EV", 60.0) is True
    with pytest.raises(ValueError) as e:
        await store.claim_event("slack", "x", 0.0)
    assert str(e.value) == "claim_event ttl_s must be positive and finite, got 0.0"


async def test_redis_down_is_store_unavailable() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1)
    store = OnCallStore(dead, timeout_s=0.5)
    for call, what in ((store.due(T0), "sweep due escalations"),
                       (store.start(POLICY, "inc-1", T0), "start inc-1"),
                       (store.ack("inc-1", "human:a", T0), "read inc-1"),
                       (store.claim_event("slack", "t1", 60.0), "remember slack event t1")):
        with pytest.raises(StoreUnavailable) as e:
            await call
        assert str(e.value).startswith(f"on-call store could not {what}: "), e.value
    await dead.aclose()
