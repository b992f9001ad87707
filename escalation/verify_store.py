"""Watches under verification, kept in Redis so a restarted or rebalanced processor carries on.

Layout (``prefix`` defaults to ``hotpath``):

* ``{prefix}:verify:pending`` — hash, request id → ``{"watch": ..., "progress": ...}``;
* ``{prefix}:verify:result:{request_id}`` — the verdict, kept :data:`RESULT_TTL_S`, so a
  replayed batch that executes nothing new does not start watching the same action again.

Each write is one Lua script, so the check and the change are atomic across replicas:
:meth:`VerifyStore.add` refuses a request that already has a result, :meth:`~VerifyStore.finish`
records the first verdict only (its return value tells the caller whether to roll back and
page, so two owners during a rebalance cannot both do it), and
:meth:`~VerifyStore.save_progress` never resurrects a finished watch.

Errors: any Redis error, refused connection or answer slower than ``timeout_s`` raises
:class:`VerifyStoreError` (cause chained). The store does not decide what that means: the
in-memory :class:`~escalation.verify.Verifier` goes on judging, and the caller retries the
write on a later batch or pages that verification state could not be saved.

>>> import asyncio, redis.asyncio
>>> store = VerifyStore(redis.asyncio.Redis(host="127.0.0.1", port=1))
>>> try:
...     asyncio.run(store.result("req_1"))
... except VerifyStoreError as err:
...     print(err)
verify store: result req_1 failed: Redis unreachable or slower than 0.25 s
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Sequence
from typing import Any, NamedTuple, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from escalation.errors import VerifyStoreError
from escalation.verdict import Check
from escalation.verify import NO_PROGRESS, Progress, Watch

T = TypeVar("T")

# Like the budget store: the hot loop awaits these writes, so the cap is a few round trips.
DEFAULT_TIMEOUT_S = 0.25
# A partition can be re-consumed days later from an old offset; a week of verdicts outlives
# any retention we replay from (the same horizon as the budget's idempotency keys).
RESULT_TTL_S = 7 * 86400.0
# OSError covers refused/reset sockets that surface unwrapped; TimeoutError is asyncio.timeout.
_FAILURES = (RedisError, OSError, TimeoutError)

# KEYS: pending hash, result key. ARGV: request id, record. 1 = pending, 0 = already decided.
_ADD = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: pending hash, result key. ARGV: request id, result, ttl ms. 1 = this call decided.
_FINISH = """
local first = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1])
if first then return 1 end
return 0
"""
# KEYS: pending hash. ARGV: request id, record, ... Only watches still pending are updated.
_SAVE = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
"""



class Pending(NamedTuple):
    """A stored watch with the progress saved for it."""

    watch: Watch
    progress: Progress


class VerifyStore:
    def __init__(self, redis: aioredis.Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 prefix: str = "hotpath", result_ttl_s: float = RESULT_TTL_S) -> None:
        self._redis = redis
        self._timeout = timeout_s
        self._pending = f"{prefix}:verify:pending"
        self._result_prefix = f"{prefix}:verify:result:"
        self._ttl_ms = int(result_ttl_s * 1000)
        self._add = redis.register_script(_ADD)
        self._finish = redis.register_script(_FINISH)
        self._save = redis.register_script(_SAVE)

    def _result_key(self, request_id: str) -> str:
        return self._result_prefix + request_id

    async def _call(self, op: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except _FAILURES as err:
            raise VerifyStoreError(f"verify store: {op} failed: Redis unreachable or slower "
                                   f"than {self._timeout:g} s") from err

    async def add(self, w: Watch, progress: Progress = NO_PROGRESS) -> bool:
        """Store a watch; False if its request already has a verdict (do not watch again).

        Adding a watch that is pending already keeps the stored one (and its progress).
        """
        record = orjson.dumps({"watch": w.to_dict(), "progress": progress.to_dict()})
        got = await self._call(f"add {w.request_id}", self._add(
            keys=[self._pending, self._result_key(w.request_id)],
            args=[w.request_id, record]))
        return bool(got)

    async def finish(self, w: Watch, check: Check) -> bool:
        """Record the verdict and stop watching; True if this call decided it first.

        False means another owner recorded a verdict already: the caller must not roll back
        or page a second time (:meth:`result` has the first one).
        """
        result = orjson.dumps({"request_id": w.request_id, "series_key": w.series_key,
                               "action": w.action, "target": w.target,
                               "rollback": w.rollback, "check": check.to_dict()})
        got = await self._call(f"finish {w.request_id}", self._finish(
            keys=[self._pending, self._result_key(w.request_id)],
            args=[w.request_id, result, self._ttl_ms]))
        return bool(got)

    async def result(self, request_id: str) -> dict[str, Any] | None:
        """The verdict recorded by :meth:`finish` (for :data:`RESULT_TTL_S`), or None."""
        raw = await self._call(f"result {request_id}",
                               self._redis.get(self._result_key(request_id)))
        if raw is None:
            return None
        out: dict[str, Any] = orjson.loads(raw)
        return out

    async def save_progress(self, items: Sequence[tuple[Watch, Progress]]) -> int:
        """Checkpoint progress (one round trip); finished watches are skipped. Returns how
        many were saved. Feed :meth:`Verifier.drain_changed` to it once per batch."""
        if not items:
            return 0
        args: list[str | bytes] = []
        for w, p in items:
            args += [w.request_id, orjson.dumps({"watch": w.to_dict(), "progress": p.to_dict()})]
        got = await self._call(f"save_progress of {len(items)}",
                               self._save(keys=[self._pending], args=args))
        return int(got)

    async def pending(self) -> list[Pending]:
        """Every watch not yet finished, oldest action first."""
        raw = await self._call("pending", self._redis.hgetall(self._pending))
        out = [_parse(k, v) for k, v in raw.items()]
        return sorted(out, key=lambda p: (p.watch.started_at, p.watch.request_id))

    async def pending_for(self, series_keys: Collection[str]) -> list[Pending]:
        """Pending watches of these series: what a partition's new owner takes over.

        Watches are few (each is an executed action, bounded by budgets), so reading the one
        hash and filtering here beats a per-series index kept in step with it.
        """
        keys = series_keys if isinstance(series_keys, (set, frozenset)) else set(series_keys)
        return [p for p in await self.pending() if p.watch.series_key in keys]


def _parse(field: bytes | str, raw: bytes | str) -> Pending:
    rid = field.decode(errors="replace") if isinstance(field, bytes) else field
    try:
        d = orjson.loads(raw)
        return Pending(Watch.from_dict(d["watch"]), Progress.from_dict(d["progress"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise VerifyStoreError(f"verify store: pending record {rid!r} is unreadable: "
                               f"{type(err).__name__}: {err}") from err
