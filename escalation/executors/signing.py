"""Signed webhook bodies: HMAC-SHA256 over the timestamp and the body (Stripe's scheme).

The sender puts ``X-Hotpath-Signature: t=<unix seconds>,v1=<hex hmac>`` on the request,
where the HMAC covers ``b"<t>." + body``. Signing the timestamp with the body is what makes
a captured request useless later: the receiver refuses a timestamp outside its tolerance,
and the attacker cannot move the timestamp without the secret.

A receiver calls :func:`verify` with every secret it currently accepts, so a secret can be
rotated without a window of refused requests: accept old and new, switch the sender, drop
the old.

>>> header = sign(b"s3cret", 1764132000, b'{"action":"restart"}')
>>> header
't=1764132000,v1=a9dff618e78812ae2ee31497c64085394cc6edf80f9961b2a6631ced103265af'
>>> verify([b"old", b"s3cret"], header, b'{"action":"restart"}', now=1764132010.0)
>>> try:
...     verify(b"s3cret", header, b'{"action":"rollback"}', now=1764132010.0)
... except SignatureError as e:
...     print(e)
signature: no v1 signature matches the body under any of 1 secret(s)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from escalation.errors import SignatureError

SIGNATURE_HEADER = "X-Hotpath-Signature"
TIMESTAMP_HEADER = "X-Hotpath-Timestamp"

# Stripe's default: wide enough for clock skew and a retried delivery, narrow enough that a
# captured request cannot be replayed later in the day.
DEFAULT_TOLERANCE_S = 300.0

_SCHEME = "v1"



def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Hotpath-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},{_SCHEME}={_digest(secret, timestamp, body)}"


def signed_headers(secret: bytes | None, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers a signed request carries (none without a secret): what the webhook
    executor and the webhook pager both send.

    >>> signed_headers(None, 12, b"{}")
    {}
    >>> sorted(signed_headers(b"k" * 32, 12, b"{}"))
    ['X-Hotpath-Signature', 'X-Hotpath-Timestamp']
    """
    if secret is None:
        return {}
    return {SIGNATURE_HEADER: sign(secret, timestamp, body), TIMESTAMP_HEADER: str(timestamp)}


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header, or :class:`SignatureError` saying what is wrong.

    Unknown schemes are skipped, so a sender may add a stronger scheme before receivers know it.

    >>> parse("t=12,v0=ab,v1=cd,v1=ef")
    (12, ['cd', 'ef'])
    >>> try:
    ...     parse("t=soon,v1=cd")
    ... except SignatureError as e:
    ...     print(e)
    signature: malformed header: t='soon' is not an integer
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key or not value:
            raise SignatureError(f"signature: malformed header: {part.strip()!r} is not key=value")
        if key == "t":
            if timestamp is not None:
                raise SignatureError("signature: malformed header: more than one t=")
            if not value.isascii() or not value.isdigit():
                raise SignatureError(f"signature: malformed header: t={value!r} is not an integer")
            timestamp = int(value)
        elif key == _SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("signature: malformed header: no t=")
    if not signatures:
        raise SignatureError(f"signature: malformed header: no {_SCHEME}=")
    return timestamp, signatures


def verify(
    secrets: bytes | Sequence[bytes],
    header: str,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Return if ``header`` signs ``body`` under one of ``secrets`` within ``tolerance_s`` of
    ``now`` (wall-clock seconds); else raise :class:`SignatureError`.

    >>> try:
    ...     verify(b"k", sign(b"k", 1000, b"{}"), b"{}", now=1400.0)
    ... except SignatureError as e:
    ...     print(e)
    signature: timestamp 1000 is 400s old, beyond the 300s tolerance
    """
    keys = [secrets] if isinstance(secrets, bytes) else list(secrets)
    if not keys:
        raise ValueError("verify needs at least one secret")
    timestamp, signatures = parse(header)
    age = now - timestamp
    if age > tolerance_s:
        raise SignatureError(
            f"signature: timestamp {timestamp} is {age:.0f}s old, "
            f"beyond the {tolerance_s:g}s tolerance"
        )
    if -age > tolerance_s:
        raise SignatureError(
            f"signature: timestamp {timestamp} is {-age:.0f}s in the future, "
            f"beyond the {tolerance_s:g}s tolerance"
        )
    # Every pair is compared, in constant time each, so the timing does not tell an attacker
    # which secret or which prefix came close.
    matched = False
    for key in keys:
        expected = _digest(key, timestamp, body)
        for candidate in signatures:
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise SignatureError(
            f"signature: no {_SCHEME} signature matches the body under any of "
            f"{len(keys)} secret(s)"
        )
