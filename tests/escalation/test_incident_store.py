"""The shared incident book on a real redis-server: replicas agree, race, restart, resolve."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from escalation.errors import StoreUnavailable
from escalation.incident_store import CLOSED_TTL_S, IncidentStore
from escalation.incidents import (
    Closed,
    EventKind,
    GroupingSpec,
    IncidentEvent,
    InhibitRule,
    group_id,
)
from escalation.page import Page
from escalation.silences import Silence
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

SPEC = GroupingSpec()
DOWN = InhibitRule("service-down", source={"metric": "up"}, target={"metric": "*"})
GROUP = (("service", "checkout"), ("metric_family", "http_latency"), ("region", "eu"))


def page(ts: float, service: str = "checkout", metric: str = "http_latency_p99_ms",
         region: str = "eu") -> Page:
    fid = hashlib.sha256(f"{service}|{metric}|{region}@{ts}".encode()).hexdigest()[:24]
    return Page(f"hotpath-{fid}", f"{service} {metric}", "critical", service, metric,
                {"region": region}, 900.0, 200.0, 9.0, 0.97, ("ewma",),
                ("no remediation rule",), (200.0, 900.0), fid, ts, ts + 1.0, None)


def key(bucket: int, service: str = "checkout", family: str = "http_latency") -> str:
    group = [["service", service], ["metric_family", family], ["region", "eu"]]
    body = json.dumps([group, bucket], separators=(",", ":")).encode()
    return "inc_" + hashlib.sha256(body).hexdigest()[:16]


def kinds(events: list[IncidentEvent]) -> list[str]:
    return [e.kind.value for e in events]


@pytest.fixture
async def replicas(redis_client: aioredis.Redis,
                   redis_server: RedisServer) -> AsyncIterator[tuple[IncidentStore, ...]]:
    """Two replicas: separate clients (separate connections) on one Redis."""
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        yield (IncidentStore(redis_client, SPEC, [DOWN], prefix="t", timeout_s=2.0),
               IncidentStore(other, SPEC, [DOWN], prefix="t", timeout_s=2.0))
    finally:
        await other.aclose()


async def test_a_replica_attaches_to_the_incident_another_opened(
        replicas: tuple[IncidentStore, ...], redis_client: aioredis.Redis) -> None:
    a, b = replicas
    first = await a.observe([page(1000.0)], 1000.0)
    assert kinds(first) == ["trigger"] and first[0].incident.key == key(3)
    second = await b.observe([page(1400.0)], 1400.0)
    assert kinds(second) == ["attach"]
    inc = second[0].incident
    assert (inc.key, inc.count, inc.last_ts, inc.last_seen) == (key(3), 2, 1400.0, 1400.0)
    assert [i.key for i in await a.open_incidents()] == [key(3)]
    assert await a.get(key(3)) == inc and await a.get("inc_none") is None
    assert await redis_client.hget("t:inc:ver", group_id(GROUP)) == b"2"


async def test_concurrent_openers_make_one_incident_and_one_trigger(
        replicas: tuple[IncidentStore, ...]) -> None:
    a, b = replicas
    for round_ in range(10):
        ts = 10_000.0 * (round_ + 1)
        out_a, out_b = await asyncio.gather(a.observe([page(ts)], ts),
                                            b.observe([page(ts + 1)], ts + 1))
        both = out_a + out_b
        assert sorted(kinds(both)) == ["attach", "trigger"]
        assert len({e.incident.key for e in both}) == 1
        assert len(await a.open_incidents()) == 1
        assert len(await a.tick(ts + 1000.0)) == 1  # and one resolve


async def test_a_commit_on_a_moved_group_is_refused_and_retried(
        replicas: tuple[IncidentStore, ...]) -> None:
    a, b = replicas
    gid = group_id(GROUP)
    snap_a, snap_b = await a.load([gid]), await b.load([gid])
    ev_b = snap_b.book.observe([page(1000.0)], 1000.0)
    ev_a = snap_a.book.observe([page(1001.0)], 1001.0)
    assert kinds(ev_a) == kinds(ev_b) == ["trigger"]  # each thought it was first
    assert await b.commit(snap_b, ev_b) is True
    assert await a.commit(snap_a, ev_a) is False
    assert a.conflicts == 1
    (stored,) = await a.open_incidents()
    assert (stored.opened_at, stored.count) == (1000.0, 1)  # b's write, a's not applied
    # The same step through observe() reloads and attaches.
    assert kinds(await a.observe([page(1001.0)], 1001.0)) == ["attach"]


async def test_a_restarted_replica_resolves_once_and_remembers_the_group(
        replicas: tuple[IncidentStore, ...], redis_client: aioredis.Redis) -> None:
    a, b = replicas
    await a.observe([page(1000.0), page(1100.0)], 1100.0)
    restarted = IncidentStore(redis_client, SPEC, prefix="t")
    assert await restarted.tick(1699.0) == []
    r1, r2 = await asyncio.gather(restarted.tick(1700.0), b.tick(1700.0))
    resolves = r1 + r2
    assert kinds(resolves) == ["resolve"]
    assert resolves[0].page is not None and resolves[0].page.incident_key == key(3)
    assert await a.open_incidents() == [] and await a.tick(99999.0) == []
    closed_key = f"t:inc:closed:{group_id(GROUP)}"
    raw = await redis_client.get(closed_key)
    assert raw is not None and json.loads(raw) == {
        "key": key(3), "bucket": 3, "through": 1100.0}
    ttl_ms = await redis_client.pttl(closed_key)
    assert CLOSED_TTL_S * 1000 - 60_000 < ttl_ms <= CLOSED_TTL_S * 1000
    # A replay on another replica is stale; a new finding opens the next bucket's key.
    assert kinds(await b.observe([page(1100.0)], 1800.0)) == ["stale"]
    again = await b.observe([page(1101.0)], 1801.0)
    assert (kinds(again), again[0].incident.key) == (["trigger"], key(4))
    snap = await a.load([group_id(GROUP)])
    assert snap.book.closed == {group_id(GROUP): Closed(key(3), 3, 1100.0)}


async def test_inhibition_and_silences_across_replicas(
        replicas: tuple[IncidentStore, ...]) -> None:
    a, b = replicas
    await a.observe([page(1000.0, metric="up")], 1000.0)
    muted = await b.observe([page(1001.0)], 1001.0)
    assert (kinds(muted), muted[0].detail) == (
        ["suppressed"], f"inhibited by {key(3, family='up')} (rule service-down)")
    s = Silence.create({"service": "payments"}, 0.0, 5000.0, "human:bob", "migration",
                       id="sil_mig")
    out = await a.observe([page(1002.0, service="payments")], 1002.0, [s])
    assert (kinds(out), out[0].detail) == (["suppressed"],
                                           "silenced by sil_mig (human:bob: migration)")
    assert {i.suppressed != "" for i in await b.open_incidents()} == {True, False}


async def test_close_through_the_store(replicas: tuple[IncidentStore, ...]) -> None:
    a, b = replicas
    await a.observe([page(1000.0)], 1000.0)
    assert await b.close("inc_none", 1001.0, "human:alice") is None
    e = await b.close(key(3), 1001.0, "human:alice")
    assert e is not None and e.kind is EventKind.RESOLVE and e.page is not None
    assert await a.open_incidents() == []


async def test_an_unreadable_record_is_store_unavailable(
        replicas: tuple[IncidentStore, ...], redis_client: aioredis.Redis) -> None:
    a, _ = replicas
    await redis_client.hset("t:inc:open", "grp_x", b"{}")
    with pytest.raises(StoreUnavailable) as err:
        await a.tick(0.0)
    assert str(err.value) == "incident store: unreadable record: KeyError: 'key'"


async def test_nothing_to_observe_touches_nothing(replicas: tuple[IncidentStore, ...],
                                                  redis_client: aioredis.Redis) -> None:
    a, _ = replicas
    assert await a.observe([], 0.0) == []
    assert await redis_client.keys("t:*") == []
