"""Storm protection: the pure rule as a table, the storm page, and the Redis store."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from escalation.page import Page
from escalation.storm import (
    Collapsed,
    Seen,
    StormAction,
    StormDecision,
    StormPolicy,
    StormReason,
    StormStore,
    decide,
    entry_of,
    storm_key,
    storm_page,
)

PAGE = Page(
    dedup_key="hotpath-f1", summary="s", severity="critical", service="checkout",
    metric="error_ratio", labels={}, value=0.21, baseline=0.004, deviation=12.3,
    confidence=0.97, detectors=("ewma",), reasons=("budget exhausted",), recent=(),
    finding_id="f1", ts=1000.0, created=1001.0, action=None,
)

SEND, COLLAPSE, SKIP = StormAction.SEND, StormAction.COLLAPSE, StormAction.SKIP


def page(i: int, service: str = "checkout") -> Page:
    return replace(PAGE, dedup_key=f"hotpath-p{i}", finding_id=f"p{i}", service=service,
                   summary=f"summary {i}")


@pytest.mark.parametrize(
    ("previous", "admitted", "event", "expected"),
    [
        (None, 0, "trigger", StormDecision(SEND, StormReason.UNDER_THRESHOLD)),
        (None, 2, "trigger", StormDecision(SEND, StormReason.UNDER_THRESHOLD)),
        (None, 3, "trigger", StormDecision(COLLAPSE, StormReason.OVER_THRESHOLD)),
        ("sent", 3, "trigger", StormDecision(SEND, StormReason.ALREADY_ADMITTED)),
        ("collapsed", 0, "trigger", StormDecision(SKIP, StormReason.ALREADY_COLLAPSED)),
        (None, 99, "resolve", StormDecision(SEND, StormReason.NOT_A_TRIGGER)),
        (None, 99, "acknowledge", StormDecision(SEND, StormReason.NOT_A_TRIGGER)),
    ],
)
def test_decide(previous: Seen | None, admitted: int, event: str,
                expected: StormDecision) -> None:
    assert decide(previous, admitted, StormPolicy(max_per_window=3), event) == expected


def test_bad_policies_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"^storm window must be > 0 s, got nan$"):
        StormPolicy(window_s=math.nan)
    with pytest.raises(ValueError, match=r"^storm threshold must be >= 1 page per window, "
                                         r"got -1$"):
        StormPolicy(max_per_window=-1)


def test_the_storm_page_lists_every_collapsed_page() -> None:
    entries = (entry_of(page(1)), entry_of(replace(page(2), severity="warning")),
               entry_of(page(3, "payments")))
    p = storm_page(Collapsed("pagerduty", 29402200, 0, entries), StormPolicy(), now=1.5e9)
    assert p.dedup_key == "hotpath-storm-pagerduty-29402200" == p.finding_id
    assert p.summary == ("Page storm: 3 more pages for pagerduty in the 60 s from 2025-11-26 "
                         "04:40:00 UTC (over 20 per 60 s) — checkout error_ratio ×2, "
                         "payments error_ratio ×1")
    assert (p.severity, p.service, p.metric, p.value) == ("critical", "multiple", "page_storm",
                                                          3.0)
    assert p.context == {"storm": {
        "pager": "pagerduty", "window_start": 1764132000.0, "window_s": 60.0, "threshold": 20,
        "count": 3, "pages": [
            {"service": "checkout", "metric": "error_ratio", "summary": "summary 1",
             "dedup_key": "hotpath-p1", "severity": "critical"},
            {"service": "checkout", "metric": "error_ratio", "summary": "summary 2",
             "dedup_key": "hotpath-p2", "severity": "warning"},
            {"service": "payments", "metric": "error_ratio", "summary": "summary 3",
             "dedup_key": "hotpath-p3", "severity": "critical"},
        ]}}
    back = Page.from_json(p.to_json())  # it travels like any page (NaN baseline as null)
    assert back.context == p.context and back.dedup_key == p.dedup_key
    assert storm_key("pagerduty", 29402200, offset=3) == "hotpath-storm-pagerduty-29402200-3"


async def test_the_store_decides_as_the_rule(redis_client: aioredis.Redis) -> None:
    policy = StormPolicy(max_per_window=3)
    store = StormStore(redis_client, policy)
    seen: dict[str, Seen] = {}
    admitted = 0
    # new pages, redeliveries of sent and of collapsed ones, and a resolve, in one window
    order = [1, 2, 1, 3, 4, 5, 4, 2, 6]
    for i in order:
        p = page(i)
        want = decide(seen.get(p.dedup_key), admitted, policy)
        assert await store.admit("pd", p, now=30.0) == want, i
        if want.reason is StormReason.UNDER_THRESHOLD:
            admitted += 1
            seen[p.dedup_key] = "sent"
        elif want.action is COLLAPSE:
            seen[p.dedup_key] = "collapsed"
    resolve = replace(page(7), event="resolve")
    assert (await store.admit("pd", resolve, 30.0)).reason is StormReason.NOT_A_TRIGGER
    # another pager, another minute: fresh counts
    assert (await store.admit("slack", page(8), 30.0)).action is SEND
    assert (await store.admit("pd", page(9), 60.0)).action is SEND


async def test_collapsed_pages_wait_for_the_minute_to_end_then_go_once(
    redis_client: aioredis.Redis,
) -> None:
    store = StormStore(redis_client, StormPolicy(max_per_window=2))
    for i in range(5):
        await store.admit("pd", page(i), now=61.0)  # bucket 1
    assert await store.due("pd", now=119.9) == []   # the minute is not over
    assert await store.due("pd", now=120.0) == [1]
    c = await store.collapsed("pd", 1)
    assert (c.offset, [e["dedup_key"] for e in c.entries]) == (0, [
        "hotpath-p2", "hotpath-p3", "hotpath-p4"])
    assert await store.done(c) is True
    assert await store.done(c) is False              # a second sender's done trims nothing
    assert await store.due("pd", now=120.0) == []
    assert (await store.collapsed("pd", 1)).entries == ()


async def test_replicas_racing_on_a_bucket_list_the_same_pages_and_lose_none(
    redis_client: aioredis.Redis,
) -> None:
    store = StormStore(redis_client, StormPolicy(max_per_window=1))
    for i in range(3):
        await store.admit("pd", page(i), now=5.0)
    first = await store.collapsed("pd", 0)
    # A replica with a lagging clock still collapses into bucket 0 after the read...
    await store.admit("pd", page(3), now=5.0)
    # ...and a second flusher reads the same snapshot: the same storm page, the same key.
    again = await store.collapsed("pd", 0)
    assert again == first and len(first.entries) == 2
    assert await store.done(again) is True
    assert await store.done(first) is False
    # The late page is not lost: it goes in a follow-up storm page with its own key.
    late = await store.collapsed("pd", 0)
    assert (late.offset, [e["dedup_key"] for e in late.entries]) == (2, ["hotpath-p3"])
    assert storm_page(late, store.policy, 60.0).dedup_key == "hotpath-storm-pd-0-2"
    assert await store.done(late) is True
    assert await store.due("pd", now=60.0) == []
