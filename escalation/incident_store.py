"""Incidents in Redis, so every replica (and a restarted one) runs the same book.

Each call loads the part of the :class:`~escalation.incidents.IncidentBook` it needs, runs
the pure book, and commits the groups it changed in one Lua script that first checks each
group's version: if another replica changed one of them in between, nothing is written and
the call starts over from a fresh load. Two replicas opening the same group at once thus
make one incident and one trigger page; the second sees the first's incident and attaches.

Layout (``prefix`` defaults to ``hotpath``):

* ``{prefix}:inc:open`` — hash, group id → open :class:`~escalation.incidents.Incident`
  (JSON); open incidents are few (one per troubled group), so a load reads them all, which
  inhibition needs anyway;
* ``{prefix}:inc:ver`` — hash, group id → version, bumped by every commit of the group;
* ``{prefix}:inc:closed:{group id}`` — the group's last resolved incident
  (:class:`~escalation.incidents.Closed`), kept :data:`CLOSED_TTL_S` so a replay of its
  findings is recognised as stale and its key is never reused.

Errors: Redis unreachable, slower than ``timeout_s``, a garbled record, or more than
``max_attempts`` conflicting commits raise :class:`~escalation.errors.StoreUnavailable`;
nothing was committed. The runtime then pages per finding (each page its own incident)
rather than drop a page because grouping is down.

>>> import asyncio, redis.asyncio
>>> store = IncidentStore(redis.asyncio.Redis(host="127.0.0.1", port=1), GroupingSpec())
>>> try:
...     asyncio.run(store.tick(now=0.0))
... except StoreUnavailable as err:
...     print(err)
incident store: load failed: Redis unreachable or slower than 0.25 s
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from escalation.errors import StoreUnavailable
from escalation.incidents import (
    Closed,
    GroupingSpec,
    Incident,
    IncidentBook,
    IncidentEvent,
    InhibitRule,
    alert_labels,
    group_id,
    group_of,
)
from escalation.page import Page
from escalation.silences import Silence
from escalation.stream_queue import STORE_ERRORS

T = TypeVar("T")

# The hot loop awaits this once per batch that pages; a few round trips, like the budgets.
DEFAULT_TIMEOUT_S = 0.25
# A partition can be re-consumed days later from an old offset; a week of resolved groups
# outlives any retention we replay from (the horizon of the other idempotency records).
CLOSED_TTL_S = 7 * 86400.0
# Each conflict means another replica committed the same group meanwhile; groups live on
# one partition, so even a rebalance rarely makes two. Five in a row is contention worth
# surfacing, not retrying forever inside a batch.
DEFAULT_MAX_ATTEMPTS = 5

# KEYS: open hash, version hash, closed key of each wanted group. ARGV: the wanted group ids.
# Returns {open hash as a flat list, ids whose versions follow, versions, closed records}.
_LOAD = """
local open = redis.call('HGETALL', KEYS[1])
local ids = {}
for i = 1, #ARGV do ids[#ids + 1] = ARGV[i] end
for i = 1, #open, 2 do ids[#ids + 1] = open[i] end
local vers = {}
if #ids > 0 then vers = redis.call('HMGET', KEYS[2], unpack(ids)) end
local closed = {}
for i = 1, #ARGV do closed[i] = redis.call('GET', KEYS[2 + i]) or '' end
return {open, ids, vers, closed}
"""
# KEYS: open hash, version hash, closed key of each changed group. ARGV: ttl ms, then per
# group: id, expected version, open record ('' = no longer open), closed record ('' = same).
# Returns 1 when written, 0 (nothing written) when a group's version moved.
_COMMIT = """
local n = #KEYS - 2
for i = 1, n do
  local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[4 * i - 2]) or '0')
  if cur ~= tonumber(ARGV[4 * i - 1]) then return 0 end
end
for i = 1, n do
  local gid, rec, closed = ARGV[4 * i - 2], ARGV[4 * i], ARGV[4 * i + 1]
  if rec == '' then redis.call('HDEL', KEYS[1], gid) else redis.call('HSET', KEYS[1], gid, rec) end
  if closed ~= '' then redis.call('SET', KEYS[2 + i], closed, 'PX', ARGV[1]) end
  redis.call('HINCRBY', KEYS[2], gid, 1)
