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
import enum
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from escalation.request import Request
from escalation.verdict import Check, Stage

_SCRIPT = files("escalation").joinpath("limits.lua").read_text(encoding="utf-8")
# OSError covers refused/reset sockets that surface unwrapped; TimeoutError is asyncio.timeout.
_FAILURES = (RedisError, OSError, TimeoutError)
# The hot loop waits on the claim, so the cap is a few Redis round trips, not a network
# retry budget: past it, paging a human beats stalling the stream.
DEFAULT_TIMEOUT_S = 0.25
# A replay can arrive days late (a partition re-consumed from an old offset); a week of
# idempotency keys outlives any retention we replay from.
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 86400.0
REFUSAL_CODES = (
    "budget_action_service", "budget_service", "budget_global", "concurrency_service",
    "concurrency_global", "cooldown", "blast_radius", "blast_services",
)  # fmt: skip
_NONE = -1  # how the script is told "this limit is not configured"
__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL_S", "DEFAULT_TIMEOUT_S", "REFUSAL_CODES", "LimitOutcome",
    "LimitRequest", "LimitStatus", "Limits", "Reading", "RedisLimits", "Window", "limit_keys",
    "parse_reply", "span",
]
log = logging.getLogger(__name__)


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value}")


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` claims per rolling ``window_s`` seconds.

    >>> Window(3, 0)
    Traceback (most recent call last):
    ...
    ValueError: window_s must be a positive finite number of seconds, got 0
    """

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"window limit must be >= 0, got {self.limit}")
        _positive("window_s", self.window_s)


@dataclass(frozen=True, slots=True)
class Limits:
    """The config's ``limits:`` section; ``None`` switches a limit off.

    >>> Limits(blast_fraction=1.5)
    Traceback (most recent call last):
    ...
    ValueError: blast_fraction must be within [0, 1], got 1.5
    """

    per_action_service: Window | None = Window(3, 3600.0)
    per_service: Window | None = None
    global_: Window | None = None
    concurrency_per_service: int | None = None
    concurrency_global: int | None = None
    # An in-flight slot frees itself after this if never released (its runner died).
    lease_s: float = 600.0
    # No new action on one (service, target) this soon after the last one.
    cooldown_s: float = 0.0
    # Max fraction of a service's targets touched within blast_window_s.
    blast_fraction: float | None = None
    blast_window_s: float = 3600.0
    # Max distinct services acted on within blast_window_s.
    max_services: int | None = None

    def __post_init__(self) -> None:
        for name in ("concurrency_per_service", "concurrency_global", "max_services"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        _positive("lease_s", self.lease_s)
        _positive("blast_window_s", self.blast_window_s)
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be a finite number >= 0, got {self.cooldown_s}")
        if self.blast_fraction is not None and not 0 <= self.blast_fraction <= 1:
            raise ValueError(f"blast_fraction must be within [0, 1], got {self.blast_fraction}")


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """A request plus what the limits need beyond it.

    ``service_targets`` is the service's size (``ServiceSpec.targets``); ``action_budget``
    is a rule's own (action, service) budget, overriding ``Limits.per_action_service``.

    >>> from escalation.request import Actor
    >>> r = Request(Actor.parse("human:alice"), "restart_pods", "checkout", "prod", "pod-1",
    ...             "k", 0.0)
    >>> LimitRequest(r, service_targets=0)
    Traceback (most recent call last):
    ...
    ValueError: service_targets must be >= 1, got 0
    """

    request: Request
    service_targets: int = 1
    action_budget: Window | None = None

    def __post_init__(self) -> None:
        if self.service_targets < 1:
            raise ValueError(f"service_targets must be >= 1, got {self.service_targets}")

    def budget(self, limits: Limits) -> Window | None:
        return self.action_budget if self.action_budget is not None else limits.per_action_service


class LimitStatus(enum.Enum):
    CLAIMED = "claimed"          # every limit had room; the key and the slots are ours
    DUPLICATE = "duplicate"      # the idempotency key was claimed before: a replay
    REFUSED = "refused"          # a limit is reached; check.code says which
    UNAVAILABLE = "unavailable"  # Redis unreachable, too slow or garbled: fail closed


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """``check`` is the ``Stage.LIMITS`` answer; ``check.state`` holds the counts read."""

    status: LimitStatus
    check: Check

    @property
    def ok(self) -> bool:
        return self.check.ok


@dataclass(frozen=True, slots=True)
class Reading:
    """What the script read, before this claim (its reply, checked)."""

    status: LimitStatus
    code: str
    as_used: int
    svc_used: int
    glob_used: int
    in_flight_service: int
    in_flight_global: int
    last_target_at: float | None
    targets_touched: int
    target_touched: bool
    services_touched: int
    service_touched: bool


def parse_reply(reply: Any) -> Reading | None:
    """The script's reply, or ``None`` for anything the script cannot have said.

    >>> parse_reply([b"refused", b"cooldown", 0, 0, 0, 0, 0, b"1764132000.5", 1, 1, 1, 1]).code
    'cooldown'
    >>> parse_reply([b"claimed", b"budget_global", 0, 0, 0, 0, 0, b"", 0, 0, 0, 0]) is None
    True
    """
    try:
        word, code, *counts, last, touched, seen, services, service_seen = (
            x.decode() if isinstance(x, bytes) else x for x in reply
        )
        status = LimitStatus(word)
        last_at = float(last) if last != "" else None
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    numbers = [*counts, touched, seen, services, service_seen]
    if len(counts) != 5 or not all(type(n) is int and n >= 0 for n in numbers):
        return None
    expected = {LimitStatus.CLAIMED: ("claimed",), LimitStatus.DUPLICATE: ("duplicate",),
                LimitStatus.REFUSED: REFUSAL_CODES}.get(status, ())
    if code not in expected or (last_at is not None and not math.isfinite(last_at)):
        return None
    as_used, svc_used, glob_used, in_service, in_all = (int(n) for n in counts)
    return Reading(status, str(code), as_used, svc_used, glob_used, in_service, in_all, last_at,
                   int(touched), bool(seen), int(services), bool(service_seen))

def span(seconds: float) -> str:
    """A window length as people say it.

    >>> span(3600.0), span(5400.0), span(86400.0), span(90.0), span(0.5)
    ('1h', '90m', '1d', '90s', '0.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _state(item: LimitRequest, r: Reading, limits: Limits, now: float) -> dict[str, Any]:
    """used/limit of every configured limit, keyed by its refusal code; a claim counts
    itself (the counts after it), any other answer the counts as read."""
    add = 1 if r.status is LimitStatus.CLAIMED else 0
    state: dict[str, Any] = {}
    for code, window, used in (("budget_action_service", item.budget(limits), r.as_used),
                               ("budget_service", limits.per_service, r.svc_used),
                               ("budget_global", limits.global_, r.glob_used)):
        if window is not None:
            state[code] = {"used": used + add, "limit": window.limit, "window_s": window.window_s}
    for code, limit, used in (
        ("concurrency_service", limits.concurrency_per_service, r.in_flight_service),
        ("concurrency_global", limits.concurrency_global, r.in_flight_global),
    ):
        if limit is not None:
            state[code] = {"used": used + add, "limit": limit}
    if limits.cooldown_s > 0:
        last = now if add else r.last_target_at
        state["cooldown"] = {"cooldown_s": limits.cooldown_s, "last_at": last,
                             "free_at": None if last is None else last + limits.cooldown_s}
    if limits.blast_fraction is not None:
        state["blast_radius"] = {
            "used": r.targets_touched + (add and not r.target_touched),
            "targets": item.service_targets, "fraction": limits.blast_fraction,
            "window_s": limits.blast_window_s}
    if limits.max_services is not None:
        state["blast_services"] = {
            "used": r.services_touched + (add and not r.service_touched),
            "limit": limits.max_services, "window_s": limits.blast_window_s}
    return state


def _claimed_detail(item: LimitRequest, state: dict[str, Any]) -> str:
    """One line of every configured limit's count after the claim."""
    labels = {"budget_action_service": "action/service", "budget_service": "service",
              "budget_global": "global"}
    parts = [f"{label} {state[code]['used']}/{state[code]['limit']} per "
             f"{span(state[code]['window_s'])}"
             for code, label in labels.items() if code in state]
    where = {"concurrency_service": f"on {item.request.service}", "concurrency_global": "in all"}
    parts += [f"in flight {state[code]['used']}/{state[code]['limit']} {text}"
              for code, text in where.items() if code in state]
    if "cooldown" in state:
        parts.append(f"cooldown {span(state['cooldown']['cooldown_s'])}")
    if "blast_radius" in state:
        b = state["blast_radius"]
        parts.append(f"blast {b['used']}/{b['targets']} targets per {span(b['window_s'])}")
    if "blast_services" in state:
        b = state["blast_services"]
        parts.append(f"services {b['used']}/{b['limit']} per {span(b['window_s'])}")
    return "; ".join(parts) or "no limits configured"


def _refusal_detail(item: LimitRequest, r: Reading, limits: Limits, now: float) -> str:
    """Why the script refused, in the words a page or ``policy test`` shows."""
    req = item.request
    budget = item.budget(limits)
    if r.code == "duplicate":
        return f"idempotency key {req.idempotency_key!r} was claimed before; nothing new runs"
    if r.code == "budget_action_service" and budget is not None:
        return (f"{req.action} on {req.service}: {r.as_used}/{budget.limit} per "
                f"{span(budget.window_s)} used")
    if r.code == "budget_service" and limits.per_service is not None:
        w = limits.per_service
        return f"actions on {req.service}: {r.svc_used}/{w.limit} per {span(w.window_s)} used"
    if r.code == "budget_global" and limits.global_ is not None:
        w = limits.global_
        return f"all actions: {r.glob_used}/{w.limit} per {span(w.window_s)} used"
    if r.code == "concurrency_service":
        return (f"{r.in_flight_service}/{limits.concurrency_per_service} actions in flight "
                f"on {req.service}")
    if r.code == "concurrency_global":
        return f"{r.in_flight_global}/{limits.concurrency_global} actions in flight in all"
    if r.code == "cooldown" and r.last_target_at is not None:
        free_at = r.last_target_at + limits.cooldown_s
        return (f"{req.service}/{req.target} acted on at {_utc(r.last_target_at)}; cooldown "
                f"{span(limits.cooldown_s)}; free again at {_utc(free_at)} "
                f"(in {math.ceil(free_at - now)}s)")
    if r.code == "blast_radius":
        touched = r.targets_touched + (not r.target_touched)
        return (f"acting on {req.target} would touch {touched}/{item.service_targets} targets "
                f"of {req.service} within {span(limits.blast_window_s)}, more than "
                f"{limits.blast_fraction:g} of them")
    if r.code == "blast_services":
        touched = r.services_touched + (not r.service_touched)
        return (f"acting on {req.service} would touch {touched} services within "
                f"{span(limits.blast_window_s)}, more than {limits.max_services}")
    # Only a config reloaded between the script's answer and here lands on this line.
    return f"refused by {r.code}"


def _unavailable(error: str) -> LimitOutcome:
    detail = f"limits store unavailable ({error}); failing closed"
    return LimitOutcome(LimitStatus.UNAVAILABLE,
                        Check.refuse(Stage.LIMITS, "unavailable", detail, error=error))


def _outcome(item: LimitRequest, reading: Reading, limits: Limits, now: float,
            *, peek: bool = False) -> LimitOutcome:
    """The stage's answer for one reading; a peek's ``claimed`` means "would claim"."""
    state = _state(item, reading, limits, now)
    if peek:
        state["peek"] = True
    if reading.status is LimitStatus.CLAIMED:
        check = Check(True, Stage.LIMITS, "claimed", _claimed_detail(item, state), state)
    else:
        detail = _refusal_detail(item, reading, limits, now)
        check = Check(False, Stage.LIMITS, reading.code, detail, state)
    return LimitOutcome(reading.status, check)


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

    async def _evaluate(self, items: Sequence[LimitRequest], mode: str) -> list[LimitOutcome]:
        if not items:
            return []
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._run(items, mode, now)
        except _FAILURES as e:
            self.last_error = f"{type(e).__name__}: {e}"
            return [_unavailable(self.last_error) for _ in items]
        outcomes = []
        for item, reply in zip(items, replies, strict=True):
            reading = None if isinstance(reply, Exception) else parse_reply(reply)
            if reading is None:
                what = reply if isinstance(reply, Exception) else ValueError("garbled reply")
                self.last_error = f"{type(what).__name__}: {what}"
                outcomes.append(_unavailable(self.last_error))
            else:
                outcomes.append(_outcome(item, reading, self.limits, now, peek=mode == "peek"))
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
