"""The page sender: a long-running task that drains the outbox into every pager.

It runs beside the hot loop, never in it. Each pass it delivers what the spool holds (pages
written while Redis was down), then claims a batch from the Redis stream, sends every page
to every pager concurrently through the one retry stage (:mod:`escalation.retry`), and acks.
A page some pager would not take — a permanent error, or retries spent — is dead-lettered
(``<stream>:dead``, or the spool's dead file) naming the pager and the error, then acked.

Delivery is at-least-once; the :class:`DeliveredSet` skips (pager, dedup key) pairs already
sent, so a redelivered entry (crash before the ack, a copy in both Redis and the spool) is
not sent twice by the senders sharing that Redis; a copy that still slips through carries
the same dedup key, and the receiver folds it into the same incident.

Metrics go through ``on_result(pager_name, outcome, latency_s)`` with outcome "sent",
"retry" or "failed"; the runtime wires Prometheus to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial

from escalation.backoff import Backoff
from escalation.delivered import DeliveredSet
from escalation.errors import DeliveryError, OutboxError
from escalation.outbox import PageOutbox
from escalation.page import Page
from escalation.pagers.base import Pager
from escalation.retry import Outcome, Sleep, with_retries
from escalation.stream_queue import STORE_ERRORS
from escalation.worker import repeat, run_until

log = logging.getLogger(__name__)

OnResult = Callable[[str, Outcome, float], None]


def _ignore(pager: str, outcome: Outcome, latency_s: float) -> None:
    return None


class PageSender:
    """Claims pages from ``outbox`` (and its spool) and delivers them to ``pagers``."""

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
        self._delivered = delivered or DeliveredSet(outbox.queue.redis, clock)
        self._batch = batch
        self._block_ms = block_ms

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
        """One pass: the spool, then one claimed batch. Returns the pages handled."""
        handled = await self.drain_spool()
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

    async def _handle_entry(self, entry_id: str, page: Page) -> None:
        await self.deliver(page)
        await self._outbox.ack(entry_id)

    async def deliver(self, page: Page) -> None:
        """Send ``page`` to every pager; dead-letter it naming each pager that refused it."""
        errors = await asyncio.gather(*(self._send(p, page) for p in self._pagers))
        failed = [(p.name, e) for p, e in zip(self._pagers, errors, strict=True) if e]
        if failed:
            why = "; ".join(f"{name}: {err}" for name, err in failed)
            log.error("page %s not delivered: %s", page.dedup_key, why)
            await self._outbox.dead_letter(page, why)

    async def _send(self, pager: Pager, page: Page) -> DeliveryError | None:
        if await self._delivered.contains(pager.name, page.dedup_key):
            return None
        result = await with_retries(
            partial(pager.send, page),
            backoff=self._backoff,
            sleep=self._sleep,
            clock=self._clock,
            max_attempts=self._max_attempts,
            on_attempt=partial(self._on_result, pager.name),
        )
        if result.error is not None:
            return result.error
        await self._delivered.add(pager.name, page.dedup_key)
        return None
