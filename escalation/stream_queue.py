"""A durable work queue on one Redis stream and one consumer group, generic over its items.

Both the page outbox and the action queue are this class with a different codec. Items are
written with XADD (one pipeline per batch) and read with XREADGROUP; an entry stays in the
group's pending list until :meth:`StreamQueue.ack`, which also XDELs it, so the stream holds
only undelivered work. Delivery is at-least-once:

* on its first claim a consumer re-reads its own pending entries (a restart under the same
  name after SIGKILL picks up where it died);
* every claim also XAUTOCLAIMs entries idle longer than ``min_idle_ms`` from any consumer
  (a replica that died for good, or an entry whose ack was lost);
* an entry that cannot be decoded is moved to ``<stream>:dead`` with the error and acked,
  so one bad entry cannot wedge the queue.

Every call is bounded by ``timeout_s``: Redis being slow counts as Redis being down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

T = TypeVar("T")

# What "the store is unavailable" looks like from redis-py: its own errors, our timeout,
# and socket errors that slip through during reconnects.
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, TimeoutError, OSError)

# Dead letters are for humans to inspect; a misconfigured receiver could dead-letter every
# item, so keep the newest ~10k rather than grow without bound.
_DEAD_MAXLEN = 10_000

_FIELD = "d"


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _field(fields: Mapping[Any, Any] | None) -> bytes | None:
    if not fields:
        return None
    raw = fields.get(_FIELD.encode(), fields.get(_FIELD))
    if raw is None:
        return None
    return raw.encode() if isinstance(raw, str) else bytes(raw)


class StreamQueue(Generic[T]):
    """One stream + one consumer group + a codec.

    >>> q = StreamQueue(aioredis.Redis(), "s", "g", encode=str.encode, decode=bytes.decode)
    >>> q.dead_stream
    's:dead'
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        *,
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        timeout_s: float = 0.25,
        # Longer than the sender's worst retry sequence for one item (backoff capped at 30 s),
        # so a live consumer's in-flight entry is not stolen by another replica.
        min_idle_ms: int = 60_000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.dead_stream = f"{stream}:dead"
        self._encode = encode
        self._decode = decode
        self.timeout_s = timeout_s
        self._min_idle_ms = min_idle_ms
        self._group_ready = False
        self._backlog: dict[str, str] = {}  # consumer -> cursor in its own pending list
        self._backlog_done: set[str] = set()
        self._autoclaim_cursor = "0-0"

    async def put_many(self, items: Sequence[T]) -> list[str]:
        """XADD every item in one pipeline; durable in Redis when it returns."""
        if not items:
            return []
        async with asyncio.timeout(self.timeout_s):
            pipe = self.redis.pipeline(transaction=False)
            for item in items:
                pipe.xadd(self.stream, {_FIELD: self._encode(item)})
            ids = await pipe.execute()
        return [_s(i) for i in ids]

    def rewind(self, consumer: str) -> None:
        """Re-read ``consumer``'s own pending entries on its next claim (after a store error)."""
        self._backlog_done.discard(consumer)
        self._backlog.pop(consumer, None)

    async def claim(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, T]]:
        """Up to ``count`` entries for ``consumer``: own backlog, then idle ones, then new."""
        try:
            return await self._claim(consumer, count, block_ms)
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            # Redis restarted empty (or the stream was deleted): recreate and read again.
            self._group_ready = False
            self.rewind(consumer)
            return await self._claim(consumer, count, block_ms)

    async def _claim(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, T]]:
        await self._ensure_group()
        if consumer not in self._backlog_done:
            cursor = self._backlog.get(consumer, "0")
            async with asyncio.timeout(self.timeout_s):
                reply = await self.redis.xreadgroup(
                    self.group, consumer, {self.stream: cursor}, count=count
                )
            raw = _entries(reply)
            if raw:
                self._backlog[consumer] = _s(raw[-1][0])
                return await self._decoded(raw)
            self._backlog_done.add(consumer)
        async with asyncio.timeout(self.timeout_s):
            auto: Any = await self.redis.xautoclaim(
                self.stream, self.group, consumer, self._min_idle_ms,
                start_id=self._autoclaim_cursor, count=count,
            )
        # [next cursor, entries, deleted ids]; the cursor wraps to 0-0 after a full scan.
        self._autoclaim_cursor = _s(auto[0])
        raw = list(auto[1])
        if raw:
            return await self._decoded(raw)
        async with asyncio.timeout(block_ms / 1000 + self.timeout_s):
            reply = await self.redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        return await self._decoded(_entries(reply))

    async def ack(self, entry_id: str) -> None:
        """Done with an entry: XACK and XDEL it atomically."""
        async with asyncio.timeout(self.timeout_s):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def dead_letter(self, item: T, error: str, **extra: str) -> None:
        """Keep an item that could not be handled, with why, in ``<stream>:dead``."""
        await self._dead(self._encode(item), error, extra)

    async def dead_letters(self) -> list[tuple[T, dict[str, str]]]:
        """Every dead letter (item, other fields), oldest first — for operators and tests."""
        async with asyncio.timeout(self.timeout_s):
            rows: Any = await self.redis.xrange(self.dead_stream)
        out: list[tuple[T, dict[str, str]]] = []
        for _, fields in rows:
            data = _field(fields)
            if data is None:
                continue
            meta = {_s(k): _s(v) for k, v in fields.items() if _s(k) != _FIELD}
            out.append((self._decode(data), meta))
        return out

    async def _dead(self, data: bytes, error: str, extra: Mapping[str, str]) -> None:
        fields: dict[str, bytes | str] = {_FIELD: data, "error": error, **extra}
        async with asyncio.timeout(self.timeout_s):
            await self.redis.xadd(
                self.dead_stream,
                fields,  # type: ignore[arg-type]  # redis-py's field type is invariant
                maxlen=_DEAD_MAXLEN,
                approximate=True,
            )

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def _decoded(self, raw: Iterable[Any]) -> list[tuple[str, T]]:
        out: list[tuple[str, T]] = []
        for entry_id, fields in raw:
            eid = _s(entry_id)
            data = _field(fields)
            if data is None:
                # The entry was deleted while pending (acked elsewhere): nothing to do.
                await self.ack(eid)
                continue
            try:
                out.append((eid, self._decode(data)))
            except ValueError as e:
                log.error("stream %s: entry %s cannot be decoded: %s", self.stream, eid, e)
                await self._dead(data, f"undecodable: {e}", {"entry_id": eid})
                await self.ack(eid)
        return out


def _entries(reply: Any) -> list[Any]:
    """The entries of an XREADGROUP reply.

    RESP2: ``[[stream, [entry, ...]], ...]``; RESP3: ``{stream: [[entry, ...]]}``.

    >>> _entries([[b"s", [(b"1-0", {b"d": b"x"})]]]) == _entries({b"s": [[(b"1-0", {b"d": b"x"})]]})
    True
    >>> _entries({b"s": [[]]}), _entries(None)
    ([], [])
    """
    if not reply:
        return []
    out: list[Any] = []
    if isinstance(reply, dict):
        for chunks in reply.values():
            for chunk in chunks:
                out.extend(chunk)
    else:
        for _stream, entries in reply:
            out.extend(entries)
    return out
