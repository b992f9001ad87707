"""A generic JSON webhook pager: POST the page, keyed by its dedup key."""

from __future__ import annotations

import aiohttp

from escalation.http_delivery import JsonEndpoint
from escalation.page import Page


class WebhookPager:
    """POSTs :meth:`Page.to_dict` as JSON with ``Idempotency-Key: <dedup_key>``.

    The body holds every page field (``dedup_key``, ``summary``, ``severity``, ``service``,
    ``metric``, ``labels``, ``value``, ``baseline``, ``deviation``, ``confidence``,
    ``detectors``, ``reasons``, ``recent``, ``finding_id``, ``ts``, ``created``, ``action``).

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return WebhookPager(s, "http://127.0.0.1:9/hook").name
    >>> asyncio.run(name())
    'webhook'
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout_s: float = 5.0,  # pager APIs answer in < 1 s; 5 s rides out a slow moment
        name: str = "webhook",
    ) -> None:
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        await self._endpoint.post(page.to_json(), page.dedup_key)
