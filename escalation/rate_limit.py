"""Per-integration rate limits, shared by every sender replica through Redis.

A receiver such as PagerDuty accepts about 120 events a minute per routing key and answers
429 past it. Each pager gets a bucket of ``limit`` tokens; a send spends one, and each spent
token comes back exactly ``window_s`` after it was spent. So in *any* window of ``window_s``
at most ``limit`` sends happen — a bucket refilling continuously at ``limit/window`` would
let up to twice that through in a minute (a full bucket plus a minute of refill), which is
what earns the 429. A burst of pages still goes out at once while tokens remain.

:func:`decide` is the pure rule; :class:`RateLimiter` applies the same rule atomically in
Redis (one Lua script over a sorted set of spend times per pager), so replicas share the
budget, and :meth:`RateLimiter.acquire` *waits* for a token — a page is delayed, never
dropped. Paging fails open: if Redis cannot answer, each process keeps its own window.

>>> lim = RateLimit.per_minute(120)
>>> lim
RateLimit(limit=120, window_s=60.0)
>>> decide([0.0] * 120, now=30.0, limit=lim)
RateDecision(granted=False, wait_s=30.0, reason=<RateReason.WINDOW_FULL: 'window full'>)
>>> decide([0.0] * 120, now=60.0, limit=lim).granted
True
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from escalation.retry import Sleep
from escalation.stream_queue import STORE_ERRORS

log = logging.getLogger(__name__)

# The script's float arithmetic can leave a wait of one ulp; sleeping at least 1 ms makes
# sure the clock passes the boundary instead of spinning on a zero-length sleep.
_MIN_WAIT_S = 0.001

# Every call is bounded: a slow Redis counts as a down Redis (then the local window rules).
_TIMEOUT_S = 0.25

# KEYS[1] sorted set of spend times, KEYS[2] its member counter; ARGV now, window_s, limit.
# Mirrors decide(): drop spends at or before now - window, grant while fewer than limit
# remain, else wait until the spend whose expiry frees a slot is window_s old.
_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - window))
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. seq)
  local ttl = math.ceil(window * 1000) + 1000
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {1, '0'}
end
local row = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
return {0, string.format('%.17g', tonumber(row[2]) + window - now)}
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` sends in any window of ``window_s`` seconds.

    >>> RateLimit(0, 60.0)
    Traceback (most recent call last):
    ...
    ValueError: rate limit must allow at least 1 send, got 0
    """

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"rate limit must allow at least 1 send, got {self.limit}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"rate limit window must be > 0 s, got {self.window_s}")

    @classmethod
    def per_minute(cls, rate: float) -> RateLimit:
        """The limit for ``rate`` events a minute; a fractional rate widens the window so
        it is never exceeded (0.5/min → 1 per 120 s, 2.5/min → 2 per 48 s).

        >>> RateLimit.per_minute(0.5), RateLimit.per_minute(2.5)
        (RateLimit(limit=1, window_s=120.0), RateLimit(limit=2, window_s=48.0))
        >>> RateLimit.per_minute(0)
        Traceback (most recent call last):
        ...
        ValueError: rate must be > 0 events per minute, got 0
        """
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0 events per minute, got {rate}")
        limit = max(1, math.floor(rate))
        return cls(limit, 60.0 * limit / rate)


def declared_limit(pager: object) -> RateLimit | None:
    """The limit a pager declares with an optional ``rate_per_min`` attribute (None: none).

    >>> class PD:
    ...     name, rate_per_min = "pagerduty", 120.0
    >>> declared_limit(PD()), declared_limit(object())
    (RateLimit(limit=120, window_s=60.0), None)
    """
    rate = getattr(pager, "rate_per_min", None)
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"pager {getattr(pager, 'name', pager)!r}: rate_per_min must be a "
                         f"number, got {type(rate).__name__}")
    return RateLimit.per_minute(float(rate))


