"""Errors raised by the escalation package.

::

    EscalationError
    ├── AuditError
    │   └── AuditVerifyError        a record of an audit file fails verification
    ├── StoreUnavailable            Redis unreachable or too slow: governed actions fail closed
    │   ├── ApprovalStoreUnavailable    pending approvals cannot be created, read or swept
    │   ├── VerifyStoreError            verification watches cannot be read or written
    │   └── RequestStoreError           a request's status cannot be read
    ├── RequestError                a request body is malformed (every bad field named)
    ├── TokenError                  an approve/deny token is malformed, forged or expired
    ├── SignatureError              a signed webhook is malformed, stale or not ours
    ├── PluginError                 an executor plugin is missing, broken or not an executor
    ├── ChangeError                 a change event (topic ``changes``) breaks its wire format
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


class StoreUnavailable(EscalationError):
    """A Redis-backed store could not answer in time; nothing governed may act on a guess."""


class ApprovalStoreUnavailable(StoreUnavailable):
    """Redis could not answer in time; nothing was created, read or swept."""


class VerifyStoreError(StoreUnavailable):
    """The verify store could not read or write Redis (unreachable, too slow, garbled)."""


class RequestStoreError(StoreUnavailable):
    """The request store (Redis) could not answer a read."""


class RequestError(EscalationError):
    """A request body is malformed; ``problems`` names every bad field, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class TokenError(EscalationError):
    """A token that must not be honoured; ``code`` is the stable reason
    (``malformed``, ``bad_signature``, ``expired``), ``detail`` says what."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class SignatureError(EscalationError):
    """A signed request is malformed, outside the time tolerance, or signed with no known
    secret. The message says which; receivers answer 401 with it."""


class ChangeError(EscalationError):
    """A change event that breaks the wire format; the message is the exact reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def kind(self) -> str:
        """The fixed part of the reason (before the colon): a bounded set of values.

        >>> ChangeError("wrong type: ts (expected number)").kind
        'wrong type'
        """
        return self.reason.split(":", 1)[0]


class PluginError(EscalationError):
    """An executor plugin is not installed, failed to load, or is not an executor."""


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
