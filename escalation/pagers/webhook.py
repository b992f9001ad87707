"""A generic JSON webhook pager: POST the page, keyed by its dedup key."""

from __future__ import annotations

import aiohttp

from escalation.http_delivery import post_json
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
        self._session = session
        self._url = url
        self._timeout_s = timeout_s
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        await post_json(
            self._session,
            self._url,
            page.to_json(),
            idempotency_key=page.dedup_key,
            timeout_s=self._timeout_s,
        )
