"""A generic JSON webhook executor: POST the action request, keyed by its idempotency key."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from escalation.executors.base import ActionRequest, ActionResult
from escalation.http_delivery import JsonEndpoint


class WebhookExecutor:
    """POSTs ``{"action","target","service","finding_id","idempotency_key","rule","params"}``
    with header ``Idempotency-Key: <idempotency_key>``; a 2xx is an ``ok`` result, anything
    else raises (see :class:`~escalation.executors.base.Executor`).

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
    ) -> None:
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._clock = clock
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def execute(self, req: ActionRequest) -> ActionResult:
        t0 = self._clock()
        status, detail = await self._endpoint.post(req.to_json(), req.idempotency_key)
        return ActionResult(True, status, detail, self._clock() - t0)
