"""Where a request stands now, for the API's ``GET /v1/actions/{id}`` and the follow-up.

One Redis hash per request: the request itself (written once) and its latest status, plus a
short history of status changes. The audit log is the record of truth; this store is the
fast lookup, so its errors are logged and swallowed on write (the audit already holds the
fact) and raised as :class:`RequestStoreError` on read (the caller answers 503).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from escalation.errors import RequestStoreError
from escalation.request import Request

log = logging.getLogger(__name__)

_FAILURES = (RedisError, OSError, TimeoutError)
# Long enough for any review of last week's incidents; the audit log keeps the rest.
DEFAULT_TTL_S = 7 * 86400
# A request passes through at most a handful of states; 20 keeps a pathological loop bounded.
_HISTORY_MAX = 20


class RequestStore:
    def __init__(self, redis: aioredis.Redis, *, timeout_s: float = 0.25,
                 prefix: str = "hotpath", ttl_s: int = DEFAULT_TTL_S) -> None:
        self._redis = redis
        self._timeout = timeout_s
        self._prefix = prefix
        self._ttl = ttl_s

    def _key(self, request_id: str) -> str:
        return f"{self._prefix}:req:{request_id}"

    async def record_many(self, entries: Sequence[tuple[Request, str, str, float]], *,
                          keep_status: bool = False) -> None:
        """(request, status, detail, at) for each; one pipeline; never raises.

        ``keep_status``: only add to the history, and set the status only for a request
        never seen before — a refused resend must not hide what the original became."""
        if not entries:
            return
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for req, status, detail, at in entries:
                        key = self._key(req.request_id)
                        event = orjson.dumps({"status": status, "detail": detail, "at": at})
                        pipe.hsetnx(key, "request", req.to_json())
                        if keep_status:
                            pipe.hsetnx(key, "status", status)
                            pipe.hsetnx(key, "detail", detail)
                            pipe.hsetnx(key, "at", repr(at))
                        else:
                            pipe.hset(key, mapping={"status": status, "detail": detail,
                                                    "at": repr(at)})
                        pipe.rpush(key + ":history", event)
                        pipe.ltrim(key + ":history", -_HISTORY_MAX, -1)
                        pipe.expire(key, self._ttl)
                        pipe.expire(key + ":history", self._ttl)
                    await pipe.execute()
        except _FAILURES as e:
            log.warning("request store: could not record %d status(es): %s: %s",
                        len(entries), type(e).__name__, e)

    async def record(self, req: Request, status: str, detail: str, at: float) -> None:
        await self.record_many([(req, status, detail, at)])

    async def get(self, request_id: str) -> dict[str, Any] | None:
        """``{"request", "status", "detail", "at", "history"}`` or None if unknown."""
        key = self._key(request_id)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(key)
                    pipe.lrange(key + ":history", 0, -1)
                    fields, history = await pipe.execute()
        except _FAILURES as e:
            raise RequestStoreError(
                f"request store unavailable: {type(e).__name__}: {e}") from e
        if not fields:
            return None
        f = {k.decode(): v.decode() for k, v in fields.items()}
        return {
            "request": orjson.loads(f["request"]) if "request" in f else None,
            "status": f.get("status"), "detail": f.get("detail", ""),
            "at": float(f["at"]) if "at" in f else None,
            "history": [orjson.loads(h) for h in history],
        }

    async def request(self, request_id: str) -> Request | None:
        got = await self.get(request_id)
        if got is None or got["request"] is None:
            return None
        return Request.from_dict(got["request"])
