"""Budgets per (action, service) over a rolling window, claimed atomically with the
idempotency key, in Redis so every replica spends the same budget.

One Lua script (``budget.lua``) does the whole claim: a replayed idempotency key is a
``DUPLICATE`` that spends nothing; otherwise members older than the window are dropped and
the claim either fits (``CLAIMED``, key and slot taken together) or not (``EXHAUSTED``).
Times come from the injected clock, so a replay decides as the live loop did.

Budgets fail closed: any Redis error, garbled reply or an answer slower than ``timeout_s``
is ``UNAVAILABLE`` and automation does not act (DESIGN.md "Deciding"). Nothing here raises
for Redis trouble; the caller pages instead.

>>> import asyncio, redis.asyncio
>>> closed_port = redis.asyncio.Redis(host="127.0.0.1", port=1)
>>> budget = RedisBudget(closed_port, clock=lambda: 1764132000.0)
>>> asyncio.run(budget.claim("restart_pods", "checkout", "restart:f1", limit=3, window_s=3600))
BudgetOutcome(status=<BudgetStatus.UNAVAILABLE: 'unavailable'>, used=0, limit=3, window_s=3600)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from escalation.decision import BudgetOutcome, BudgetStatus

_SCRIPT = files("escalation").joinpath("budget.lua").read_text(encoding="utf-8")
# OSError covers refused/reset sockets that surface unwrapped; TimeoutError is asyncio.timeout.
_FAILURES = (RedisError, OSError, TimeoutError)
# The hot loop waits on the claim, so the cap is a few Redis round trips, not a network
# retry budget: past it, paging a human beats stalling the stream.
DEFAULT_TIMEOUT_S = 0.25
# A replay can arrive days late (a partition re-consumed from an old offset); a week of
# idempotency keys outlives any retention we replay from.
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 86400.0


def budget_key(action: str, service: str) -> str:
    """The sorted set holding one (action, service) budget's claims.

    >>> budget_key("restart_pods", "checkout")
    'hotpath:budget:restart_pods:checkout'
    """
    return f"hotpath:budget:{action}:{service}"


def idempotency_key(key: str) -> str:
    """
    >>> idempotency_key("restart:f1")
    'hotpath:idem:restart:f1'
    """
    return f"hotpath:idem:{key}"


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """One claim: ``limit`` actions per ``window_s`` seconds for (action, service).

    >>> BudgetRequest("restart_pods", "checkout", "restart:f1", limit=3, window_s=0)
    Traceback (most recent call last):
    ...
    ValueError: budget window_s must be a positive finite number of seconds, got 0
    """

    action: str
    service: str
    idempotency_key: str
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"budget limit must be >= 0, got {self.limit}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(
                "budget window_s must be a positive finite number of seconds, "
                f"got {self.window_s}"
            )


def _unavailable(req: BudgetRequest) -> BudgetOutcome:
    return BudgetOutcome(BudgetStatus.UNAVAILABLE, 0, req.limit, req.window_s)


def _outcome(reply: Any, req: BudgetRequest) -> BudgetOutcome:
    """The script's ``[status, used]``; anything else is a store we cannot trust."""
    try:
        status, used = reply
        text = status.decode() if isinstance(status, bytes) else status
        result = BudgetStatus(text)
    except (TypeError, ValueError, UnicodeDecodeError):
        return _unavailable(req)
    if result is BudgetStatus.UNAVAILABLE or not isinstance(used, int):
        return _unavailable(req)
    return BudgetOutcome(result, used, req.limit, req.window_s)


class RedisBudget:
    """Claims against the shared budget store; every failure is ``UNAVAILABLE``."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        clock: Callable[[], float],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._timeout_s = timeout_s
        self._ttl_s = idempotency_ttl_s
        self._script = redis.register_script(_SCRIPT)
        self.last_error: str | None = None  # why the latest UNAVAILABLE happened, for logs

    def _args(self, req: BudgetRequest, now: float) -> tuple[list[str], list[Any]]:
        keys = [budget_key(req.action, req.service), idempotency_key(req.idempotency_key)]
        return keys, [now, req.window_s, req.limit, self._ttl_s, req.idempotency_key]

    async def claim(
        self, action: str, service: str, idempotency_key: str, limit: int, window_s: float
    ) -> BudgetOutcome:
        req = BudgetRequest(action, service, idempotency_key, limit, window_s)
        keys, args = self._args(req, self._clock())
        try:
            async with asyncio.timeout(self._timeout_s):
                # The script object re-loads itself if Redis lost its script cache.
                reply = await self._script(keys=keys, args=args)
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            return _unavailable(req)
        return _outcome(reply, req)

    async def claim_many(self, requests: Sequence[BudgetRequest]) -> list[BudgetOutcome]:
        """All claims of one batch in one pipeline round trip, in order, one clock reading.

        A connection failure or timeout makes the whole batch ``UNAVAILABLE``; an error
        answer to one claim makes only that one ``UNAVAILABLE``.
        """
        if not requests:
            return []
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._run(requests, now)
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            return [_unavailable(r) for r in requests]
        outcomes = []
        for req, reply in zip(requests, replies, strict=True):
            if isinstance(reply, Exception):
                self.last_error = f"{type(reply).__name__}: {reply}"
                outcomes.append(_unavailable(req))
            else:
                outcomes.append(_outcome(reply, req))
        return outcomes

    async def _run(self, requests: Sequence[BudgetRequest], now: float) -> list[Any]:
        replies = await self._send(requests, now)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Redis restarted or flushed its script cache; a NOSCRIPT claim did not run,
            # so sending it again cannot double-spend.
            self._script.sha = await self._redis.script_load(self._script.script)
            retried = await self._send([requests[i] for i in missing], now)
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        return replies

    async def _send(self, requests: Sequence[BudgetRequest], now: float) -> list[Any]:
        # EVALSHA directly: a pipeline given the script object would first ask SCRIPT
        # EXISTS, a second round trip per batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for req in requests:
                keys, args = self._args(req, now)
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)
