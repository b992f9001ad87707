"""On-call escalations in Redis, so any replica can carry one on — each step exactly once.

One record per incident (a hash: ``state`` — :class:`~escalation.oncall.EscalationState`
as JSON, policy snapshot included — and ``version``) and one sorted set of the PAGING
ones by ack deadline. The decisions are the pure functions of :mod:`escalation.oncall`;
this store only makes them atomic: read the record, decide in Python, then write with a
compare-and-set on ``version`` (one Lua script, :data:`_SCRIPT`), which also keeps the
deadline index in step with the state.

* :meth:`OnCallStore.start` creates the record and returns level 1's page only to the
  caller that created it; a replayed start finds the record (``already_started``).
* :meth:`OnCallStore.due` takes every escalation whose ack timeout has passed and
  advances it. Two replicas sweeping at once both compute the step; only one write
  succeeds, and only that replica gets the :class:`~escalation.oncall.Notify` actions.
* :meth:`OnCallStore.ack` / :meth:`OnCallStore.resolve` apply a human's (or automation's)
  answer; a sweep that raced them loses its write and pages no one.
* :meth:`OnCallStore.claim_event` remembers an inbound webhook's event id, so a replayed
  PagerDuty delivery is recognised and ignored.

A replica that dies between winning a step and queueing its pages loses that one page;
the next level still fires at its deadline. The caller writes the pages to the durable
outbox straight after :meth:`due` returns, so that window is one Redis round trip.

Redis failing or answering slower than ``timeout_s`` raises
:class:`~escalation.errors.StoreUnavailable`.

>>> import asyncio, redis.asyncio
>>> store = OnCallStore(redis.asyncio.Redis(host="127.0.0.1", port=1))
>>> try:
...     asyncio.run(store.get("inc-1"))
... except StoreUnavailable as e:
...     print(str(e).split(":")[0])
on-call store could not read inc-1
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio
from redis.exceptions import RedisError

from escalation.errors import StoreUnavailable
from escalation.oncall import (
    EscalationPolicy,
    EscalationState,
    Reason,
    Status,
    Transition,
    acknowledge,
    resolve,
    start,
    step,
)

_FAILURES = (RedisError, OSError, TimeoutError)
# A few Redis round trips; past it the caller answers 503 or sweeps again, never hangs.
DEFAULT_TIMEOUT_S = 0.25
# A week outlives the weekly incident review that reads who acked what and when.
DEFAULT_RETENTION_S = 7 * 86400.0
# Bounds one sweep's work; a sweeper that gets a full batch simply calls again.
SWEEP_BATCH = 100
# Concurrent writers on one incident are a sweep and a human or two; a handful of
# re-reads always settles them. More than that means something writes in a loop.
CAS_ATTEMPTS = 5

# KEYS[1] the record hash, KEYS[2] the deadline index. Scores and states come from the
# caller (injected clock), never Redis TIME. Replies: {1, version} written;
# {0, version, state} another writer was first (or the record exists, for create);
# {-1} no such record (gone past retention).
#   create  ARGV 'create', state, deadline ('' = not indexed), member, ttl_s ('' = none)
#   cas     ARGV 'cas', expected version, state, deadline, member, ttl_s
_SCRIPT = """
local op = ARGV[1]
local record, due = KEYS[1], KEYS[2]
local function index_and_ttl(deadline, member, ttl)
  if deadline == '' then redis.call('ZREM', due, member)
  else redis.call('ZADD', due, deadline, member) end
  if ttl == '' then redis.call('PERSIST', record)
  else redis.call('EXPIRE', record, math.max(1, math.ceil(tonumber(ttl)))) end
end
if op == 'create' then
  if redis.call('EXISTS', record) == 1 then
    return {0, unpack(redis.call('HMGET', record, 'version', 'state'))}
  end
  redis.call('HSET', record, 'version', '1', 'state', ARGV[2])
  index_and_ttl(ARGV[3], ARGV[4], ARGV[5])
  return {1, '1'}
end
if op == 'cas' then
  local version = redis.call('HGET', record, 'version')
  if not version then
    redis.call('ZREM', due, ARGV[5])
    return {-1}
  end
  if version ~= ARGV[2] then
    return {0, version, redis.call('HGET', record, 'state')}
  end
  local new = tostring(tonumber(version) + 1)
  redis.call('HSET', record, 'version', new, 'state', ARGV[3])
  index_and_ttl(ARGV[4], ARGV[5], ARGV[6])
  return {1, new}
