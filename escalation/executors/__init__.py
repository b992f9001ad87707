"""Remediation executors: each carries out one :class:`ActionRequest` at one receiver.

An executor raises :class:`~escalation.errors.RetryableDeliveryError` or
:class:`~escalation.errors.PermanentDeliveryError`; the action runner retries and turns the
final failure into a failed :class:`ActionResult`.
"""

from escalation.executors.base import ActionRequest, ActionResult, Executor
from escalation.executors.fake import FakeExecutor
from escalation.executors.webhook import WebhookExecutor

__all__ = ["ActionRequest", "ActionResult", "Executor", "FakeExecutor", "WebhookExecutor"]
