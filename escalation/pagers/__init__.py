"""Paging adapters: each sends one :class:`~escalation.page.Page` to one receiver.

An adapter raises :class:`~escalation.errors.RetryableDeliveryError` or
:class:`~escalation.errors.PermanentDeliveryError`; retrying is the sender's job.
"""

from escalation.pagers.base import Pager
from escalation.pagers.console import ConsolePager
from escalation.pagers.fake import FakePager
from escalation.pagers.webhook import WebhookPager

__all__ = ["ConsolePager", "FakePager", "Pager", "WebhookPager"]
