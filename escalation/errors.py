"""Errors raised by the escalation package.

::

    EscalationError
    ├── AuditError
    │   └── AuditVerifyError        a record of an audit file fails verification
    ├── BudgetStoreUnavailable      Redis unreachable or too slow: automation fails closed
    ├── DeliveryError               a pager or executor call failed
    │   ├── RetryableDeliveryError  5xx, 429, timeout, connection refused: try again later
    │   └── PermanentDeliveryError  4xx other than 429: retrying cannot help
    └── OutboxError                 the outbox (Redis stream and local spool) cannot take a page
"""

from __future__ import annotations


class EscalationError(Exception):
    """Root of every error the escalation package raises."""


class AuditError(EscalationError):
    """Something is wrong with the audit log."""


class AuditVerifyError(AuditError):
    """A record of an audit file fails verification; names the line and what broke."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class BudgetStoreUnavailable(EscalationError):
    """The budget store (Redis) could not answer in time; automation must not act."""


class DeliveryError(EscalationError):
    """A call to an outside receiver (pager, executor) failed."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableDeliveryError(DeliveryError):
    """5xx, 429, timeouts, refused connections: the same call may succeed later."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """A 4xx other than 429: the receiver rejected the payload; retrying cannot help."""


class OutboxError(EscalationError):
    """Neither the Redis outbox nor the local spool could take a page."""