class RateReason(StrEnum):
    """Why a send may or may not go now."""

    TOKEN_FREE = "token free"
    WINDOW_FULL = "window full"


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Send now (``granted``), or wait ``wait_s`` for the next token."""

    granted: bool
    wait_s: float
    reason: RateReason


def decide(spent: Sequence[float], now: float, limit: RateLimit) -> RateDecision:
    """May a send go at ``now``, given the times tokens were ``spent`` (any order)?

    Spends at or before ``now - window_s`` have come back. Otherwise the wait is until the
    spend whose return leaves fewer than ``limit`` outstanding.

    >>> lim = RateLimit(2, 10.0)
    >>> decide([1.0, 4.0], now=5.0, limit=lim).wait_s
    6.0
    >>> decide([1.0, 4.0], now=11.0, limit=lim).reason
    <RateReason.TOKEN_FREE: 'token free'>
    """
    live = sorted(t for t in spent if t > now - limit.window_s)
    if len(live) < limit.limit:
        return RateDecision(True, 0.0, RateReason.TOKEN_FREE)
    frees = live[len(live) - limit.limit]
    return RateDecision(False, frees + limit.window_s - now, RateReason.WINDOW_FULL)


class RateLimiter:
    """Token buckets in Redis, one per key (a pager's name), spent atomically.

    >>> import asyncio
    >>> async def no_sleep(s: float) -> None: ...
    >>> down = RateLimiter(aioredis.Redis(port=1), clock=lambda: 0.0, sleep=no_sleep)
    >>> asyncio.run(down.try_take("pd", RateLimit(1, 60.0))).granted  # local window
    True
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        clock: Callable[[], float],
        sleep: Sleep,
        *,
        prefix: str = "hotpath:rate",
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._sleep = sleep
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._script = redis.register_script(_SCRIPT)
        self._local: dict[str, list[float]] = {}  # key -> spend times, while Redis is down
        self._degraded = False

    def keys(self, key: str) -> list[str]:
        """The script's KEYS; one hash tag keeps a pager's keys in one cluster slot.

        >>> RateLimiter(aioredis.Redis(), lambda: 0.0, asyncio.sleep).keys("pd")
        ['{hotpath:rate:pd}:spent', '{hotpath:rate:pd}:seq']
        """
        base = "{" + f"{self._prefix}:{key}" + "}"
        return [f"{base}:spent", f"{base}:seq"]

    async def try_take(self, key: str, limit: RateLimit) -> RateDecision:
        """Spend a token of ``key`` now if one is free; else say how long until one is."""
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                reply: Any = await self._script(
                    keys=self.keys(key), args=[repr(now), repr(limit.window_s), limit.limit]
                )
            granted, wait = int(reply[0]) == 1, float(reply[1])
        except STORE_ERRORS as e:
            return self._take_locally(key, limit, now, e)
        if self._degraded:
            log.info("rate limits: Redis answers again; windows are shared")
            self._degraded = False
        if granted:
            return RateDecision(True, 0.0, RateReason.TOKEN_FREE)
        return RateDecision(False, wait, RateReason.WINDOW_FULL)

    def _take_locally(self, key: str, limit: RateLimit, now: float,
                      error: BaseException) -> RateDecision:
        if not self._degraded:
            log.warning("rate limits: Redis unavailable (%s: %s); limiting per process",
                        type(error).__name__, error)
            self._degraded = True
        spent = [t for t in self._local.get(key, []) if t > now - limit.window_s]
        decision = decide(spent, now, limit)
        if decision.granted:
            spent.append(now)
        self._local[key] = spent
        return decision

    async def acquire(self, key: str, limit: RateLimit) -> float:
        """Wait until a token of ``key`` is spent for us; returns the seconds waited.

        The wait runs to the moment the decision named, not for its length from now: a
        busy event loop does not make a page wait longer than the bucket asks.
        """
        start = self._clock()
        while True:
            asked = self._clock()
            decision = await self.try_take(key, limit)
            if decision.granted:
                return self._clock() - start
            now = self._clock()
            remaining = asked + decision.wait_s - now
            # A clock that has not moved must still be slept on (at least the minimum), or
            # a rounding remainder of zero would spin here.
            if remaining > 0 or now <= asked:
                await self._sleep(max(remaining, _MIN_WAIT_S))
