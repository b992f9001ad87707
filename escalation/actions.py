"""The durable action queue and its runner: an action whose intent was recorded still runs
after a crash.

:class:`ActionQueue` is the Redis stream ``hotpath:actions``. Unlike the page outbox it has
no disk fallback: automation fails closed, so if Redis cannot take the request,
:meth:`ActionQueue.put_many` raises :class:`OutboxError` and the caller pages instead.

:class:`ActionRunner` claims requests, executes them through the one retry stage, reports
each outcome once through ``on_outcome`` (the runtime writes the audit "outcome" record
and pages on failure there), then acks.

Contract: at-least-once delivery + idempotency key. Each request's progress is a mark in
Redis, ``hotpath:exec:{idempotency_key}``, claimed with SET NX before executing:

* ``started``  — set before the call. Found on a redelivery (crash mid-flight, or another
  runner on the same key) it means "maybe executed": send again with the *same*
  ``Idempotency-Key`` header, so the receiver applies it once. This is also why retrying
  retryable failures is allowed here at all.
* ``done``     — the final result is stored in the mark; a redelivery does not execute
  again (success or failure: a failed action was already reported and paged), it only
  reports the stored result if that report did not finish.
* ``reported`` — ``on_outcome`` returned; a redelivery only acks.

So a request queued twice executes once, and every outcome is reported at least once. If
``on_outcome`` raises, the error is logged and the entry stays pending; it comes back
(XAUTOCLAIM after ``min_idle_ms``, or a restart) and is reported from the stored result.

Gate: a request can wait in the queue while the world changes (queued just before a pause,
an approval granted later, a rollback). So just before it would execute — never for a mark
already ``done``/``reported``, whose outcome is settled — the runner awaits the optional
``gate(req)``. ``None`` lets it run; a string is the reason it must not: the executor is not
called, the result ``ActionResult(False, None, "not executed: <reason>", 0.0)`` is stored as
``done`` and reported like any other outcome, and the entry is acked. A refused action is
not deferred: a redelivery finds it done, and whoever lifts the pause decides again. A gate
that raises refuses with ``"gate failed: <Type>: <message>"`` (fail closed). What the gate
checks is the caller's policy, not this module's: the runtime passes one that refuses the
actions of non-human actors while the kill switch says paused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis

from escalation.backoff import Backoff
from escalation.errors import OutboxError
from escalation.executors.base import ActionRequest, ActionResult, Executor
from escalation.retry import Outcome, Sleep, with_retries
from escalation.stream_queue import STORE_ERRORS, StreamQueue
from escalation.worker import repeat, run_until

log = logging.getLogger(__name__)

OnOutcome = Callable[[ActionRequest, ActionResult], Awaitable[None]]
OnAttempt = Callable[[str, Outcome, float], None]
# None: execute; a string: the reason not to (see the module docstring).
Gate = Callable[[ActionRequest], Awaitable[str | None]]

_UNKNOWN_OUTCOME = ("outcome unknown: a runner stopped while this non-idempotent action was "
                    "in flight; not sent again")
# Marks outlive any redelivery: Kafka retention plus restarts is days, not weeks.
_MARK_TTL_S = 7 * 24 * 3600


def _ignore(executor: str, outcome: Outcome, latency_s: float) -> None:
    return None


class ActionQueue:
    """Action requests waiting for a runner (one generic :class:`StreamQueue`).

    >>> ActionQueue(aioredis.Redis()).queue.stream
    'hotpath:actions'
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str = "hotpath:actions",
        group: str = "executors",
        timeout_s: float = 0.25,  # as the page outbox: slower than this is "Redis is down"
        min_idle_ms: int = 60_000,
    ) -> None:
        self.queue: StreamQueue[ActionRequest] = StreamQueue(
            redis, stream, group,
            encode=ActionRequest.to_json, decode=ActionRequest.from_json,
            timeout_s=timeout_s, min_idle_ms=min_idle_ms,
        )

    @property
    def redis(self) -> aioredis.Redis:
        return self.queue.redis

    async def put_many(self, requests: Sequence[ActionRequest]) -> None:
        """XADD every request in one pipeline, or raise :class:`OutboxError`."""
        try:
            await self.queue.put_many(requests)
        except STORE_ERRORS as e:
            raise OutboxError(
                f"action queue {self.queue.stream} unavailable: {type(e).__name__}: {e}"
            ) from e

    async def claim(
        self, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, ActionRequest]]:
        return await self.queue.claim(consumer, count, block_ms)

    async def ack(self, entry_id: str) -> None:
        await self.queue.ack(entry_id)


