"""Silences and maintenance windows: pages nobody should be woken for, for a while.

A :class:`Silence` is Alertmanager's idea: label matchers (globs here) and a time range, with
who created it and why. Pages whose labels match every matcher while the silence is active
are not sent; they are recorded with the silence's id as the reason. Maintenance windows in
config are silences too (:func:`maintenance_window`, created by ``config``), and silences
made through the API live beside them in Redis (:class:`SilenceStore`), so every replica
reads the same set.

Matching is over a page's *alert labels* (``escalation.incidents.alert_labels``): the page's
own labels plus ``service``, ``metric``, ``metric_family`` and ``severity``. A matcher on a
label the page does not have sees ``""``, so ``{"region": "*"}`` also matches pages without
a region (Alertmanager's rule for ``label=""``).

>>> s = Silence.create({"service": "checkout", "metric": "http_*"}, 100.0, 200.0,
...                    "human:alice", "deploying v2")
>>> s.id, s.state(150.0)
('sil_4e18793a457017c4', 'active')
>>> silenced_by({"service": "checkout", "metric": "http_latency_p99_ms"}, [s], 150.0) == s
True
>>> silenced_by({"service": "checkout", "metric": "http_latency_p99_ms"}, [s], 200.0) is None
True
>>> Silence.create({"service": "*"}, 100.0, 200.0, "human:alice", "everything")
Traceback (most recent call last):
...
ValueError: silence: at least one matcher must not match the empty string (a silence of everything)
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Literal, TypeVar

import orjson
import redis.asyncio as aioredis

from escalation.errors import StoreUnavailable
from escalation.stream_queue import STORE_ERRORS

T = TypeVar("T")
State = Literal["pending", "active", "expired"]

# Like the other stores the hot loop awaits: a few round trips, then the caller decides.
DEFAULT_TIMEOUT_S = 0.25
# Who created a silence that came from the config file's maintenance windows.
CONFIG_CREATOR = "config"


def silence_id(matchers: Mapping[str, str], starts_at: float, ends_at: float,
               created_by: str) -> str:
    """Deterministic id, so a maintenance window loaded by every replica is one silence.

    >>> silence_id({"service": "db"}, 0.0, 60.0, "config")
    'sil_4e0e91d645bbe47e'
    """
    body = orjson.dumps([sorted(matchers.items()), starts_at, ends_at, created_by])
    return "sil_" + hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Silence:
    """Pages matching every matcher in ``[starts_at, ends_at)`` are not sent.

    Build one with :meth:`create` (or :meth:`from_dict` for stored and API input), which
    validates; the constructor trusts its arguments.
    """

    id: str
    matchers: Mapping[str, str] = field(hash=False)  # label name → glob (fnmatch, case-sensitive)
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    @classmethod
    def create(cls, matchers: Mapping[str, str], starts_at: float, ends_at: float,
               created_by: str, comment: str, id: str | None = None) -> Silence:
        """Validate and build; the id is derived from the content unless given."""
        m = {str(k): str(v) for k, v in matchers.items()}
        _validate(m, starts_at, ends_at, created_by, comment)
        sid = silence_id(m, starts_at, ends_at, created_by) if id is None else id
        if not sid:
            raise ValueError("silence: id must not be empty")
        return cls(sid, m, float(starts_at), float(ends_at), created_by, comment)

    def state(self, now: float) -> State:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every matcher matches (a missing label is matched as ``""``).

        >>> s = Silence.create({"region": "eu-*"}, 0.0, 1.0, "config", "x")
        >>> s.matches({"region": "eu-west-1"}), s.matches({"region": "us-east-1"}), s.matches({})
        (True, False, False)
        """
        return all(fnmatchcase(labels.get(k, ""), g) for k, g in self.matchers.items())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": dict(self.matchers), "starts_at": self.starts_at,
                "ends_at": self.ends_at, "created_by": self.created_by,
                "comment": self.comment}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Silence:
        """Parse and validate (API bodies, stored records); errors name the field.

        >>> Silence.from_dict({"matchers": {"service": "db"}, "starts_at": 10,
        ...                    "ends_at": 5, "created_by": "human:bob", "comment": "x"})
        Traceback (most recent call last):
        ...
        ValueError: silence: ends_at 5 is not after starts_at 10
        """
        for name in ("matchers", "starts_at", "ends_at", "created_by", "comment"):
            if name not in raw:
                raise ValueError(f"silence: missing field {name!r}")
        matchers = raw["matchers"]
        if not isinstance(matchers, Mapping):
            raise ValueError("silence: matchers must be an object of label → glob")
        times = []
        for name in ("starts_at", "ends_at"):
            v = raw[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"silence: {name} must be a number (seconds since the epoch)")
            times.append(v)
        rid = raw.get("id")
        return cls.create(matchers, times[0], times[1], str(raw["created_by"]),
                          str(raw["comment"]), None if rid is None else str(rid))


