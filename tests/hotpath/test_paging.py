"""The paging stage as the processor runs it, on a real redis-server: context packed into
every finding page, incidents (one trigger, later pages attached, resolve after the clear
time), the on-call policy's first level as the trigger's receivers, escalation on ticks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis

from escalation.decision import Decision, DecisionKind, Reason
from escalation.finding import Finding
from escalation.page import Page, page_from_decision
from hotpath.config import Config, load_config, with_overrides
from hotpath.metrics import Metrics
from hotpath.paging import Paging

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"
T0 = 1_764_200_000.0


def config(redis_url: str, tmp_path: Path) -> Config:
    return with_overrides(load_config(EXAMPLE), {
        "redis": {"url": redis_url},
        "executors": {"plugins": {"jsonl": {"path": str(tmp_path / "changes.jsonl")}}}})


def decision(ts: float, metric: str = "error_ratio", service: str = "search") -> Decision:
    f = Finding(f"f{ts}", f"{service}|{metric}|region=us-east-1", service, metric,
                {"region": "us-east-1"}, ts, 0.2, 0.002, 90.0, 0.99, ("spike",),
                recent=(0.002, 0.002, 0.2))
    return Decision(DecisionKind.PAGE, (Reason.NO_RULE,), f)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def test_pages_are_packed_grouped_escalated_and_resolved(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    clock, metrics = Clock(), Metrics()
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=clock, metrics=metrics,
                    started=["webhook", "console", "pagerduty"])
    ds = [decision(T0 - 2.0), decision(T0 - 1.0)]
    pages = [paging.with_context(d, page_from_decision(d, T0), {}, [x.finding for x in ds], T0)
             for d in ds]
    ctx = pages[0].context
    assert ctx["what"] == {"service": "search", "metric": "error_ratio",
                           "labels": {"region": "us-east-1"}}
    assert ctx["owner"] == {"team": "discovery"} and ctx["automation"]["why_not"] == (
        "no remediation rule")
    assert ctx["chart_url"].startswith("http://127.0.0.1:8088/chart?series=search")

    out = await paging.prepare(pages, T0)
    (trigger,) = out  # two findings of one service/family/region: one incident, one page
    assert trigger.event == "trigger" and trigger.incident_key.startswith("inc_")
    assert trigger.dedup_key == f"hotpath-{trigger.incident_key}"
    # Level 1 of the example policy is [slack, webhook, console]; slack is not running.
    assert trigger.receivers == ("webhook", "console")
    assert trigger.context == ctx

    # Nobody acknowledges within level 1's 300 s: level 2 (pagerduty) is paged.
    clock.now = T0 + 301.0
    (step,) = await paging.tick(clock.now)
    assert (step.receivers, step.dedup_key) == (("pagerduty",),
                                                f"{trigger.dedup_key}:l2r0")
    # Quiet for resolve_after_s (600 s since the last page was seen): resolved, once.
    clock.now = T0 + 601.0
    resolved = [p for p in await paging.tick(clock.now) if p.event == "resolve"]
    assert [(p.incident_key, p.receivers) for p in resolved] == [(trigger.incident_key, ())]
    assert [p for p in await paging.tick(clock.now + 1) if p.event == "resolve"] == []
    assert metrics.incident_events.labels("trigger")._value.get() == 1.0
    assert metrics.incident_events.labels("attach")._value.get() == 1.0
    assert metrics.escalations.labels("2")._value.get() == 1.0


async def test_a_level_naming_no_running_pager_pages_everyone(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=Clock(),
                    metrics=Metrics(), started=["opsgenie"])
    d = decision(T0)
    (trigger,) = await paging.prepare([page_from_decision(d, T0)], T0)
    assert trigger.receivers == ()


async def test_with_the_store_down_pages_go_out_ungrouped(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path,
        redis_server: object) -> None:
    from hotpath.services.redis_server import RedisServer
    assert isinstance(redis_server, RedisServer)
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=Clock(),
                    metrics=Metrics())
    pages = [page_from_decision(decision(T0 - 1.0), T0), page_from_decision(decision(T0), T0)]
    redis_server.stop()
    try:
        assert await paging.prepare(pages, T0) == pages  # fail open towards the human
    finally:
        redis_server.start()


async def test_an_ack_or_resolve_from_a_person_is_told_to_the_pagers(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=Clock(),
                    metrics=Metrics(), started=["webhook", "console"])
    d = decision(T0)
    (trigger,) = await paging.prepare([page_from_decision(d, T0)], T0)
    key = trigger.incident_key
    assert trigger.links["ack"] == f"http://127.0.0.1:8088/v1/incidents/{key}/ack"
    acked = await paging.oncall.ack(key, "human:alice", T0 + 60.0)
    assert acked is not None
    (ack,) = await paging.follow_up(acked, T0 + 60.0)
    # Alertmanager has no acknowledge: it is not told (it would re-fire the alert).
    assert (ack.event, ack.incident_key, ack.dedup_key, ack.receivers) == (
        "acknowledge", key, f"{trigger.dedup_key}:acknowledge", ("webhook", "console"))
    done = await paging.oncall.resolve(key, "human:alice", T0 + 120.0)
    assert done is not None
    (res,) = await paging.follow_up(done, T0 + 120.0)
    # A person's resolve closes the incident: the pagers get its resolve page.
    assert (res.event, res.incident_key) == ("resolve", key)
    assert await paging.incidents.get(key) is None
    assert await paging.follow_up(done, T0 + 121.0) == []  # told once


async def test_a_page_asking_for_an_approval_is_never_grouped_away(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=Clock(),
                    metrics=Metrics(), started=["webhook", "console"])
    first = page_from_decision(decision(T0 - 1.0), T0)
    links = {"approve": "http://a/approve?token=t", "deny": "http://a/deny?token=u"}
    ask = replace(page_from_decision(decision(T0), T0), links=links)
    asked, trigger = await paging.prepare([first, ask], T0)
    # The approval ask goes out as it is (its links reach a person), the other page opens
    # the incident as usual.
    assert asked == ask
    assert trigger.event == "trigger" and trigger.incident_key.startswith("inc_")


async def test_context_is_packed_only_into_pages_that_go_out(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    paging = Paging(config(redis_url, tmp_path), redis_client, clock=Clock(),
                    metrics=Metrics())
    pages = [page_from_decision(decision(T0 - float(i)), T0) for i in range(3)]
    dressed: list[str] = []

    def dress(observed: Page, out: Page) -> Page:
        dressed.append(observed.dedup_key)
        return replace(out, context={"packed": True})

    (trigger,) = await paging.prepare(pages, T0, dress)
    assert trigger.context == {"packed": True} and len(dressed) == 1


async def test_maintenance_windows_hold_even_while_the_store_is_down(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path,
        redis_server: object) -> None:
    from hotpath.services.redis_server import RedisServer
    assert isinstance(redis_server, RedisServer)
    cfg = with_overrides(config(redis_url, tmp_path), {"incidents": {"maintenance": [
        {"matchers": {"service": "search"}, "start": "2025-01-01T00:00:00Z",
         "end": "2030-01-01T00:00:00Z", "comment": "reindex"}]}})
    paging = Paging(cfg, redis_client, clock=Clock(), metrics=Metrics())
    held = page_from_decision(decision(T0), T0)
    other = page_from_decision(decision(T0, service="checkout"), T0)
    redis_server.stop()
    try:
        assert await paging.prepare([held, other], T0) == [other]
    finally:
        redis_server.start()
