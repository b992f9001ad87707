"""The contract every pager implements."""

from __future__ import annotations

from typing import Protocol

from escalation.page import Page


class Pager(Protocol):
    """Sends one page to one receiver; says whether a failure is worth retrying.

    ``send`` returns when the receiver accepted the page and raises
    :class:`~escalation.errors.RetryableDeliveryError` (5xx, 429 with ``retry_after``,
    timeouts, connection errors) or :class:`~escalation.errors.PermanentDeliveryError`
    (other 4xx). It never retries: :mod:`escalation.retry` does. ``name`` labels metrics and
    the delivered-set, so it must be stable across restarts.
    """

    @property
    def name(self) -> str: ...

    async def send(self, page: Page) -> None: ...
