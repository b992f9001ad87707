"""The retry stage: retry what is retryable, stop on permanent, report every attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from escalation.backoff import Backoff
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.retry import Outcome, RetryResult, with_retries


class Script:
    """A call that raises the scripted errors in order, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def run(call: Callable[[], Awaitable[str]], max_attempts: int = 4) -> tuple[
        RetryResult[str], list[float], list[tuple[Outcome, float]]]:
    slept: list[float] = []
    seen: list[tuple[Outcome, float]] = []
    now = [0.0]

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    result = await with_retries(
        call, backoff=Backoff(jitter=lambda: 1.0), sleep=sleep, clock=lambda: now[0],
        max_attempts=max_attempts, on_attempt=lambda o, lat: seen.append((o, lat)),
    )
    return result, slept, seen


async def test_retries_then_succeeds_honouring_retry_after() -> None:
    call = Script(RetryableDeliveryError("HTTP 500", status=500),
                  RetryableDeliveryError("HTTP 429", status=429, retry_after=3.0))
    result, slept, seen = await run(call)
    assert result.value == "done" and result.attempts == 3
    assert result.latency_s == pytest.approx(3.2)
    assert slept == [0.2, 3.0]
    assert [o for o, _ in seen] == ["retry", "retry", "sent"]


async def test_permanent_error_is_not_retried() -> None:
    call = Script(PermanentDeliveryError("HTTP 400", status=400))
    result, slept, seen = await run(call)
    assert call.calls == 1 and slept == []
    assert str(result.error) == "HTTP 400"
    assert [o for o, _ in seen] == ["failed"]


async def test_gives_up_after_max_attempts() -> None:
    call = Script(*[RetryableDeliveryError("HTTP 503", status=503)] * 5)
    result, slept, seen = await run(call, max_attempts=3)
    assert call.calls == 3 and slept == [0.2, 0.4]
    assert result.attempts == 3 and not result.ok
    assert [o for o, _ in seen] == ["retry", "retry", "failed"]


async def test_an_adapter_bug_is_a_permanent_failure_naming_the_exception() -> None:
    call = Script(KeyError("severity"))
    result, _, seen = await run(call)
    assert type(result.error) is PermanentDeliveryError
    assert str(result.error) == "KeyError: 'severity'"
    assert [o for o, _ in seen] == ["failed"]


async def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^max_attempts must be >= 1, got 0$"):
        await run(Script(), max_attempts=0)


@pytest.mark.parametrize(
    ("jitter", "retry_after", "attempts_before", "expected"),
    [
        (1.0, 3.0, 0, 3.0),      # Retry-After longer than the backoff: waited in full
        (0.0, 3.0, 0, 3.0),      # jitter never shortens it
        (1.0, 1.0, 3, 1.6),      # the backoff (4th try: 0.2 * 2**3) is already longer
        (1.0, 3600.0, 0, 120.0),  # a receiver asking for an hour is asked again in 2 min
        (1.0, 0.0, 0, 0.2),      # "Retry-After: 0" is no reason to hammer it
    ],
)
async def test_the_wait_is_at_least_retry_after_capped(
    jitter: float, retry_after: float, attempts_before: int, expected: float,
) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    call = Script(*[RetryableDeliveryError("HTTP 503", status=503)] * attempts_before,
                  RetryableDeliveryError("HTTP 429", status=429, retry_after=retry_after))
    result = await with_retries(
        call, backoff=Backoff(jitter=lambda: jitter), sleep=sleep, clock=lambda: 0.0,
        max_attempts=8, on_attempt=lambda o, lat: None,
    )
    assert result.ok and slept[-1] == pytest.approx(expected)


async def test_before_attempt_runs_before_every_try_outside_its_latency() -> None:
    now = [0.0]
    order: list[str] = []

    async def gate() -> None:  # a rate limiter that makes every attempt wait 5 s
        order.append("gate")
        now[0] += 5.0

    async def call() -> str:
        order.append("call")
        now[0] += 0.5
        if order.count("call") == 1:
            raise RetryableDeliveryError("HTTP 500", status=500)
        return "done"

    async def sleep(s: float) -> None:
        now[0] += s

    seen: list[tuple[Outcome, float]] = []
    result = await with_retries(
        call, backoff=Backoff(jitter=lambda: 1.0), sleep=sleep, clock=lambda: now[0],
        max_attempts=3, on_attempt=lambda o, lat: seen.append((o, lat)), before_attempt=gate,
    )
    assert order == ["gate", "call", "gate", "call"]
    assert seen == [("retry", 0.5), ("sent", 0.5)]  # the gate's waits are not the receiver's
    assert result.latency_s == pytest.approx(11.2)   # but they are the page's


async def test_on_failure_sees_every_error_with_its_attempt_number() -> None:
    failures: list[tuple[str, int, bool]] = []
    call = Script(RetryableDeliveryError("HTTP 503", status=503), KeyError("severity"))
    result = await run_with_failures(call, failures)
    assert failures == [("HTTP 503", 1, True), ("KeyError: 'severity'", 2, False)]
    assert str(result.error) == "KeyError: 'severity'"

    failures.clear()
    spent = Script(*[RetryableDeliveryError("HTTP 500", status=500)] * 2)
    result = await run_with_failures(spent, failures, max_attempts=2)
    assert failures == [("HTTP 500", 1, True), ("HTTP 500", 2, True)]
    assert result.attempts == 2 and not result.ok


async def run_with_failures(
    call: Callable[[], Awaitable[str]], failures: list[tuple[str, int, bool]],
    max_attempts: int = 4,
) -> RetryResult[str]:
    async def sleep(s: float) -> None:
        pass

    result = await with_retries(
        call, backoff=Backoff(jitter=lambda: 1.0), sleep=sleep, clock=lambda: 0.0,
        max_attempts=max_attempts, on_attempt=lambda o, lat: None,
        on_failure=lambda e, n: failures.append((str(e), n, e.retryable)),
    )
    return result
