"""Classifying receiver answers: the table every HTTP adapter shares."""

from __future__ import annotations

import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.http_delivery import classify, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1", 1.0), (" 30 ", 30.0), ("0.5", 0.5), ("0", 0.0), (None, None), ("", None),
     ("-1", None), ("inf", None), ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, None), (202, None), (204, None), (301, PermanentDeliveryError),
     (400, PermanentDeliveryError), (401, PermanentDeliveryError),
     (404, PermanentDeliveryError), (408, RetryableDeliveryError),
     (413, PermanentDeliveryError), (429, RetryableDeliveryError),
     (500, RetryableDeliveryError), (502, RetryableDeliveryError),
     (503, RetryableDeliveryError)],
)
def test_classify(status: int, kind: type[Exception] | None) -> None:
    error = classify(status, "2", "why")
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert str(error) == f"HTTP {status}: why"
    assert error is not None and error.status == status
    assert error.retry_after == (2.0 if kind is RetryableDeliveryError else None)
