"""A pager that records what it was given and fails on script — for tests and dry runs.

>>> import asyncio
>>> from escalation.errors import RetryableDeliveryError
>>> from escalation.page import _example
>>> pager = FakePager(failures=[RetryableDeliveryError("HTTP 503", status=503)])
>>> async def twice() -> None:
...     try:
...         await pager.send(_example())
...     except RetryableDeliveryError as e:
...         print("first:", e)
...     await pager.send(_example())
>>> asyncio.run(twice())
first: HTTP 503
>>> len(pager.attempts), [p.dedup_key for p in pager.sent]
(2, ['hotpath-f1'])
"""

from __future__ import annotations

from collections.abc import Iterable

from escalation.page import Page


class FakePager:
    """Raises the scripted ``failures`` in order, then accepts every page.

    ``attempts`` lists every page it was asked to send; ``sent`` only the accepted ones.
    """

    def __init__(self, name: str = "fake", failures: Iterable[BaseException] = ()) -> None:
        self._name = name
        self.failures: list[BaseException] = list(failures)
        self.attempts: list[Page] = []
        self.sent: list[Page] = []

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        self.attempts.append(page)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(page)
