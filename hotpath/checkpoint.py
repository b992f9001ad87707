"""Detector checkpoints in Redis: a partition's state saved with the offset it covers.

Order of durability per commit: decisions durable (audit flushed, pages in the outbox)
→ checkpoint saved (state + next offset) → Kafka offsets committed. On assignment the
checkpoint wins over the committed offset when it is ahead, since everything before it
was already decided and the state already includes it; when it is behind (a checkpoint
that failed to save), the consumer seeks back to it and replays, which is safe because
every output carries a deterministic id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    state: bytes


class CheckpointStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, group: str,
                 timeout_s: float = 1.0) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ckpt:{group}"
        self._timeout = timeout_s

    def _key(self, topic: str, partition: int) -> str:
        return f"{self._prefix}:{topic}:{partition}"

    async def save_many(self, items: dict[tuple[str, int], Checkpoint]) -> bool:
        """Save every checkpoint in one round trip; False (never raises) when Redis fails."""
        if not items:
            return True
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=True)
                for (topic, part), ck in items.items():
                    pipe.hset(self._key(topic, part),
                              mapping={"offset": str(ck.offset), "state": ck.state})
                await pipe.execute()
            return True
        except (RedisError, OSError, TimeoutError):
            return False

    async def load(self, topic: str, partition: int) -> Checkpoint | None:
        """The saved checkpoint, or None when there is none or Redis cannot answer."""
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.hgetall(self._key(topic, partition))
        except (RedisError, OSError, TimeoutError):
            return None
        offset, state = raw.get(b"offset"), raw.get(b"state")
        if not isinstance(offset, bytes) or not isinstance(state, bytes):
            return None
        return Checkpoint(int(offset), state)
