"""Page-storm protection: past N pages a minute to one pager, collapse the rest into one page.

When a whole region falls over, two hundred pages in a minute help nobody; the first few say
what broke, the rest only need to be *listed*. Per pager and per minute bucket
(``floor(now / window_s)``), the first ``max_per_window`` trigger pages go out one by one;
the excess is appended to a list in Redis and, once the minute is over, sent as one storm
page whose context lists every collapsed page (service, metric, summary, dedup key). The
storm page's dedup key is deterministic per pager and bucket, so replicas racing to send it
produce one incident. Acknowledge and resolve events are never collapsed: an incident must
not stay open because its resolve was folded into a list.

:func:`decide` is the pure rule; :class:`StormStore` applies it atomically in Redis (the
admit script mirrors it), shared by every replica. Nothing is lost: a collapsed page stays in
the list until the storm page that names it was sent (:meth:`StormStore.done` trims exactly
what was sent, once). The sender fails open: if Redis cannot answer, pages go out singly.

>>> p = StormPolicy(max_per_window=20)
>>> decide(None, admitted=19, policy=p).action, decide(None, admitted=20, policy=p).action
(<StormAction.SEND: 'send'>, <StormAction.COLLAPSE: 'collapse'>)
>>> storm_key("pagerduty", 29402200)
'hotpath-storm-pagerduty-29402200'
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from escalation.page import Page, Severity

# A redelivered entry (crash before the ack) comes back within the outbox's min idle (60 s)
# plus a restart; an hour of "already seen in this bucket" covers that with room.
_SEEN_TTL_S = 3600
# Collapsed pages wait here until their storm page is sent; the TTL only collects the lists
# of a pager since removed from config (same week as the delivered-set).
_LIST_TTL_S = 7 * 24 * 3600
_TIMEOUT_S = 0.25

_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}

# KEYS seen (hash dedup_key -> s|c), admitted (counter), list, open (zset of buckets)
# ARGV dedup_key, max_per_window, entry, bucket, seen_ttl, list_ttl. Mirrors decide().
_ADMIT = """
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then return prev end
local admitted = tonumber(redis.call('GET', KEYS[2]) or '0')
if admitted < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], 's')
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return 'n'
end
redis.call('HSET', KEYS[1], ARGV[1], 'c')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[6])
return 'x'
"""

# KEYS list, flushed (counter), sizes (hash offset -> count); ARGV list_ttl.
# The first reader at an offset fixes how many pages that storm page lists, so every
# replica sending it (same dedup key) lists the same pages, and done() trims exactly those.
_SNAPSHOT = """
local flushed = redis.call('GET', KEYS[2]) or '0'
local n = redis.call('HGET', KEYS[3], flushed)
if not n then
  n = redis.call('LLEN', KEYS[1])
  redis.call('HSET', KEYS[3], flushed, n)
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
if tonumber(n) == 0 then return {flushed, {}} end
return {flushed, redis.call('LRANGE', KEYS[1], 0, tonumber(n) - 1)}
"""

# KEYS list, flushed (counter), open; ARGV offset, count, bucket, list_ttl.
# Trims what one storm page listed — only if nobody trimmed since it was read.
_DONE = """
local flushed = tonumber(redis.call('GET', KEYS[2]) or '0')
if flushed ~= tonumber(ARGV[1]) then return 0 end
redis.call('LTRIM', KEYS[1], ARGV[2], -1)
redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class StormPolicy:
    """More than ``max_per_window`` pages to one pager in one window is a storm.

    >>> StormPolicy(0)
    Traceback (most recent call last):
    ...
    ValueError: storm threshold must be >= 1 page per window, got 0
    """

    # 20 a minute: more than one person can read; past it the pages say "everything is down".
    max_per_window: int = 20
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_per_window < 1:
            raise ValueError(
                f"storm threshold must be >= 1 page per window, got {self.max_per_window}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"storm window must be > 0 s, got {self.window_s}")

    def bucket(self, now: float) -> int:
        """The window ``now`` falls in.

        >>> StormPolicy().bucket(119.9), StormPolicy().bucket(120.0)
        (1, 2)
        """
        return math.floor(now / self.window_s)


class StormAction(StrEnum):
    SEND = "send"          # deliver this page on its own
    COLLAPSE = "collapse"  # list it in the bucket's storm page
    SKIP = "skip"          # already listed in a storm page: nothing more to do


class StormReason(StrEnum):
    NOT_A_TRIGGER = "acknowledge and resolve are never collapsed"
    UNDER_THRESHOLD = "under the storm threshold"
    OVER_THRESHOLD = "over the storm threshold"
    ALREADY_ADMITTED = "already admitted in this window"
    ALREADY_COLLAPSED = "already collapsed in this window"


@dataclass(frozen=True, slots=True)
class StormDecision:
    action: StormAction
    reason: StormReason


Seen = Literal["sent", "collapsed"]


def decide(previous: Seen | None, admitted: int, policy: StormPolicy,
           event: str = "trigger") -> StormDecision:
    """What to do with one page: ``previous`` is what was decided for its dedup key in this
    bucket (a redelivery), ``admitted`` how many pages went out singly in it so far.

    >>> decide("collapsed", admitted=3, policy=StormPolicy()).action
    <StormAction.SKIP: 'skip'>
    >>> decide(None, admitted=99, policy=StormPolicy(), event="resolve").reason
    <StormReason.NOT_A_TRIGGER: 'acknowledge and resolve are never collapsed'>
    """
    if event != "trigger":
        return StormDecision(StormAction.SEND, StormReason.NOT_A_TRIGGER)
    if previous == "sent":
        return StormDecision(StormAction.SEND, StormReason.ALREADY_ADMITTED)
    if previous == "collapsed":
        return StormDecision(StormAction.SKIP, StormReason.ALREADY_COLLAPSED)
    if admitted < policy.max_per_window:
        return StormDecision(StormAction.SEND, StormReason.UNDER_THRESHOLD)
    return StormDecision(StormAction.COLLAPSE, StormReason.OVER_THRESHOLD)


_FROM_SCRIPT = {
    "s": StormDecision(StormAction.SEND, StormReason.ALREADY_ADMITTED),
    "c": StormDecision(StormAction.SKIP, StormReason.ALREADY_COLLAPSED),
    "n": StormDecision(StormAction.SEND, StormReason.UNDER_THRESHOLD),
    "x": StormDecision(StormAction.COLLAPSE, StormReason.OVER_THRESHOLD),
}


def storm_key(pager: str, bucket: int, offset: int = 0) -> str:
    """The dedup key of a bucket's storm page; ``offset`` > 0 only for pages that reached
    the list after its first storm page went out (a replica with a lagging clock).

    >>> storm_key("slack", 7, offset=30)
    'hotpath-storm-slack-7-30'
    """
    return f"hotpath-storm-{pager}-{bucket}" + (f"-{offset}" if offset else "")


def entry_of(page: Page) -> dict[str, str]:
    """What a storm page lists about one collapsed page."""
    return {"service": page.service, "metric": page.metric, "summary": page.summary,
            "dedup_key": page.dedup_key, "severity": page.severity}


@dataclass(frozen=True, slots=True)
class Collapsed:
    """The pages waiting in one bucket's list; ``offset`` = how many were sent before."""

    pager: str
    bucket: int
    offset: int
    entries: tuple[dict[str, str], ...]


def storm_page(c: Collapsed, policy: StormPolicy, now: float) -> Page:
    """The one page listing ``c``'s collapsed pages (pure).

    >>> e = {"service": "shop", "metric": "p99", "summary": "s", "dedup_key": "hotpath-1",
    ...      "severity": "error"}
    >>> p = storm_page(Collapsed("pd", 2, 0, (e, e)), StormPolicy(), now=181.0)
    >>> head, tail = p.summary.split(" (over ")
    >>> head
    'Page storm: 2 more pages for pd in the 60 s from 1970-01-01 00:02:00 UTC'
    >>> tail
    '20 per 60 s) — shop p99 ×2'
    >>> p.dedup_key, p.severity, p.context["storm"]["count"]
    ('hotpath-storm-pd-2', 'error', 2)
    """
    start = c.bucket * policy.window_s
    groups: dict[str, int] = {}
    for e in c.entries:
        what = f"{e.get('service', '?')} {e.get('metric', '?')}"
        groups[what] = groups.get(what, 0) + 1
    top = ", ".join(f"{what} ×{n}" for what, n in
                    sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])))
    services = sorted({e.get("service", "?") for e in c.entries})
    info: Severity = "info"
    severity = max((_severity(e.get("severity")) for e in c.entries),
                   key=_RANK.__getitem__, default=info)
    key = storm_key(c.pager, c.bucket, c.offset)
    return Page(
        dedup_key=key,
        summary=(f"Page storm: {len(c.entries)} more pages for {c.pager} in the "
                 f"{policy.window_s:g} s from {_utc(start)} (over {policy.max_per_window} "
                 f"per {policy.window_s:g} s) — {top}"),
        severity=severity, service=services[0] if len(services) == 1 else "multiple",
        metric="page_storm", labels={}, value=float(len(c.entries)), baseline=math.nan,
        deviation=math.nan, confidence=1.0, detectors=(), reasons=("page storm",),
        recent=(), finding_id=key, ts=start, created=now, action=None,
        context={"storm": {
            "pager": c.pager, "window_start": start, "window_s": policy.window_s,
            "threshold": policy.max_per_window, "count": len(c.entries),
            "pages": [dict(e) for e in c.entries],
        }},
    )


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _severity(v: Any) -> Severity:
    return v if v in _RANK else "info"


