"""The one retry stage: call, classify the failure, wait, call again — and report each try.

Adapters (pagers, executors) only say whether a failure is retryable by raising
:class:`RetryableDeliveryError` or :class:`PermanentDeliveryError`; this stage owns the
backoff and the per-attempt callback that the runtime turns into metrics (Alertmanager's
``notify/retry_stage.go``). Nobody else retries.

>>> import asyncio
>>> from escalation.backoff import Backoff
>>> calls = []
>>> async def flaky() -> str:
...     calls.append(1)
...     if len(calls) < 2:
...         raise RetryableDeliveryError("HTTP 503", status=503)
...     return "ok"
>>> async def no_sleep(s: float) -> None:
...     pass
>>> seen = []
>>> r = asyncio.run(with_retries(flaky, backoff=Backoff(), sleep=no_sleep, clock=lambda: 0.0,
...     max_attempts=3, on_attempt=lambda outcome, lat: seen.append(outcome)))
>>> r.value, r.attempts, seen
('ok', 2, ['retry', 'sent'])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from escalation.backoff import Backoff
from escalation.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

T = TypeVar("T")

# "collapsed" is never an attempt's outcome: the sender reports it for a page folded into
# a storm page (escalation.storm), so the metric shows pages that went out in a list.
Outcome = Literal["sent", "failed", "retry", "collapsed"]
OnAttempt = Callable[[Outcome, float], None]
# Told of every failed attempt (its error, its 1-based number) before the stage waits or
# gives up: how the sender notices a failing receiver and alerts the fallback early.
OnFailure = Callable[[DeliveryError, int], None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryResult(Generic[T]):
    """The value of the successful attempt, or the error that ended the tries."""

    value: T | None
    error: DeliveryError | None
    attempts: int
    latency_s: float  # first attempt's start to the last attempt's end, waits included

    @property
    def ok(self) -> bool:
        return self.error is None


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    sleep: Sleep,
    clock: Callable[[], float],
    max_attempts: int,
    on_attempt: OnAttempt,
    before_attempt: Callable[[], Awaitable[object]] | None = None,
    on_failure: OnFailure | None = None,
) -> RetryResult[T]:
    """Run ``call`` until it succeeds, fails permanently, or ``max_attempts`` are spent.

    After a retryable failure the wait is :meth:`Backoff.delay`, which takes the error's
    ``retry_after`` as its floor. ``before_attempt`` (a rate limiter's wait for a slot) runs
    before every attempt and outside its measured latency; ``on_failure`` sees each error.

    An exception that is not a :class:`DeliveryError` is an adapter bug; it is treated as
    permanent (with its type in the message) so one broken adapter cannot kill the sender.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    start = clock()
    for attempt in range(1, max_attempts + 1):
        if before_attempt is not None:
            await before_attempt()
        t0 = clock()
        try:
            value = await call()
        except RetryableDeliveryError as e:
            if attempt == max_attempts:
                on_attempt("failed", clock() - t0)
                _tell(on_failure, e, attempt)
                return RetryResult(None, e, attempt, clock() - start)
            on_attempt("retry", clock() - t0)
            _tell(on_failure, e, attempt)
            await sleep(backoff.delay(attempt, e.retry_after))
            continue
        except DeliveryError as e:
            on_attempt("failed", clock() - t0)
            _tell(on_failure, e, attempt)
            return RetryResult(None, e, attempt, clock() - start)
        except Exception as e:  # an adapter bug: record it, do not retry it
            on_attempt("failed", clock() - t0)
            error = PermanentDeliveryError(f"{type(e).__name__}: {e}")
            _tell(on_failure, error, attempt)
            return RetryResult(None, error, attempt, clock() - start)
        on_attempt("sent", clock() - t0)
        return RetryResult(value, None, attempt, clock() - start)
    raise AssertionError("unreachable: the loop returns on its last attempt")


def _tell(on_failure: OnFailure | None, error: DeliveryError, attempt: int) -> None:
    if on_failure is not None:
        on_failure(error, attempt)