def _validate(m: Mapping[str, str], starts_at: float, ends_at: float, created_by: str,
              comment: str) -> None:
    if not m:
        raise ValueError("silence: matchers must not be empty")
    for k, g in m.items():
        if not k:
            raise ValueError("silence: a matcher has an empty label name")
        if not g:
            raise ValueError(f"silence: matcher {k!r} has an empty pattern")
    if all(fnmatchcase("", g) for g in m.values()):
        raise ValueError("silence: at least one matcher must not match the empty string "
                         "(a silence of everything)")
    for name, t in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not math.isfinite(t):
            raise ValueError(f"silence: {name} must be finite, got {t!r}")
    if ends_at <= starts_at:
        raise ValueError(f"silence: ends_at {ends_at:g} is not after starts_at {starts_at:g}")
    if not created_by:
        raise ValueError("silence: created_by must not be empty")
    if not comment:
        raise ValueError("silence: comment must not be empty (say why)")


def maintenance_window(matchers: Mapping[str, str], starts_at: float, ends_at: float,
                       comment: str) -> Silence:
    """A maintenance window from config: a silence created by ``config``.

    >>> w = maintenance_window({"service": "db"}, 0.0, 60.0, "vacuum")
    >>> w.id, w.created_by
    ('sil_4e0e91d645bbe47e', 'config')
    """
    return Silence.create(matchers, starts_at, ends_at, CONFIG_CREATOR, comment)


def silenced_by(labels: Mapping[str, str], silences: Iterable[Silence],
                now: float) -> Silence | None:
    """The active silence that mutes these labels, or None (pure).

    When several match, the one with the smallest id wins, so every replica names the same.
    """
    hits = [s for s in silences if s.is_active(now) and s.matches(labels)]
    return min(hits, key=lambda s: s.id) if hits else None


class SilenceStore:
    """Silences shared by every replica, in Redis; each expires on its own at ``ends_at``.

    Layout: ``{prefix}:silence:{id}`` holds the silence's JSON with a TTL of
    ``ends_at - now``, and the sorted set ``{prefix}:silences`` indexes ids by ``ends_at``
    so listing is one range read; stale index entries are trimmed on every read.
    Any Redis error or an answer slower than ``timeout_s`` raises
    :class:`~escalation.errors.StoreUnavailable`; the caller decides (the runtime keeps
    the last list it read, since paging through a maintenance window is the lesser harm
    only when the list is unknown).
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "hotpath",
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis = redis
        self._index = f"{prefix}:silences"
        self._item = f"{prefix}:silence:"
        self._timeout = timeout_s

    async def _call(self, op: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except STORE_ERRORS as err:
            raise StoreUnavailable(f"silence store: {op} failed: Redis unreachable or slower "
                                   f"than {self._timeout:g} s") from err

    async def add(self, silence: Silence, now: float) -> None:
        """Store (or replace, by id) a silence; refuses one that has already ended."""
        if silence.ends_at <= now:
            raise ValueError(f"silence {silence.id}: ends_at {silence.ends_at:g} is not "
                             f"after now {now:g}")
        ttl_ms = max(1, math.ceil((silence.ends_at - now) * 1000))
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._item + silence.id, orjson.dumps(silence.to_dict()), px=ttl_ms)
        pipe.zadd(self._index, {silence.id: silence.ends_at})
        await self._call(f"add {silence.id}", pipe.execute())

    async def sync(self, silences: Iterable[Silence], now: float) -> int:
        """Add config's maintenance windows (ended ones skipped); returns how many were
        added. Their ids are content hashes, so every replica syncing the same file writes
        the same records."""
        n = 0
        for s in silences:
            if s.ends_at > now:
                await self.add(s, now)
                n += 1
        return n

    async def current(self, now: float) -> list[Silence]:
        """Every silence not yet ended (pending and active), by id."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._index, "-inf", now)
        pipe.zrange(self._index, 0, -1)
        _, ids = await self._call("current", pipe.execute())
        if not ids:
            return []
        keys = [self._item + (i.decode() if isinstance(i, bytes) else str(i)) for i in ids]
        raws = await self._call("current", self._redis.mget(keys))
        out = [_parse(r) for r in raws if r is not None]
        return sorted((s for s in out if s.ends_at > now), key=lambda s: s.id)

    async def active(self, now: float) -> list[Silence]:
        """The silences in force at ``now`` (what :func:`silenced_by` should be given)."""
        return [s for s in await self.current(now) if s.is_active(now)]

    async def get(self, silence_id: str) -> Silence | None:
        raw = await self._call(f"get {silence_id}", self._redis.get(self._item + silence_id))
        return None if raw is None else _parse(raw)

    async def expire(self, silence_id: str, now: float) -> Silence | None:
        """End a silence now (Alertmanager's "expire"); returns it as it ended, for the
        audit record, or None if there was no such silence in force."""
        current = await self.get(silence_id)
        if current is None or current.ends_at <= now:
            return None
        await self.delete(silence_id)
        return replace(current, ends_at=max(now, current.starts_at))

    async def delete(self, silence_id: str) -> bool:
        """Remove a silence whatever its state; True if it existed."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._item + silence_id)
        pipe.zrem(self._index, silence_id)
        deleted, _ = await self._call(f"delete {silence_id}", pipe.execute())
        return bool(deleted)


def _parse(raw: bytes | str) -> Silence:
    try:
        return Silence.from_dict(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as err:
        raise StoreUnavailable(f"silence store: unreadable record: {err}") from err
