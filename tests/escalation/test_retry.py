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
