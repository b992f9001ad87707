"""Backoff: exponential, capped, equal jitter, Retry-After as a floor."""

from __future__ import annotations

import pytest

from escalation.backoff import Backoff


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "expected"),
    [
        (1, 1.0, None, 0.2),
        (2, 1.0, None, 0.4),
        (4, 1.0, None, 1.6),
        (9, 1.0, None, 30.0),        # 0.2 * 2**8 = 51.2, capped
        (10_000, 1.0, None, 30.0),   # no overflow on a long outage
        (3, 0.0, None, 0.4),         # jitter never goes below half
        (3, 0.5, None, 0.6),
        (1, 1.0, 1.0, 1.0),          # Retry-After longer than ours wins
        (9, 1.0, 1.0, 30.0),         # ours longer than Retry-After wins
    ],
)
def test_delay(attempt: int, jitter: float, retry_after: float | None, expected: float) -> None:
    assert Backoff(jitter=lambda: jitter).delay(attempt, retry_after) == pytest.approx(expected)


def test_bad_attempt_and_bad_jitter_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^attempt must be >= 1, got 0$"):
        Backoff().delay(0, None)
    with pytest.raises(ValueError, match=r"^jitter must return a fraction in \[0, 1\], got 1.5$"):
        Backoff(jitter=lambda: 1.5).delay(1, None)
