"""Which pages each pager already delivered, so a redelivered entry is not sent again.

Redis keys ``<prefix><pager>:<dedup_key>`` with a TTL, shared across restarts and replicas;
a bounded in-memory map covers the time Redis is down. A failed lookup answers "not
delivered": a duplicate page (folded by the receiver's dedup key) beats a lost one.

>>> import asyncio
>>> ds = DeliveredSet(aioredis.Redis(port=1), clock=lambda: 0.0, timeout_s=0.05)
>>> async def go() -> tuple[bool, bool]:
...     await ds.add("pd", "hotpath-f1")   # Redis unreachable: remembered locally
...     return await ds.contains("pd", "hotpath-f1"), await ds.contains("pd", "other")
>>> asyncio.run(go())
(True, False)
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

import redis.asyncio as aioredis

from escalation.stream_queue import STORE_ERRORS

log = logging.getLogger(__name__)

# A finding is replayed at most within Kafka retention plus a restart; a week covers that
# with room, and keys expire on their own so the set never needs collecting.
_TTL_S = 7 * 24 * 3600

# The local map only bridges a Redis outage; 100k keys is hours of heavy paging, ~10 MB.
_LOCAL_MAX = 100_000


class DeliveredSet:
    """(pager, dedup key) pairs delivered recently."""

    def __init__(
        self,
        redis: aioredis.Redis,
        clock: Callable[[], float],
        prefix: str = "hotpath:outbox:delivered:",
        ttl_s: int = _TTL_S,
        timeout_s: float = 0.25,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._local: OrderedDict[str, float] = OrderedDict()  # key -> expiry

    def _key(self, pager: str, dedup_key: str) -> str:
        return f"{self._prefix}{pager}:{dedup_key}"

    async def contains(self, pager: str, dedup_key: str) -> bool:
        key = self._key(pager, dedup_key)
        expiry = self._local.get(key)
        if expiry is not None and expiry > self._clock():
            return True
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._redis.exists(key))
        except STORE_ERRORS:
            return False

    async def add(self, pager: str, dedup_key: str) -> None:
        key = self._key(pager, dedup_key)
        self._local[key] = self._clock() + self._ttl_s
        self._local.move_to_end(key)
        while len(self._local) > _LOCAL_MAX:
            self._local.popitem(last=False)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(key, b"1", ex=self._ttl_s)
        except STORE_ERRORS as e:
            log.warning("delivered-set: Redis unavailable, remembering %s locally: %s", key, e)
