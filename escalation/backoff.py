"""How long to wait before the next attempt: exponential, capped, jittered, Retry-After aware.

Pure: the jitter source is injected, so the same inputs give the same delay.

>>> b = Backoff(jitter=lambda: 1.0)
>>> [b.delay(n, None) for n in (1, 2, 3)]
[0.2, 0.4, 0.8]
>>> b.delay(20, None)
30.0
>>> b.delay(1, retry_after=1.0)
1.0
>>> b.delay(1, retry_after=3600.0)   # a receiver asking for an hour is retried in 2 min
120.0
>>> Backoff(jitter=lambda: 0.0).delay(2, None)
0.2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay after the ``attempt``-th failed attempt (1-based).

    ``jitter()`` returns a fraction in [0, 1]; the delay is the exponential value scaled into
    [50 %, 100 %] of itself ("equal jitter"): senders that failed together spread out, yet the
    delay never shrinks below half, so the backoff still grows with every failure.
    """

    base_s: float = 0.2    # first retry soon: most 5xx from a pager API are one-off blips
    factor: float = 2.0
    max_s: float = 30.0    # a page must not wait minutes behind one flaky receiver
    jitter: Callable[[], float] = lambda: 1.0
    # Retry-After is honoured in full up to this: twice PagerDuty's one-minute rate window,
    # so a rate-limit 429 is always waited out. A longer ask (maintenance, misconfiguration)
    # would stall the sender's batch; we try again after the cap and, if still refused,
    # wait again — the fallback receiver meanwhile tells a human the pager is failing.
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait; a receiver's Retry-After (up to ``max_retry_after_s``) is a
        floor, never shortened by jitter.

        >>> Backoff(jitter=lambda: 1.0).delay(0, None)
        Traceback (most recent call last):
        ...
        ValueError: attempt must be >= 1, got 0
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        j = self.jitter()
        if not 0.0 <= j <= 1.0:
            raise ValueError(f"jitter must return a fraction in [0, 1], got {j}")
        # Cap the exponent's result before jitter so a long outage cannot overflow.
        raw = min(self.max_s, self.base_s * self.factor ** min(attempt - 1, 64))
        computed = raw * (0.5 + 0.5 * j)
        if retry_after is not None:
            return max(min(retry_after, self.max_retry_after_s), computed)
        return computed
