"""The fallback receiver: when a pager refuses or keeps failing, tell a human another way.

A page that a pager rejects (400: retrying cannot help) is dead-lettered, and nobody would
know — so the sender also sends a *fallback alert* to a second receiver (often Slack or a
plain webhook), naming the receiver that failed and why. It does the same, without waiting
for the retries to run out, once a page has failed ``after_failures`` times at one pager or
that pager has not delivered anything for ``after_s`` seconds. Each (page, failing pager)
alerts the fallback at most once: the alert has its own deterministic dedup key, so the
delivered-set and the receiver fold repeats.

:func:`fallback_reason` is the pure rule; :class:`PagerHealth` remembers, per process, since
when each pager has been failing; :func:`fallback_page` builds the alert.

>>> from escalation.errors import PermanentDeliveryError
>>> fallback_reason(PermanentDeliveryError("HTTP 400"), attempt=1, final=True,
...                 failing_since=None, now=0.0, policy=FallbackPolicy())
<FallbackReason.PERMANENT: 'rejected'>
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from escalation.errors import DeliveryError
from escalation.page import Page


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """When a retryable failure is bad enough to tell the fallback before retries end.

    >>> FallbackPolicy(after_failures=0)
    Traceback (most recent call last):
    ...
    ValueError: after_failures must be >= 1, got 0
    """

    # 4 failed attempts of one page: with the default backoff that is ~1.4 s of waiting plus
    # four timeouts at worst — past a blip, into "this receiver has a problem".
    after_failures: int = 4
    # A pager that delivered nothing for a minute is down for paging purposes; a page
    # should not sit out the rest of its retries before someone hears of it.
    after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.after_failures < 1:
            raise ValueError(f"after_failures must be >= 1, got {self.after_failures}")
        if not (math.isfinite(self.after_s) and self.after_s >= 0):
            raise ValueError(f"after_s must be >= 0, got {self.after_s}")


class FallbackReason(StrEnum):
    PERMANENT = "rejected"
    RETRIES_SPENT = "retries spent"
    FAILURES = "repeated failures"
    FAILING_FOR = "receiver failing"


def fallback_reason(
    error: DeliveryError,
    attempt: int,
    final: bool,
    failing_since: float | None,
    now: float,
    policy: FallbackPolicy,
) -> FallbackReason | None:
    """Should the failed ``attempt`` (1-based) of a page at one pager alert the fallback?

    ``final``: no attempt follows (permanent error or retries spent); ``failing_since``:
    when the pager's current run of failures began (None: it is not failing).

    >>> from escalation.errors import RetryableDeliveryError
    >>> e503 = RetryableDeliveryError("HTTP 503", status=503)
    >>> p = FallbackPolicy(after_failures=3, after_s=30.0)
    >>> [fallback_reason(e503, n, False, 0.0, 1.0, p) for n in (1, 3)]
    [None, <FallbackReason.FAILURES: 'repeated failures'>]
    >>> fallback_reason(e503, 1, False, failing_since=0.0, now=30.0, policy=p)
    <FallbackReason.FAILING_FOR: 'receiver failing'>
    >>> fallback_reason(e503, 2, True, None, 0.0, p)
    <FallbackReason.RETRIES_SPENT: 'retries spent'>
    """
    if not error.retryable:
        return FallbackReason.PERMANENT
    if final:
        return FallbackReason.RETRIES_SPENT
    if attempt >= policy.after_failures:
        return FallbackReason.FAILURES
    if failing_since is not None and now - failing_since >= policy.after_s:
        return FallbackReason.FAILING_FOR
    return None


class PagerHealth:
    """Since when each pager has been failing; a success ends the run (per process).

    >>> h = PagerHealth()
    >>> h.failed("pd", 5.0); h.failed("pd", 9.0); h.since("pd")
    5.0
    >>> h.succeeded("pd"); h.since("pd") is None
    True
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def failed(self, pager: str, now: float) -> None:
        self._since.setdefault(pager, now)

    def succeeded(self, pager: str) -> None:
        self._since.pop(pager, None)

    def since(self, pager: str) -> float | None:
        return self._since.get(pager)


def fallback_key(page: Page, primary: str) -> str:
    """The alert's dedup key: one per (page, failing pager).

    >>> from escalation.page import _example
    >>> fallback_key(_example(), "pagerduty")
    'hotpath-f1-fallback-pagerduty'
    """
    return f"{page.dedup_key}-fallback-{primary}"


def fallback_page(page: Page, primary: str, error: DeliveryError, reason: FallbackReason,
                  attempts: int, dead_lettered: bool, now: float) -> Page:
    """The alert for the fallback receiver: the page itself, saying who failed and why.

    >>> from escalation.errors import PermanentDeliveryError
    >>> from escalation.page import _example
    >>> fb = fallback_page(_example(), "pagerduty",
    ...     PermanentDeliveryError("HTTP 400: bad key", status=400),
    ...     FallbackReason.PERMANENT, attempts=1, dead_lettered=True, now=9.0)
    >>> fb.summary
    'Not delivered to pagerduty (rejected: HTTP 400: bad key) — s'
    >>> fb.context["delivery_failure"]["status"], fb.dedup_key
    (400, 'hotpath-f1-fallback-pagerduty')
    """
    failure = {
        "receiver": primary, "reason": reason.value, "error": str(error),
        "status": error.status, "attempts": attempts, "dead_lettered": dead_lettered,
        "page_dedup_key": page.dedup_key,
    }
    verb = "Not delivered to" if dead_lettered else "Delivery failing to"
    return replace(
        page,
        dedup_key=fallback_key(page, primary),
        summary=f"{verb} {primary} ({reason.value}: {error}) — {page.summary}",
        reasons=(*page.reasons, f"delivery to {primary} failed: {reason.value}"),
        created=now,
        # The fallback opens its own alert even when the failed page was a resolve: the
        # human must hear that the primary receiver is not taking pages.
        event="trigger",
        incident_key="",
        context={**page.context, "delivery_failure": failure},
    )
