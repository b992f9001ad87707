"""The page sender: a long-running task that drains the outbox into every pager.

It runs beside the hot loop, never in it. Each pass it delivers what the spool holds (pages
written while Redis was down), sends the storm pages of minutes that are over, then claims a
batch from the Redis stream, sends every page to every pager concurrently through the one
retry stage (:mod:`escalation.retry`), and acks. For each (pager, page):

0. only the pagers the page names in ``receivers`` (an on-call level), or all of them;
1. already delivered (the :class:`DeliveredSet`)? skip;
2. storm protection (:mod:`escalation.storm`, optional): past the threshold this minute the
   page is listed in the minute's storm page instead of sent;
3. rate limit (:mod:`escalation.rate_limit`): each attempt waits for a token of the pager's
   shared bucket — delayed, never dropped;
4. retries with backoff that honours Retry-After;
5. a page some pager would not take — a permanent error, or retries spent — is
   dead-lettered (``<stream>:dead``, or the spool's dead file) naming the pager and the
   error, then acked; with a ``fallback`` pager (:mod:`escalation.fallback`) a human is also
   alerted through it, and already before the retries run out when the pager keeps failing.

Delivery is at-least-once; the delivered-set skips (pager, dedup key) pairs already sent, so
a redelivered entry (crash before the ack, a copy in both Redis and the spool) is not sent
twice by the senders sharing that Redis; a copy that still slips through carries the same
dedup key, and the receiver folds it into the same incident.

Metrics go through ``on_result(pager_name, outcome, latency_s)`` with outcome "sent",
"retry", "failed" or "collapsed"; the runtime wires Prometheus to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from escalation.backoff import Backoff
from escalation.delivered import DeliveredSet
from escalation.errors import DeliveryError, OutboxError
from escalation.fallback import (
    FallbackPolicy,
    FallbackReason,
    PagerHealth,
    fallback_page,
    fallback_reason,
)
from escalation.outbox import PageOutbox
from escalation.page import Page
from escalation.pagers.base import Pager
from escalation.rate_limit import RateLimit, RateLimiter, declared_limit
from escalation.retry import Outcome, Sleep, with_retries
from escalation.storm import StormAction, StormDecision, StormPolicy, StormStore, storm_page
from escalation.stream_queue import STORE_ERRORS
from escalation.worker import repeat, run_until

log = logging.getLogger(__name__)

OnResult = Callable[[str, Outcome, float], None]


def _ignore(pager: str, outcome: Outcome, latency_s: float) -> None:
    return None


class PageSender:
    """Claims pages from ``outbox`` (and its spool) and delivers them to ``pagers``.

    ``fallback``: the receiver alerted when a pager rejects or keeps failing a page (once per
    page and pager; see ``fallback_policy``). ``rate_limits``: per pager name, overriding
    what a pager declares with ``rate_per_min``; buckets are shared through the outbox's
    Redis (or ``limiter``'s, when given). ``storm``: page-storm protection per pager; None
    turns it off.
    """

    def __init__(
        self,
        outbox: PageOutbox,
        pagers: Sequence[Pager],
        backoff: Backoff,
        clock: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        # 8 tries with the default backoff span ~25 s of waiting: long enough to ride out a
        # receiver's restart, short enough that a dead receiver's pages reach the dead letter
        # (and the other pagers are not affected: each pager retries on its own).
        max_attempts: int = 8,
        on_result: OnResult = _ignore,
        *,
        consumer: str = "sender",
        delivered: DeliveredSet | None = None,
        batch: int = 16,
        block_ms: int = 1000,  # how often an idle sender looks at the spool
        fallback: Pager | None = None,
        fallback_policy: FallbackPolicy | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        limiter: RateLimiter | None = None,
        storm: StormPolicy | None = None,
    ) -> None:
        names = [p.name for p in pagers]
        if len(set(names)) != len(names):
            raise ValueError(f"pager names must be unique, got {names}")
        self._outbox = outbox
        self._pagers = tuple(pagers)
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._on_result = on_result
        self._consumer = consumer
        redis = outbox.queue.redis
        self._delivered = delivered or DeliveredSet(redis, clock)
        self._batch = batch
        self._block_ms = block_ms
        self._fallback = fallback
        self._fallback_policy = fallback_policy or FallbackPolicy()
        self._health = PagerHealth()
        everyone = [*self._pagers, *([fallback] if fallback is not None else [])]
        overrides = dict(rate_limits or {})
        unknown = sorted(set(overrides) - {p.name for p in everyone})
        if unknown:
            raise ValueError(f"rate limits for unknown pagers {unknown}; pagers are {names}")
        self._limits: dict[str, RateLimit] = {}
        for p in everyone:
            limit = overrides.get(p.name) or declared_limit(p)
            if limit is not None:
                self._limits[p.name] = limit
        if limiter is None and self._limits:
            limiter = RateLimiter(redis, clock, sleep)
        self._limiter = limiter
        self._storm = StormStore(redis, storm) if storm is not None else None
        # Storm pages are per receiver, the fallback's included (an outage of the primary
        # would otherwise turn into a storm at the fallback).
        self._storm_pagers = {p.name: p for p in everyone}

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; Redis outages only slow it down."""
        await run_until(stop, lambda: repeat(
            self.run_once, backoff=self._backoff, sleep=self._sleep,
            errors=(*STORE_ERRORS, OutboxError), on_error=self._store_error,
        ))

    def _store_error(self, e: BaseException, failures: int) -> None:
        if failures == 1:
            log.warning("sender %s: outbox unavailable: %s: %s",
                        self._consumer, type(e).__name__, e)
        # Entries claimed before the failure are still ours: read them again first.
        self._outbox.queue.rewind(self._consumer)

    async def run_once(self) -> int:
        """One pass: the spool, due storm pages, then one claimed batch.

        Returns the pages handled (storm pages included)."""
        handled = await self.drain_spool()
        handled += await self.flush_storms()
        claimed = await self._outbox.claim(self._consumer, self._batch, self._block_ms)
        await asyncio.gather(*(self._handle_entry(eid, page) for eid, page in claimed))
        return handled + len(claimed)

    async def drain_spool(self) -> int:
        """Deliver every spooled page; mark each delivered; compact the spool."""
        spool = self._outbox.spool
        if not await asyncio.to_thread(spool.has_pending):
            return 0
        pages = await asyncio.to_thread(spool.pending)

        async def one(page: Page) -> None:
            await self.deliver(page)
            await asyncio.to_thread(spool.mark_delivered, page.dedup_key)

        await asyncio.gather(*(one(p) for p in pages))
        await asyncio.to_thread(spool.compact)
        return len(pages)

    async def flush_storms(self) -> int:
        """Send the storm page of every minute that is over and still lists pages."""
        if self._storm is None:
            return 0
        sent = 0
        for name, pager in self._storm_pagers.items():
            for bucket in await self._storm.due(name, self._clock()):
                collapsed = await self._storm.collapsed(name, bucket)
                if collapsed.entries:
                    page = storm_page(collapsed, self._storm.policy, self._clock())
                    error = await self._deliver_to(pager, page, storm_gate=False)
                    if error is not None:
                        await self._dead_letter(page, f"{name}: {error}")
                    sent += 1
                await self._storm.done(collapsed)
        return sent

    async def _handle_entry(self, entry_id: str, page: Page) -> None:
        await self.deliver(page)
        await self._outbox.ack(entry_id)

    async def deliver(self, page: Page) -> None:
        """Send ``page`` to its pagers — those ``page.receivers`` names, or every pager when
        it names none; dead-letter it naming each pager that refused it (or is unknown)."""
        targets = [p for p in self._pagers if not page.receivers or p.name in page.receivers]
        errors = await asyncio.gather(*(self._deliver_to(p, page) for p in targets))
        failed = [f"{p.name}: {e}" for p, e in zip(targets, errors, strict=True) if e]
        known = {p.name for p in self._pagers}
        # A receiver missing from config would make the page vanish: keep it on record.
        failed += [f"{name}: no such pager" for name in page.receivers if name not in known]
        if failed:
            await self._dead_letter(page, "; ".join(failed))

    async def _dead_letter(self, page: Page, why: str) -> None:
        log.error("page %s not delivered: %s", page.dedup_key, why)
        await self._outbox.dead_letter(page, why)

    async def _deliver_to(self, pager: Pager, page: Page, *,
                          storm_gate: bool = True) -> DeliveryError | None:
        """Send to one pager; fallback alerts it starts are done before this returns, so
        the entry is not acked while one is still in flight."""
        alerts: list[asyncio.Task[None]] = []
        try:
            error = await self._send(pager, page, storm_gate, alerts)
        except BaseException:
            # Stopping (or a bug): the entry is not acked, so a redelivery alerts again.
            for task in alerts:
                task.cancel()
            await asyncio.gather(*alerts, return_exceptions=True)
            raise
        await asyncio.gather(*alerts)
        return error

    async def _send(self, pager: Pager, page: Page, storm_gate: bool,
                    alerts: list[asyncio.Task[None]] | None) -> DeliveryError | None:
        if await self._delivered.contains(pager.name, page.dedup_key):
            return None
        if storm_gate and self._storm is not None:
            decision = await self._admit(pager, page)
            if decision is not None and decision.action is not StormAction.SEND:
                if decision.action is StormAction.COLLAPSE:
                    self._on_result(pager.name, "collapsed", 0.0)
                await self._delivered.add(pager.name, page.dedup_key)
                return None
        limit = self._limits.get(pager.name)
        gate: Callable[[], Awaitable[object]] | None = None
        if limit is not None and self._limiter is not None:
            gate = partial(self._limiter.acquire, pager.name, limit)
        alerted = False

        def failed(error: DeliveryError, attempt: int) -> None:
            nonlocal alerted
            now = self._clock()
            self._health.failed(pager.name, now)
            fallback = self._fallback
            if alerts is None or fallback is None or fallback.name == pager.name or alerted:
                return
            final = not error.retryable or attempt >= self._max_attempts
            reason = fallback_reason(error, attempt, final, self._health.since(pager.name),
                                     now, self._fallback_policy)
            if reason is not None:
                alerted = True
                alerts.append(asyncio.create_task(
                    self._alert(page, pager.name, error, reason, attempt, final)))

        result = await with_retries(
            partial(pager.send, page),
            backoff=self._backoff,
            sleep=self._sleep,
            clock=self._clock,
            max_attempts=self._max_attempts,
            on_attempt=partial(self._on_result, pager.name),
            before_attempt=gate,
            on_failure=failed,
        )
        if result.error is not None:
            return result.error
        self._health.succeeded(pager.name)
        await self._delivered.add(pager.name, page.dedup_key)
        return None

    async def _admit(self, pager: Pager, page: Page) -> StormDecision | None:
        """The storm decision, or None (send) when Redis cannot say: paging fails open."""
        assert self._storm is not None
        try:
            return await self._storm.admit(pager.name, page, self._clock())
        except STORE_ERRORS as e:
            log.warning("storm protection unavailable for %s, sending %s singly: %s: %s",
                        pager.name, page.dedup_key, type(e).__name__, e)
            return None

    async def _alert(self, page: Page, primary: str, error: DeliveryError,
                     reason: FallbackReason, attempts: int, final: bool) -> None:
        """Tell the fallback receiver that ``primary`` failed ``page``; a fallback that
        fails too dead-letters its alert, so the failure is on record either way."""
        assert self._fallback is not None
        alert = fallback_page(page, primary, error, reason, attempts,
                              dead_lettered=final, now=self._clock())
        failure = await self._send(self._fallback, alert, storm_gate=True, alerts=None)
        if failure is not None:
            await self._dead_letter(alert, f"{self._fallback.name}: {failure}")