end
return 1
"""


@dataclass
class Snapshot:
    """A book as loaded, with the versions its commit must still find."""

    book: IncidentBook
    versions: dict[str, int]


class IncidentStore:
    """The shared incident book: :meth:`observe` a batch's pages, :meth:`tick` to resolve."""

    def __init__(self, redis: aioredis.Redis, spec: GroupingSpec,
                 rules: Sequence[InhibitRule] = (), *, prefix: str = "hotpath",
                 timeout_s: float = DEFAULT_TIMEOUT_S, closed_ttl_s: float = CLOSED_TTL_S,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.spec = spec
        self.rules = tuple(rules)
        self._redis = redis
        self._open = f"{prefix}:inc:open"
        self._ver = f"{prefix}:inc:ver"
        self._closed = f"{prefix}:inc:closed:"
        self._timeout = timeout_s
        self._ttl_ms = int(closed_ttl_s * 1000)
        self._attempts = max_attempts
        self._load = redis.register_script(_LOAD)
        self._commit = redis.register_script(_COMMIT)
        self.conflicts = 0  # commits refused because another replica got there first

    async def _call(self, op: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except STORE_ERRORS as err:
            raise StoreUnavailable(f"incident store: {op} failed: Redis unreachable or "
                                   f"slower than {self._timeout:g} s") from err

    async def load(self, group_ids: Collection[str] = ()) -> Snapshot:
        """Every open incident, plus the last resolved incident of these groups."""
        gids = sorted(set(group_ids))
        raw = await self._call("load", self._load(
            keys=[self._open, self._ver, *(self._closed + g for g in gids)], args=gids))
        flat, ids, vers, closed = raw
        try:
            open_ = [Incident.from_dict(orjson.loads(flat[i + 1]))
                     for i in range(0, len(flat), 2)]
            closed_ = {g: Closed.from_dict(orjson.loads(c))
                       for g, c in zip(gids, closed, strict=True) if c}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise StoreUnavailable(f"incident store: unreadable record: "
                                   f"{type(err).__name__}: {err}") from err
        versions = {_text(i): int(v or 0) for i, v in zip(ids, vers, strict=True)}
        return Snapshot(IncidentBook(self.spec, self.rules, open=open_, closed=closed_),
                        versions)

    async def commit(self, snap: Snapshot, events: Iterable[IncidentEvent]) -> bool:
        """Write the groups these events changed, if no other replica changed them since
        :meth:`load`; False (and nothing written) if one did."""
        changed = sorted({e.incident.group_id for e in events if e.changes_state})
        if not changed:
            return True
        book = snap.book
        args: list[Any] = [self._ttl_ms]
        for g in changed:
            inc = book.open.get(g)
            closed = book.closed.get(g)
            args += [g, snap.versions.get(g, 0),
                     b"" if inc is None else orjson.dumps(inc.to_dict()),
                     # A group that is open again keeps its closed record as it was.
                     b"" if inc is not None or closed is None else orjson.dumps(closed.to_dict())]
        done = await self._call("commit", self._commit(
            keys=[self._open, self._ver, *(self._closed + g for g in changed)], args=args))
        if not done:
            self.conflicts += 1
        return bool(done)

    async def _run(self, gids: Collection[str],
                   step: Callable[[IncidentBook], list[IncidentEvent]]) -> list[IncidentEvent]:
        for _ in range(self._attempts):
            snap = await self.load(gids)
            events = step(snap.book)
            if await self.commit(snap, events):
                return events
        raise StoreUnavailable(f"incident store: {self._attempts} commits in a row lost to "
                               f"other replicas; nothing written")

    async def observe(self, pages: Sequence[Page], now: float,
                      silences: Sequence[Silence] = ()) -> list[IncidentEvent]:
        """Group a batch's pages (see :meth:`IncidentBook.observe`); one load and one commit
        per attempt."""
        if not pages:
            return []
        gids = {group_id(group_of(alert_labels(p, self.spec), self.spec)) for p in pages}
        return await self._run(gids, lambda book: book.observe(pages, now, silences))

    async def tick(self, now: float) -> list[IncidentEvent]:
        """Resolve the incidents clear for ``resolve_after_s``; any replica may call it,
        and a resolve is committed (and so paged) once."""
        return await self._run((), lambda book: book.tick(now))

    async def close(self, key: str, now: float, by: str) -> IncidentEvent | None:
        """Resolve one open incident on someone's word; None if it is not open."""
        def step(book: IncidentBook) -> list[IncidentEvent]:
            e = book.close(key, now, by)
            return [] if e is None else [e]
        out = await self._run((), step)
        return out[0] if out else None

    async def open_incidents(self) -> list[Incident]:
        """The open incidents, oldest first (console and API)."""
        snap = await self.load()
        return sorted(snap.book.open.values(), key=lambda i: (i.opened_at, i.key))

    async def get(self, key: str) -> Incident | None:
        return next((i for i in await self.open_incidents() if i.key == key), None)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