class StormStore:
    """Per-pager storm state in Redis; every call raises STORE_ERRORS on Redis trouble."""

    def __init__(self, redis: aioredis.Redis, policy: StormPolicy, *,
                 prefix: str = "hotpath:storm", timeout_s: float = _TIMEOUT_S) -> None:
        self._redis = redis
        self.policy = policy
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._admit = redis.register_script(_ADMIT)
        self._done = redis.register_script(_DONE)
        self._snapshot = redis.register_script(_SNAPSHOT)

    def _keys(self, pager: str, bucket: int) -> dict[str, str]:
        base = "{" + f"{self._prefix}:{pager}" + "}"
        return {"seen": f"{base}:seen:{bucket}", "admitted": f"{base}:admitted:{bucket}",
                "list": f"{base}:list:{bucket}", "flushed": f"{base}:flushed:{bucket}",
                "sizes": f"{base}:sizes:{bucket}", "open": f"{base}:open"}

    async def admit(self, pager: str, page: Page, now: float) -> StormDecision:
        """Decide for ``page`` at ``pager`` and record it (appending it if collapsed)."""
        if page.event != "trigger":
            return decide(None, 0, self.policy, page.event)
        bucket = self.policy.bucket(now)
        k = self._keys(pager, bucket)
        async with asyncio.timeout(self._timeout_s):
            reply: Any = await self._admit(
                keys=[k["seen"], k["admitted"], k["list"], k["open"]],
                args=[page.dedup_key, self.policy.max_per_window,
                      orjson.dumps(entry_of(page)), bucket, _SEEN_TTL_S, _LIST_TTL_S],
            )
        code = reply.decode() if isinstance(reply, bytes) else str(reply)
        return _FROM_SCRIPT[code]

    async def due(self, pager: str, now: float) -> list[int]:
        """Buckets of ``pager`` that are over and still hold collapsed pages, oldest first."""
        current = self.policy.bucket(now)
        async with asyncio.timeout(self._timeout_s):
            rows: Any = await self._redis.zrangebyscore(
                self._keys(pager, current)["open"], "-inf", f"({current}")
        return [int(r) for r in rows]

    async def collapsed(self, pager: str, bucket: int) -> Collapsed:
        """The pages the bucket's next storm page lists — the same for every replica that
        asks before :meth:`done` — and how many of the bucket's pages were sent before."""
        k = self._keys(pager, bucket)
        async with asyncio.timeout(self._timeout_s):
            reply: Any = await self._snapshot(
                keys=[k["list"], k["flushed"], k["sizes"]], args=[_LIST_TTL_S])
        flushed, raw = reply
        entries = tuple({str(a): str(b) for a, b in orjson.loads(r).items()} for r in raw)
        return Collapsed(pager, bucket, int(flushed), entries)

    async def done(self, c: Collapsed) -> bool:
        """The storm page for ``c`` was sent (or dead-lettered): drop exactly its pages.
        False when another replica already did (the pages are gone either way)."""
        k = self._keys(c.pager, c.bucket)
        async with asyncio.timeout(self._timeout_s):
            ok: Any = await self._done(
                keys=[k["list"], k["flushed"], k["open"]],
                args=[c.offset, len(c.entries), c.bucket, _LIST_TTL_S],
            )
        return int(ok) == 1
