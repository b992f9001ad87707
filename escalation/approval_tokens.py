"""Signed approval links: HMAC-SHA256 tokens that say "approve (or deny) approval X before T".

A token is ``base64url(claims JSON) + "." + base64url(HMAC-SHA256(secret, first part))``,
unpadded, so it fits in a URL as is. The claims name the approval, the decision the link
makes, the expiry and a nonce; the nonce is what makes a token single use (the approval
store remembers spent nonces). The signature covers the encoded claims exactly as sent, so
nothing is parsed as JSON before it is authenticated.

Key rotation: :func:`verify` takes the configured secrets newest first; a token signed with
any of them verifies, so links already paged stay valid while a new key is rolled out.

>>> key = b"k" * 32
>>> token = mint(key, "apr_1", "approve", expires_at=1764132600.0, nonce="n1")
>>> verify([key], token, now=1764132000.0)
TokenClaims(approval_id='apr_1', decision='approve', expires_at=1764132600.0, nonce='n1', version=1)
>>> verify([key], token, now=1764132600.0)
Traceback (most recent call last):
...
escalation.errors.TokenError: expired: token expired at 2025-11-26T04:50:00Z
>>> verify([b"o" * 32, key], token[:-2] + "AA", now=1764132000.0).nonce
Traceback (most recent call last):
...
escalation.errors.TokenError: bad_signature: signature matches none of the 2 keys
>>> mint(b"short", "apr_1", "deny", expires_at=1.0, nonce="n")
Traceback (most recent call last):
...
ValueError: approval token secret must be at least 32 bytes, got 5
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets as _system_random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson

from escalation.errors import TokenError

Decision = Literal["approve", "deny"]
DECISIONS: tuple[Decision, ...] = get_args(Decision)

TOKEN_VERSION = 1
# HMAC-SHA256's own block of security: a key shorter than the 32-byte digest is the weak
# link (RFC 2104 §3 recommends at least the output length).
MIN_SECRET_BYTES = 32
# 16 random bytes: a guessed or colliding nonce is out of reach for the life of any token.
NONCE_BYTES = 16

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TokenErrorCode = Literal["malformed", "bad_signature", "expired"]



@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    approval_id: str
    decision: Decision
    expires_at: float
    nonce: str
    version: int


def check_secret(secret: bytes) -> bytes:
    """The secret itself, or ValueError when it is too short to sign with.

    >>> check_secret(b"x" * 31)
    Traceback (most recent call last):
    ...
    ValueError: approval token secret must be at least 32 bytes, got 31
    """
    if not isinstance(secret, bytes):
        raise ValueError(f"approval token secret must be bytes, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"approval token secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
        )
    return secret


def check_secrets(secrets: bytes | Sequence[bytes]) -> tuple[bytes, ...]:
    """The secrets newest first, each checked; one bare secret is a one-key rotation.

    >>> check_secrets([])
    Traceback (most recent call last):
    ...
    ValueError: at least one approval token secret is required
    """
    keys = (secrets,) if isinstance(secrets, bytes) else tuple(secrets)
    if not keys:
        raise ValueError("at least one approval token secret is required")
    return tuple(check_secret(k) for k in keys)


def system_nonce() -> str:
    """The production randomness source for nonces; tests inject their own.

    >>> len(system_nonce())
    22
    """
    return _system_random.token_urlsafe(NONCE_BYTES)


def iso_utc(ts: float) -> str:
    """
    >>> iso_utc(1764132000.25)
    '2025-11-26T04:40:00Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mint(secret: bytes, approval_id: str, decision: Decision, expires_at: float,
         nonce: str) -> str:
    """A signed token for one decision on one approval, valid until ``expires_at``."""
    check_secret(secret)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not approval_id or not nonce:
        raise ValueError("approval token needs a non-empty approval_id and nonce")
    if not math.isfinite(expires_at):
        raise ValueError(f"approval token expires_at must be finite, got {expires_at}")
    claims = {"v": TOKEN_VERSION, "aid": approval_id, "dec": decision,
              "exp": float(expires_at), "nonce": nonce}
    payload = _b64encode(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_b64encode(_sign(secret, payload))}"


def verify(secrets: bytes | Sequence[bytes], token: str, now: float) -> TokenClaims:
    """The token's claims, or :class:`TokenError` saying why it must not be honoured.

    Checks, in order: shape, base64, signature (against every key), JSON and claims, expiry.
    """
    keys = check_secrets(secrets)
    parts = token.split(".")
    if len(parts) != 2:
        raise TokenError("malformed", f"expected 2 dot-separated parts, got {len(parts)}")
    payload, signature = parts
    body = _b64decode(payload, "claims")
    mac = _b64decode(signature, "signature")
    # Every key is tried even after a match so the timing does not reveal which one signed.
    matches = [hmac.compare_digest(_sign(k, payload), mac) for k in keys]
    if not any(matches):
        detail = (f"signature matches none of the {len(keys)} keys" if len(keys) > 1
                  else "signature does not match the key")
        raise TokenError("bad_signature", detail)
    claims = _claims(body)
    if now >= claims.expires_at:
        raise TokenError("expired", f"token expired at {iso_utc(claims.expires_at)}")
    return claims


def _sign(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str, part: str) -> bytes:
    # The stdlib decoder skips characters outside the alphabet; a token must not.
    if not _B64URL.fullmatch(text):
        raise TokenError("malformed", f"{part} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", f"{part} is not base64url") from None


def _claims(body: bytes) -> TokenClaims:
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TokenError("malformed", "claims are not JSON") from None
    if not isinstance(raw, dict):
        raise TokenError("malformed", "claims are not a JSON object")
    for name in ("v", "aid", "dec", "exp", "nonce"):
        if name not in raw:
            raise TokenError("malformed", f"missing claim {name!r}")
    version, approval_id, decision, exp, nonce = (
        raw["v"], raw["aid"], raw["dec"], raw["exp"], raw["nonce"])
    if version != TOKEN_VERSION or isinstance(version, bool):
        raise TokenError("malformed", f"unsupported token version {version!r}")
    if not isinstance(approval_id, str) or not approval_id:
        raise TokenError("malformed", "claim 'aid' must be a non-empty string")
    if decision not in DECISIONS:
        raise TokenError("malformed", f"claim 'dec' must be approve or deny, got {decision!r}")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise TokenError("malformed", "claim 'exp' must be a finite number")
    if not isinstance(nonce, str) or not nonce:
        raise TokenError("malformed", "claim 'nonce' must be a non-empty string")
    return TokenClaims(approval_id, decision, float(exp), nonce, TOKEN_VERSION)
