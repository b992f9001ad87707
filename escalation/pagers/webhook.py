"""A generic JSON webhook pager: POST the page, keyed by its dedup key, optionally signed."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from escalation.executors.signing import signed_headers
from escalation.http_delivery import JsonEndpoint
from escalation.page import Page


class WebhookPager:
    """POSTs :meth:`Page.to_dict` as JSON with ``Idempotency-Key: <dedup_key>``.

    The body holds every page field (``dedup_key``, ``summary``, ``severity``, ``service``,
    ``metric``, ``labels``, ``value``, ``baseline``, ``deviation``, ``confidence``,
    ``detectors``, ``reasons``, ``recent``, ``finding_id``, ``ts``, ``created``, ``action``,
    ``links``, ``event``, ``incident_key``, ``context``).

    With ``secret`` it also sends ``X-Hotpath-Signature: t=<ts>,v1=<hmac>`` (HMAC-SHA256 over
    ``b"<ts>." + body``, see :mod:`escalation.executors.signing`) and
    ``X-Hotpath-Timestamp: <ts>``, ``ts`` read from ``wall_clock`` (Unix seconds: the receiver
    compares it with its own clock and refuses a stale one). Each retry is signed afresh, so
    a page that waited in the outbox is not refused as stale.

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
        *,
        secret: bytes | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("webhook pager: an empty secret signs nothing; pass None")
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._name = name
        self._secret = secret
        self._wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        body = page.to_json()
        headers = signed_headers(self._secret, int(self._wall_clock()), body)
        await self._endpoint.post(body, page.dedup_key, headers)
