"""One executor in front of many: each action goes to the executor its catalogue entry names,
under that action's timeout.

The action runner holds one :class:`Router`; ``ActionSpec.executor`` (``webhook``,
``command`` or ``plugin:NAME``) picks the executor and ``ActionSpec.timeout_s`` bounds the
call, whatever the executor does itself — so every action has a timeout, plugins included.
:meth:`Router.attempts_for` gives the runner each action's number of tries: retries only for
actions declared idempotent.

>>> import asyncio
>>> from escalation.catalogue import ActionSpec
>>> from escalation.executors.fake import FakeExecutor
>>> router = Router({"webhook": FakeExecutor("webhook")},
...                 {"restart": ActionSpec("restart"),
...                  "drain": ActionSpec("drain", idempotent=False, max_attempts=5)})
>>> req = ActionRequest("restart", "checkout-eu", "checkout", "f1", "k1", "rule")
>>> asyncio.run(router.execute(req)).detail
'fake: done'
>>> router.attempts_for(req), router.attempts_for(ActionRequest("drain", "", "", "", "", ""))
(3, 1)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from escalation.catalogue import ActionSpec
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult, Executor


class Router:
    """Sends each request to ``executors[actions[req.action].executor]`` — see the module."""

    def __init__(
        self,
        executors: Mapping[str, Executor],
        actions: Mapping[str, ActionSpec],
        name: str = "router",
    ) -> None:
        self._executors = dict(executors)
        self._actions = dict(actions)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def route(self, req: ActionRequest) -> tuple[ActionSpec, Executor]:
        """The spec and executor for ``req``, or :class:`PermanentDeliveryError` saying why not."""
        spec = self._actions.get(req.action)
        if spec is None:
            raise PermanentDeliveryError(f"router: unknown action {req.action!r}")
        executor = self._executors.get(spec.executor)
        if executor is None:
            configured = ", ".join(sorted(self._executors)) or "none"
            raise PermanentDeliveryError(
                f"router: action {req.action!r} needs executor {spec.executor!r}, "
                f"which is not configured (configured: {configured})")
        return spec, executor

    async def execute(self, req: ActionRequest) -> ActionResult:
        spec, executor = self.route(req)
        try:
            async with asyncio.timeout(spec.timeout_s) as deadline:
                return await executor.execute(req)
        except TimeoutError:
            if not deadline.expired():
                raise  # the executor's own TimeoutError escaped: its bug, not our deadline
            raise RetryableDeliveryError(
                f"action {req.action} timed out after {spec.timeout_s:g}s") from None

    def attempts_for(self, req: ActionRequest) -> int:
        """How many times the runner may try ``req``: 1 unless the action is idempotent.

        An unknown action gets 1: it fails permanently on the first try anyway.
        """
        spec = self._actions.get(req.action)
        return 1 if spec is None else spec.attempts
