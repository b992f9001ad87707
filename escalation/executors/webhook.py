"""A generic JSON webhook executor: POST the action request, keyed by its idempotency key,
and — given a secret — signed so the receiver can tell it came from us (see ``signing``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from escalation.executors.base import ActionRequest, ActionResult
from escalation.executors.signing import signed_headers
from escalation.http_delivery import JsonEndpoint


class WebhookExecutor:
    """POSTs :meth:`ActionRequest.to_dict` (``action``, ``target``, ``service``,
    ``finding_id``, ``idempotency_key``, ``rule``, ``params``, ``context``) with header
    ``Idempotency-Key: <idempotency_key>``; a 2xx is an ``ok`` result, anything else raises
    (see :class:`~escalation.executors.base.Executor`).

    With ``secret`` it also sends ``X-Hotpath-Signature: t=<ts>,v1=<hmac>`` and
    ``X-Hotpath-Timestamp: <ts>``, ``ts`` read from ``wall_clock`` (Unix seconds: the
    receiver compares it with its own clock); latency is measured on ``clock`` (monotonic).

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return WebhookExecutor(s, "http://127.0.0.1:9/act").name
    >>> asyncio.run(name())
    'webhook'
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout_s: float = 5.0,  # a remediation hook should only enqueue the work and answer
        clock: Callable[[], float] = time.monotonic,
        name: str = "webhook",
        *,
        secret: bytes | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("webhook executor: an empty secret signs nothing; pass None")
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._clock = clock
        self._name = name
        self._secret = secret
        self._wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self._name

    async def execute(self, req: ActionRequest) -> ActionResult:
        t0 = self._clock()
        body = req.to_json()
        # Signed afresh on every try: the timestamp is part of what a receiver checks.
        headers = signed_headers(self._secret, int(self._wall_clock()), body)
        status, detail = await self._endpoint.post(body, req.idempotency_key, headers)
        return ActionResult(True, status, detail, self._clock() - t0)