class ActionRunner:
    """Claims, executes (with retries), reports and acks action requests — see the module."""

    def __init__(
        self,
        queue: ActionQueue,
        executor: Executor,
        backoff: Backoff,
        clock: Callable[[], float],
        on_outcome: OnOutcome,
        *,
        sleep: Sleep = asyncio.sleep,
        # Fewer tries than pages: a remediation late by a minute may no longer be the right
        # one; the failure is paged and a human decides.
        max_attempts: int = 5,
        # Per request (``Router.attempts_for``): 1 for actions not declared idempotent, since
        # a retried timeout may run them twice. None: ``max_attempts`` for every request.
        attempts_for: Callable[[ActionRequest], int] | None = None,
        on_attempt: OnAttempt = _ignore,
        consumer: str = "runner",
        batch: int = 8,
        block_ms: int = 1000,
        mark_prefix: str = "hotpath:exec:",
        mark_ttl_s: int = _MARK_TTL_S,
        gate: Gate | None = None,
    ) -> None:
        self._queue = queue
        self._executor = executor
        self._backoff = backoff
        self._clock = clock
        self._on_outcome = on_outcome
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._attempts_for = attempts_for
        self._on_attempt = on_attempt
        self._consumer = consumer
        self._batch = batch
        self._block_ms = block_ms
        self._mark_prefix = mark_prefix
        self._mark_ttl_s = mark_ttl_s
        self._timeout_s = queue.queue.timeout_s
        self._gate = gate

    async def run(self, stop: asyncio.Event) -> None:
        """Run actions until ``stop`` is set; Redis outages only pause it."""
        await run_until(stop, lambda: repeat(
            self.run_once, backoff=self._backoff, sleep=self._sleep,
            errors=STORE_ERRORS, on_error=self._store_error,
        ))

    def _store_error(self, e: BaseException, failures: int) -> None:
        if failures == 1:
            log.warning("runner %s: action queue unavailable: %s: %s",
                        self._consumer, type(e).__name__, e)
        self._queue.queue.rewind(self._consumer)

    async def run_once(self) -> int:
        """Claim one batch and handle it. Returns the entries handled.

        Different keys run concurrently; entries sharing a key run one after the other, so
        the second sees the first's mark and does not execute again.
        """
        claimed = await self._queue.claim(self._consumer, self._batch, self._block_ms)
        by_key: dict[str, list[tuple[str, ActionRequest]]] = {}
        for entry_id, req in claimed:
            by_key.setdefault(req.idempotency_key, []).append((entry_id, req))

        async def in_order(entries: list[tuple[str, ActionRequest]]) -> None:
            for entry_id, req in entries:
                await self.handle(entry_id, req)

        await asyncio.gather(*(in_order(e) for e in by_key.values()))
        return len(claimed)

    async def handle(self, entry_id: str, req: ActionRequest) -> None:
        """Execute (unless done), report (unless reported), ack."""
        key = self._mark_prefix + req.idempotency_key
        mark = await self._claim_mark(key)
        if mark.get("state") == "reported":
            log.info("action %s already done and reported; dropping the duplicate",
                     req.idempotency_key)
            await self._queue.ack(entry_id)
            return
        if mark.get("state") == "done":
            result = ActionResult.from_dict(mark["result"])
        else:
            if mark.get("state") == "started" and not self._retry_safe(req):
                # It may have run: sending a non-idempotent action again could run it twice.
                # A person finds out what happened (the failure is paged), nothing is re-sent.
                log.warning("action %s was started before and is not idempotent; not sending "
                            "again, reporting the outcome as unknown", req.idempotency_key)
                result = ActionResult(False, None, _UNKNOWN_OUTCOME, 0.0)
            elif (refusal := await self._refusal(req)) is not None:
                log.warning("action %s not executed: %s", req.idempotency_key, refusal)
                result = ActionResult(False, None, f"not executed: {refusal}", 0.0)
            else:
                if mark.get("state") == "started":
                    log.warning("action %s was started before (crash or duplicate); sending "
                                "again under the same idempotency key", req.idempotency_key)
                result = await self._execute(req)
            await self._set_mark(key, {"state": "done", "result": result.to_dict()})
        try:
            await self._on_outcome(req, result)
        except Exception:
            # Left pending: XAUTOCLAIM hands it back after min_idle_ms, which paces the
            # retries of a failing audit write; the stored result is reported then.
            log.exception("action %s: reporting the outcome failed; will retry",
                          req.idempotency_key)
            return
        await self._set_mark(key, {"state": "reported", "result": result.to_dict()})
        await self._queue.ack(entry_id)

    async def _refusal(self, req: ActionRequest) -> str | None:
        """The gate's reason not to execute ``req``, or None; a failing gate refuses."""
        if self._gate is None:
            return None
        try:
            return await self._gate(req)
        except Exception as e:
            # Fail closed: a gate that cannot tell whether automation is paused must not
            # let the action through.
            log.exception("action %s: the gate failed; refusing", req.idempotency_key)
            return f"gate failed: {type(e).__name__}: {e}"

    def _retry_safe(self, req: ActionRequest) -> bool:
        return self._attempts_for is None or self._attempts_for(req) > 1

    async def _execute(self, req: ActionRequest) -> ActionResult:
        r = await with_retries(
            partial(self._executor.execute, req),
            backoff=self._backoff,
            sleep=self._sleep,
            clock=self._clock,
            max_attempts=(self._max_attempts if self._attempts_for is None
                          else self._attempts_for(req)),
            on_attempt=partial(self._on_attempt, self._executor.name),
        )
        if r.value is not None:
            return replace(r.value, latency_s=r.latency_s)
        err = r.error
        return ActionResult(False, None if err is None else err.status,
                            f"{self._executor.name}: {err} (after {r.attempts} attempt(s))",
                            r.latency_s)

    async def _claim_mark(self, key: str) -> dict[str, Any]:
        """{} if this call claimed the key, else the mark found there."""
        started = orjson.dumps({"state": "started"})
        async with asyncio.timeout(self._timeout_s):
            if await self.redis.set(key, started, nx=True, ex=self._mark_ttl_s):
                return {}
            raw = await self.redis.get(key)
        if raw is None:  # expired between the two calls: treat as never seen
            return {}
        mark = orjson.loads(raw)
        return mark if isinstance(mark, dict) else {}

    async def _set_mark(self, key: str, mark: dict[str, Any]) -> None:
        async with asyncio.timeout(self._timeout_s):
            await self.redis.set(key, orjson.dumps(mark), ex=self._mark_ttl_s)

    @property
    def redis(self) -> aioredis.Redis:
        return self._queue.redis
