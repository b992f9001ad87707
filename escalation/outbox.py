"""The durable page outbox: a Redis stream, with the local spool behind it.

The hot loop calls :meth:`PageOutbox.put_many` and may commit its Kafka offsets once it
returns: the pages are then durable — Redis accepted them, or the spool file was fsynced.
Paging fails open where automation fails closed: on any Redis error or a slow answer the
pages go to the spool, and the sender delivers them from there. Only when the spool cannot
be written either does ``put_many`` raise :class:`OutboxError`.

A timeout can leave a page in both places (Redis got it, the answer did not come back); the
receiver sees one dedup key, and the sender's delivered-set skips the second copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis

from escalation.errors import OutboxError
from escalation.page import Page
from escalation.spool import Spool
from escalation.stream_queue import STORE_ERRORS, StreamQueue

log = logging.getLogger(__name__)


class PageOutbox:
    """Pages waiting for the sender: stream ``hotpath:outbox:pages``, spool as fallback.

    >>> import tempfile
    >>> from pathlib import Path
    >>> ob = PageOutbox(aioredis.Redis(), Spool(Path(tempfile.mkdtemp())))
    >>> ob.queue.stream, ob.queue.group, ob.queue.dead_stream
    ('hotpath:outbox:pages', 'senders', 'hotpath:outbox:pages:dead')
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        spool: Spool,
        stream: str = "hotpath:outbox:pages",
        group: str = "senders",
        # The hot loop waits for this before committing offsets: a healthy Redis answers a
        # pipeline of XADDs in ~1 ms, so 250 ms means "down or overloaded" — spool instead.
        timeout_s: float = 0.25,
        min_idle_ms: int = 60_000,
    ) -> None:
        self.spool = spool
        self.queue: StreamQueue[Page] = StreamQueue(
            redis, stream, group,
            encode=Page.to_json, decode=Page.from_json,
            timeout_s=timeout_s, min_idle_ms=min_idle_ms,
        )

    async def depth(self) -> int | None:
        """Pages waiting: the senders' group lag plus its pending entries (Redis 7's
        ``XINFO GROUPS``), plus the spool's; None when Redis cannot say."""
        spooled = len(self.spool.pending())
        redis, stream = self.queue.redis, self.queue.stream
        try:
            async with asyncio.timeout(self.queue.timeout_s):
                length = await redis.xlen(stream)
                groups = await redis.xinfo_groups(stream) if length else []
        except STORE_ERRORS:
            return None
        for g in groups:
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.queue.group:
                return int(g.get("lag") or 0) + int(g.get("pending") or 0) + spooled
        return int(length) + spooled  # no sender has read yet: every entry waits

    async def put_many(self, pages: Sequence[Page]) -> None:
        """Make ``pages`` durable: Redis first, the fsynced spool if Redis fails."""
        if not pages:
            return
        try:
            await self.queue.put_many(pages)
            return
        except STORE_ERRORS as e:
            log.warning("outbox: Redis unavailable (%s: %s); spooling %d page(s)",
                        type(e).__name__, e, len(pages))
        try:
            await asyncio.to_thread(self.spool.append, pages)
        except OSError as e:
            raise OutboxError(f"neither Redis nor the spool at {self.spool.dir} "
                              f"took {len(pages)} page(s): {e}") from e

    async def claim(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, Page]]:
        """Pages for ``consumer`` from the stream (see :meth:`StreamQueue.claim`)."""
        return await self.queue.claim(consumer, count, block_ms)

    async def ack(self, entry_id: str) -> None:
        """The page of ``entry_id`` is delivered or dead-lettered."""
        await self.queue.ack(entry_id)

    async def dead_letter(self, page: Page, error: str) -> None:
        """Keep a page no pager took: ``<stream>:dead``, or the spool's dead file."""
        try:
            await self.queue.dead_letter(page, error)
            return
        except STORE_ERRORS as e:
            log.warning("outbox: dead-lettering %s to the spool: %s", page.dedup_key, e)
        try:
            await asyncio.to_thread(self.spool.append_dead, page, error)
        except OSError as e:
            raise OutboxError(f"cannot dead-letter {page.dedup_key}: {e}") from e