end
return redis.error_reply('oncall: unknown op ' .. tostring(op))
"""

_STEPPED = frozenset({Reason.ESCALATED, Reason.REPEATED, Reason.EXHAUSTED})


def _text(v: Any) -> str:
    # The caller's client may or may not decode responses.
    return v.decode() if isinstance(v, bytes) else str(v)


def _load(raw: Any) -> EscalationState:
    return EscalationState.from_dict(orjson.loads(raw))


class OnCallStore:
    """Escalation records shared by every replica; see the module docstring."""

    def __init__(self, redis: redis.asyncio.Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 prefix: str = "hotpath", retention_s: float = DEFAULT_RETENTION_S,
                 sweep_batch: int = SWEEP_BATCH) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._retention_s = retention_s
        self._batch = sweep_batch
        self._due_key = f"{prefix}:oncall:due"
        self._script = redis.register_script(_SCRIPT)

    def _key(self, incident_key: str) -> str:
        return f"{self._prefix}:oncall:{incident_key}"

    def _fail(self, e: BaseException, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"on-call store could not {what}: {type(e).__name__}: {e}")

    def _write_args(self, state: EscalationState) -> list[str]:
        deadline = "" if state.deadline is None else repr(state.deadline)
        # Resolved records stay readable for the review, then Redis drops them; open ones
        # live until resolved (the incident module resolves every incident it opened).
        ttl = repr(self._retention_s) if state.status is Status.RESOLVED else ""
        return [orjson.dumps(state.to_dict()).decode(), deadline, state.incident_key, ttl]

    async def _run(self, keys: list[str], args: list[str]) -> list[Any]:
        async with asyncio.timeout(self._timeout_s):
            reply: list[Any] = await self._script(keys=keys, args=args)
        return reply

    async def start(self, policy: EscalationPolicy, incident_key: str,
                    now: float) -> Transition:
        """Open the incident's escalation: level 1's page goes to this caller only.

        A record that exists already (a replay, another replica) comes back unchanged with
        reason ``already_started`` and no actions.
        """
        t = start(policy, incident_key, now)
        try:
            reply = await self._run([self._key(incident_key), self._due_key],
                                    ["create", *self._write_args(t.state)])
        except _FAILURES as e:
            raise self._fail(e, f"start {incident_key}") from e
        if reply[0] == 1:
            return t
        existing = _load(reply[2])
        return Transition(existing, (), Reason.ALREADY_STARTED,
                          f"{incident_key}: escalation already {existing.status.value} "
                          f"at level {existing.level}")

    async def get(self, incident_key: str) -> EscalationState | None:
        """The incident's escalation in any state, or None."""
        got = await self._read(incident_key)
        return None if got is None else got[1]

    async def _read(self, incident_key: str) -> tuple[str, EscalationState] | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                version, raw = await self._redis.hmget(self._key(incident_key),
                                                       ["version", "state"])
        except _FAILURES as e:
            raise self._fail(e, f"read {incident_key}") from e
        if version is None or raw is None:
            return None
        return _text(version), _load(raw)

    async def ack(self, incident_key: str, actor: str, now: float) -> Transition | None:
        """Acknowledge: escalation stops. None when there is no such incident."""
        return await self._answer(incident_key, lambda s: acknowledge(s, actor, now))

    async def resolve(self, incident_key: str, actor: str, now: float) -> Transition | None:
        """Resolve: escalation ends; the record is kept ``retention_s``. None if unknown."""
        return await self._answer(incident_key, lambda s: resolve(s, actor, now))

    async def _answer(self, incident_key: str,
                      decide: Callable[[EscalationState], Transition]) -> Transition | None:
        got = await self._read(incident_key)
        for _ in range(CAS_ATTEMPTS):
            if got is None:
                return None
            version, state = got
            t = decide(state)
            if t.reason not in (Reason.ACKED, Reason.RESOLVED):
                return t  # nothing to write: already acked or resolved
            try:
                reply = await self._run([self._key(incident_key), self._due_key],
                                        ["cas", version, *self._write_args(t.state)])
            except _FAILURES as e:
                raise self._fail(e, f"update {incident_key}") from e
            if reply[0] == 1:
                return t
            if reply[0] == -1:
                return None
            # A sweep (or another human) wrote first: decide again on what it wrote.
            got = _text(reply[1]), _load(reply[2])
        raise StoreUnavailable(f"on-call store could not update {incident_key}: it changed "
                               f"{CAS_ATTEMPTS} times while being updated")

    async def due(self, now: float) -> list[Transition]:
        """Advance every escalation whose ack timeout passed by ``now``; each step goes to
        exactly one caller across replicas. Returns the steps this caller won (their
        ``actions`` are the pages to send). Raises :class:`StoreUnavailable` when nothing
        could be swept; a failure part-way returns the steps already won (they are
        written: their pages must go out).
        """
        try:
            async with asyncio.timeout(self._timeout_s):
                members = await self._redis.zrangebyscore(self._due_key, "-inf", repr(now),
                                                          start=0, num=self._batch)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for m in members:
                        pipe.hmget(self._key(_text(m)), ["version", "state"])
                    rows: Sequence[Any] = await pipe.execute()
        except _FAILURES as e:
            raise self._fail(e, "sweep due escalations") from e
        won: list[Transition] = []
        for member, (version, raw) in zip(members, rows, strict=True):
            key = _text(member)
            if version is None or raw is None:
                state_args = ["", "", key, ""]  # gone: the cas drops it from the index
                t = None
            else:
                t = step(_load(raw), now)
                if t.reason not in _STEPPED:
                    continue  # not due after all (re-read a newer state) or stopped
                state_args = self._write_args(t.state)
            try:
                reply = await self._run([self._key(key), self._due_key],
                                        ["cas", _text(version or ""), *state_args])
            except _FAILURES as e:
                if won:
                    return won
                raise self._fail(e, "sweep due escalations") from e
            if t is not None and reply[0] == 1:
                won.append(t)
        return won

    async def claim_event(self, source: str, event_id: str, ttl_s: float) -> bool:
        """True the first time ``source``/``event_id`` is seen within ``ttl_s``; False for a
        replay. :meth:`release_event` gives the claim back when applying it failed."""
        if not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"claim_event ttl_s must be positive and finite, got {ttl_s}")
        try:
            async with asyncio.timeout(self._timeout_s):
                fresh = await self._redis.set(self._event_key(source, event_id), "1", nx=True,
                                              px=math.ceil(ttl_s * 1000))
        except _FAILURES as e:
            raise self._fail(e, f"remember {source} event {event_id}") from e
        return bool(fresh)

    async def release_event(self, source: str, event_id: str) -> None:
        """Forget a claimed event, so the sender's retry is applied (best effort)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(self._event_key(source, event_id))
        except _FAILURES as e:
            raise self._fail(e, f"forget {source} event {event_id}") from e

    def _event_key(self, source: str, event_id: str) -> str:
        return f"{self._prefix}:oncall-event:{source}:{event_id}"
