"""An executor that records what it was asked and fails on script — for tests and dry runs.

>>> import asyncio
>>> from escalation.errors import PermanentDeliveryError
>>> ex = FakeExecutor(failures=[PermanentDeliveryError("HTTP 400", status=400)])
>>> req = ActionRequest("restart_pods", "checkout", "checkout", "f1", "restart:f1", "restart")
>>> async def twice() -> ActionResult:
...     try:
...         await ex.execute(req)
...     except PermanentDeliveryError as e:
...         print("first:", e)
...     return await ex.execute(req)
>>> asyncio.run(twice())
first: HTTP 400
ActionResult(ok=True, status=200, detail='fake: done', latency_s=0.0)
>>> len(ex.attempts), len(ex.executed)
(2, 1)
"""

from __future__ import annotations

from collections.abc import Iterable

from escalation.executors.base import ActionRequest, ActionResult


class FakeExecutor:
    """Raises the scripted ``failures`` in order, then accepts every request.

    ``attempts`` lists every request it was given; ``executed`` only the accepted ones.
    """

    def __init__(self, name: str = "fake", failures: Iterable[BaseException] = ()) -> None:
        self._name = name
        self.failures: list[BaseException] = list(failures)
        self.attempts: list[ActionRequest] = []
        self.executed: list[ActionRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def execute(self, req: ActionRequest) -> ActionResult:
        self.attempts.append(req)
        if self.failures:
            raise self.failures.pop(0)
        self.executed.append(req)
        return ActionResult(True, 200, "fake: done", 0.0)
