"""The kill switch: pause or resume all automation, shared by every replica through Redis.

``hotpath automation pause|resume`` writes the state; every processor reads it once per
batch (one GET), so a pause is honoured within one batch, and audits each change it observes
— who paused, when, why — in its own hash-chained log. While paused, findings a rule would
have acted on are paged with the reason "automation paused".

A processor that cannot read the state keeps the last state it saw: a Redis outage already
stops automation (budgets fail closed), so a pause is never lost by it, and a resume is not
invented.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError


@dataclass(frozen=True, slots=True)
class PauseState:
    """The switch as last set: ``version`` grows with every change, so a change is visible."""

    paused: bool
    actor: str
    at: float
    reason: str
    version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNNING = PauseState(paused=False, actor="", at=0.0, reason="never paused", version=0)


class KillSwitch:
    def __init__(self, redis: aioredis.Redis, prefix: str = "hotpath",
                 timeout_s: float = 0.25) -> None:
        self._redis = redis
        self._key = f"{prefix}:automation:pause"
        self._timeout = timeout_s

    async def set(self, *, paused: bool, actor: str, reason: str, now: float) -> PauseState:
        """Record a pause or resume; raises the Redis error (the CLI reports it)."""
        # WATCH/MULTI so two operators flipping the switch at once get distinct versions.
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._key)
                    raw = await pipe.get(self._key)
                    version = _parse(raw).version + 1 if raw else 1
                    state = PauseState(paused, actor, now, reason, version)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._key, orjson.dumps(state.to_dict()))
                    await pipe.execute()
                    return state
                except aioredis.WatchError:
                    continue

    async def read(self) -> PauseState | None:
        """The current state; ``RUNNING`` if never set; None when Redis cannot answer."""
        return await self.read_soon().result()

    def read_soon(self) -> PendingRead:
        """Send the GET now and wait for the answer later (:meth:`PendingRead.result`), so
        the round trip overlaps other work; the timeout runs from when the answer is awaited,
        not from now, so long work in between cannot make a prompt answer look lost."""
        return PendingRead(asyncio.ensure_future(self._redis.get(self._key)), self._timeout)


class PendingRead:
    """A kill-switch GET in flight."""

    def __init__(self, request: asyncio.Future[Any], timeout_s: float) -> None:
        self._request = request
        self._timeout = timeout_s

    async def result(self) -> PauseState | None:
        """The state, as :meth:`KillSwitch.read`; the timeout counts from this call."""
        try:
            async with asyncio.timeout(self._timeout):
                raw = await asyncio.shield(self._request)
        except (RedisError, OSError, TimeoutError):
            self.cancel()
            return None
        return _parse(raw) if raw else RUNNING

    def cancel(self) -> None:
        """Abandon the read (its answer, if any, is dropped)."""
        if not self._request.done():
            self._request.cancel()
        elif not self._request.cancelled():
            self._request.exception()  # retrieved: asyncio does not report it as lost


def _parse(raw: bytes | str) -> PauseState:
    d = orjson.loads(raw)
    return PauseState(bool(d["paused"]), str(d["actor"]), float(d["at"]), str(d["reason"]),
                      int(d["version"]))
