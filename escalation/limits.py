"""Limits on what may run: budgets, concurrency, cooldown and blast radius, claimed in Redis.

Every replica spends the same limits, so they live in Redis, and one Lua script
(``limits.lua``) claims a request against all of them in one atomic step, together with its
idempotency key: a replay is ``DUPLICATE`` and claims nothing; otherwise the checks run in
a fixed order, the first one that fails refuses with its own code, and a request that
passes them all records everything at once. The codes, in that order:

``budget_action_service``, ``budget_service``, ``budget_global`` (rolling windows),
``concurrency_service``, ``concurrency_global`` (in-flight slots, freed by :meth:`release`
or by their lease), ``cooldown`` (per (service, target)), ``blast_radius`` (fraction of a
service's targets touched in a window) and ``blast_services`` (distinct services touched).

A claim that never ran (the action queue refused it) is undone by
:meth:`RedisLimits.unclaim`, in a second script (``limits_unclaim.lua``).

Times come from the injected clock, so a replay decides as the live loop did. Limits fail
closed: any Redis error, garbled reply or an answer slower than ``timeout_s`` is
``UNAVAILABLE`` and nothing runs (DESIGN.md "Deciding"); nothing here raises for Redis
trouble, the caller pages instead.

>>> import asyncio, redis.asyncio
>>> from escalation.request import Actor, Request
>>> req = Request(Actor.parse("automation:restart"), "restart_pods", "checkout", "prod",
...               "pod-1", "restart:f1", 1764132000.0)
>>> closed_port = redis.asyncio.Redis(host="127.0.0.1", port=1)
>>> limits = RedisLimits(closed_port, Limits(), clock=lambda: 1764132000.0)
>>> out = asyncio.run(limits.claim(LimitRequest(req)))
>>> out.status, out.check.code
(<LimitStatus.UNAVAILABLE: 'unavailable'>, 'unavailable')
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from escalation.limits_reply import Reading, outcome, parse_reply, span, unavailable
from escalation.limits_spec import (
    REFUSAL_CODES,
    LimitOutcome,
    LimitRequest,
    Limits,
    LimitStatus,
    Window,
)
from escalation.request import Request

_SCRIPT = files("escalation").joinpath("limits.lua").read_text(encoding="utf-8")
_UNCLAIM = files("escalation").joinpath("limits_unclaim.lua").read_text(encoding="utf-8")
# OSError covers refused/reset sockets that surface unwrapped; TimeoutError is asyncio.timeout.
_FAILURES = (RedisError, OSError, TimeoutError)
# The hot loop waits on the claim, so the cap is a few Redis round trips, not a network
# retry budget: past it, paging a human beats stalling the stream.
DEFAULT_TIMEOUT_S = 0.25
# A replay can arrive days late (a partition re-consumed from an old offset); a week of
# idempotency keys outlives any retention we replay from.
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 86400.0
_NONE = -1  # how the script is told "this limit is not configured"
__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL_S", "DEFAULT_TIMEOUT_S", "REFUSAL_CODES", "LimitOutcome",
    "LimitRequest", "LimitStatus", "Limits", "Reading", "RedisLimits", "Window", "limit_keys",
    "parse_reply", "span",
]
log = logging.getLogger(__name__)


def _part(name: str) -> str:
    """Escape ':' so ('a:b', 'c') and ('a', 'b:c') never share a key."""
    return name.replace("%", "%25").replace(":", "%3A")


def limit_keys(request: Request, prefix: str = "hotpath") -> list[str]:
    """The script's KEYS; one hash tag keeps them in one Redis Cluster slot.

    >>> from escalation.request import Actor
    >>> req = Request(Actor.parse("human:a"), "restart", "shop:eu", "prod", "pod-1", "k1", 0.0)
    >>> limit_keys(req)[:2]
    ['{hotpath:lim}:idem:k1', '{hotpath:lim}:as:restart:shop%3Aeu']
    """
    base = "{" + prefix + ":lim}"
    action, service, target = _part(request.action), _part(request.service), _part(request.target)
    return [
        f"{base}:idem:{request.idempotency_key}", f"{base}:as:{action}:{service}",
        f"{base}:ash:{action}:{service}", f"{base}:svc:{service}", f"{base}:global",
        f"{base}:cc:{service}", f"{base}:ccg", f"{base}:cd:{service}:{target}",
        f"{base}:bt:{service}", f"{base}:bs",
    ]  # fmt: skip


def _window_args(window: Window | None) -> tuple[int, float]:
    return (window.limit, window.window_s) if window is not None else (_NONE, 1.0)


class RedisLimits:
    """Claims against the shared limits store; every failure is ``UNAVAILABLE``."""

    def __init__(self, redis: redis.asyncio.Redis, limits: Limits, clock: Callable[[], float],
                 *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
                 prefix: str = "hotpath") -> None:
        self._redis = redis
        self.limits = limits
        self._clock = clock
        self._timeout_s = timeout_s
        self._ttl_s = idempotency_ttl_s
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)
        self._unclaim = redis.register_script(_UNCLAIM)
        self.last_error: str | None = None  # why the latest UNAVAILABLE happened, for logs

    async def claim(self, item: LimitRequest) -> LimitOutcome:
        return (await self.claim_many([item]))[0]

    async def claim_many(self, items: Sequence[LimitRequest]) -> list[LimitOutcome]:
        """All claims of one batch in one pipeline round trip, in order, one clock reading.

        A connection failure or timeout makes the whole batch ``UNAVAILABLE``; an error
        answer to one claim makes only that one ``UNAVAILABLE``.
        """
        return await self._evaluate(items, "claim")

    async def peek(self, item: LimitRequest) -> LimitOutcome:
        """What :meth:`claim` would answer now, claiming nothing (``policy test``, dry run)."""
        return (await self._evaluate([item], "peek"))[0]

    async def release(self, request: Request) -> None:
        """Free the in-flight slots of a request this claimed, once its execution ended;
        idempotent. Only after ``CLAIMED``: a duplicate shares its key with the original,
        whose slots would be freed. A failure is only logged: the lease frees them anyway."""
        keys = limit_keys(request, self._prefix)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zrem(keys[5], request.idempotency_key)
                    pipe.zrem(keys[6], request.idempotency_key)
                    await pipe.execute()
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("limits: release of %s failed (%s); its lease frees it",
                        request.idempotency_key, self.last_error)

    async def unclaim(self, request: Request) -> bool:
        """Undo a ``CLAIMED`` request that was never queued, so retrying it claims afresh.

        Atomically deletes its idempotency key, takes it out of every budget and frees its
        slots; cool-down and blast-radius records stay (the target was nearly acted on, and
        over-counting it is the safe side). ``True`` when something was undone, ``False`` when
        the key was not claimed (so a second call is ``False``). Only after ``CLAIMED``: a
        duplicate shares its key with the original, whose claim would be undone. A failure is
        only logged and is ``False``: the claim then stays spent, never over-granted.
        """
        keys = limit_keys(request, self._prefix)
        try:
            async with asyncio.timeout(self._timeout_s):
                # The Script object reloads itself on NOSCRIPT (a restarted Redis).
                undone = await self._unclaim(keys=keys, args=[request.idempotency_key])
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("limits: unclaim of %s failed (%s); its budget entries stay until "
                        "their window ends", request.idempotency_key, self.last_error)
            return False
        return bool(undone == 1)

    async def _evaluate(self, items: Sequence[LimitRequest], mode: str) -> list[LimitOutcome]:
        if not items:
            return []
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._run(items, mode, now)
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            return [unavailable(self.last_error) for _ in items]
        outcomes = []
        for item, reply in zip(items, replies, strict=True):
            reading = None if isinstance(reply, Exception) else parse_reply(reply)
            if reading is None:
                what = reply if isinstance(reply, Exception) else ValueError("garbled reply")
                self.last_error = f"{type(what).__name__}: {what}"
                outcomes.append(unavailable(self.last_error))
            else:
                outcomes.append(outcome(item, reading, self.limits, now, peek=mode == "peek"))
        return outcomes

    async def _run(self, items: Sequence[LimitRequest], mode: str, now: float) -> list[Any]:
        replies = await self._send(items, mode, now)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Redis restarted or flushed its script cache; a NOSCRIPT claim did not run,
            # so sending it again cannot double-spend.
            self._script.sha = await self._redis.script_load(self._script.script)
            retried = await self._send([items[i] for i in missing], mode, now)
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        return replies

    def _args(self, item: LimitRequest, mode: str, now: float) -> list[Any]:
        lim, req = self.limits, item.request
        fraction = lim.blast_fraction if lim.blast_fraction is not None else _NONE
        return [
            mode, now, req.idempotency_key, req.target, req.service, self._ttl_s,
            *_window_args(item.budget(lim)), *_window_args(lim.per_service),
            *_window_args(lim.global_),
            _NONE if lim.concurrency_per_service is None else lim.concurrency_per_service,
            _NONE if lim.concurrency_global is None else lim.concurrency_global,
            lim.lease_s, lim.cooldown_s, fraction, item.service_targets, lim.blast_window_s,
            _NONE if lim.max_services is None else lim.max_services,
        ]  # fmt: skip

    async def _send(self, items: Sequence[LimitRequest], mode: str, now: float) -> list[Any]:
        # EVALSHA directly: a pipeline given the script object would first ask SCRIPT
        # EXISTS, a second round trip per batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in items:
                keys = limit_keys(item.request, self._prefix)
                pipe.evalsha(self._script.sha, len(keys), *keys, *self._args(item, mode, now))
            return await pipe.execute(raise_on_error=False)
