"""Approval tokens: shape, signature, claims, expiry and key rotation, each refusal exact."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.approval_tokens import (
    TokenClaims,
    check_secrets,
    mint,
    system_nonce,
    verify,
)
from escalation.errors import TokenError

KEY = b"k" * 32
OLD = b"o" * 32
T0 = 1764132000.0
EXP = T0 + 600.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(claims_json: bytes, key: bytes = KEY) -> str:
    """A token built independently of the module: what a key holder could sign."""
    payload = b64(claims_json)
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{b64(mac)}"


def claims(**over: object) -> bytes:
    c: dict[str, object] = {"v": 1, "aid": "apr_1", "dec": "approve", "exp": EXP, "nonce": "n1"}
    c.update(over)
    return orjson.dumps({k: v for k, v in c.items() if v is not None}, option=orjson.OPT_SORT_KEYS)


def refusal(token: str, keys: list[bytes] | None = None, now: float = T0) -> tuple[str, str]:
    with pytest.raises(TokenError) as info:
        verify(keys or [KEY], token, now)
    return info.value.code, info.value.detail


def test_round_trip_is_compact_and_url_safe() -> None:
    token = mint(KEY, "apr_1", "deny", EXP, "n1")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert verify(KEY, token, T0) == TokenClaims("apr_1", "deny", EXP, "n1", 1)
    assert mint(KEY, "apr_1", "deny", EXP, "n1") == token  # nothing random inside mint
    assert token == signed(claims(dec="deny"))  # the documented format, byte for byte


@given(aid=st.text(min_size=1), nonce=st.text(min_size=1),
       exp=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_any_claims_round_trip(aid: str, nonce: str, exp: float) -> None:
    token = mint(KEY, aid, "approve", exp, nonce)
    assert verify([KEY], token, exp - 1.0) == TokenClaims(aid, "approve", exp, nonce, 1)


@pytest.mark.parametrize(("token", "detail"), [
    ("abc", "expected 2 dot-separated parts, got 1"),
    ("a.b.c", "expected 2 dot-separated parts, got 3"),
    ("", "expected 2 dot-separated parts, got 1"),
    ("ab+c.abcd", "claims is not base64url"),
    ("ab c.abcd", "claims is not base64url"),
    ("abcde.abcd", "claims is not base64url"),      # 5 chars cannot be base64 of anything
    ("abcd.ab/c", "signature is not base64url"),
    ("abcd.a", "signature is not base64url"),
])
def test_malformed_shapes(token: str, detail: str) -> None:
    assert refusal(token) == ("malformed", detail)


@pytest.mark.parametrize(("body", "detail"), [
    (b"{not json", "claims are not JSON"),
    (b"[1, 2]", "claims are not a JSON object"),
    (claims(aid=None), "missing claim 'aid'"),
    (claims(dec=None), "missing claim 'dec'"),
    (claims(exp=None), "missing claim 'exp'"),
    (claims(nonce=None), "missing claim 'nonce'"),
    (claims(v=None), "missing claim 'v'"),
    (claims(v=2), "unsupported token version 2"),
    (claims(v=True), "unsupported token version True"),
    (claims(aid=""), "claim 'aid' must be a non-empty string"),
    (claims(aid=7), "claim 'aid' must be a non-empty string"),
    (claims(dec="maybe"), "claim 'dec' must be approve or deny, got 'maybe'"),
    (claims(exp="soon"), "claim 'exp' must be a finite number"),
    (claims(exp=True), "claim 'exp' must be a finite number"),
    (claims(nonce=5), "claim 'nonce' must be a non-empty string"),
])
def test_malformed_claims_signed_with_the_real_key(body: bytes, detail: str) -> None:
    assert refusal(signed(body)) == ("malformed", detail)


def test_forged_tokens_are_bad_signatures() -> None:
    mine = mint(KEY, "apr_1", "approve", EXP, "n1")
    other = mint(KEY, "apr_2", "approve", EXP, "n2")
    grafted = mine.split(".")[0] + "." + other.split(".")[1]  # signature over other claims
    by_other_key = mint(b"x" * 32, "apr_1", "approve", EXP, "n1")
    edited = b64(claims(dec="deny")) + "." + mine.split(".")[1]  # claims changed after signing
    truncated_mac = mine[:-4]
    for token in (grafted, by_other_key, edited, truncated_mac):
        assert refusal(token) == ("bad_signature", "signature does not match the key")
    assert refusal(by_other_key, [KEY, OLD]) == (
        "bad_signature", "signature matches none of the 2 keys")


def test_signature_is_checked_before_expiry_and_claims() -> None:
    forged = mint(b"x" * 32, "apr_1", "approve", T0 - 1, "n1")
    assert refusal(forged)[0] == "bad_signature"
    assert refusal(signed(b"{not json", key=b"x" * 32))[0] == "bad_signature"


def test_expiry_is_exclusive_and_names_the_time() -> None:
    token = mint(KEY, "apr_1", "approve", EXP, "n1")
    assert verify([KEY], token, EXP - 0.001).approval_id == "apr_1"
    assert refusal(token, now=EXP) == ("expired", "token expired at 2025-11-26T04:50:00Z")
    assert refusal(token, now=EXP + 86400) == ("expired", "token expired at 2025-11-26T04:50:00Z")
    assert str(TokenError("expired", "x")) == "expired: x"


def test_key_rotation_accepts_every_configured_key() -> None:
    old_token = mint(OLD, "apr_1", "approve", EXP, "n1")
    new_token = mint(KEY, "apr_1", "approve", EXP, "n2")
    assert verify([KEY, OLD], old_token, T0).nonce == "n1"
    assert verify([KEY, OLD], new_token, T0).nonce == "n2"
    # Once the old key is retired its links stop working.
    assert refusal(old_token, [KEY]) == ("bad_signature", "signature does not match the key")


def test_short_or_missing_secrets_are_refused() -> None:
    too_short = r"^approval token secret must be at least 32 bytes, got "
    with pytest.raises(ValueError, match=too_short + "31$"):
        mint(b"s" * 31, "apr_1", "approve", EXP, "n1")
    with pytest.raises(ValueError, match=too_short + "0$"):
        verify([KEY, b""], mint(KEY, "apr_1", "approve", EXP, "n1"), T0)
    with pytest.raises(ValueError, match=r"^at least one approval token secret is required$"):
        check_secrets([])
    with pytest.raises(ValueError, match=r"^approval token secret must be bytes, got str$"):
        check_secrets(["k" * 32])  # type: ignore[list-item]
    assert check_secrets(KEY) == (KEY,)


def test_mint_refuses_what_could_never_verify() -> None:
    with pytest.raises(ValueError, match=r"^decision must be one of approve, deny, got 'ok'$"):
        mint(KEY, "apr_1", "ok", EXP, "n1")  # type: ignore[arg-type]
    with pytest.raises(ValueError,
                       match=r"^approval token needs a non-empty approval_id and nonce$"):
        mint(KEY, "apr_1", "approve", EXP, "")
    with pytest.raises(ValueError, match=r"^approval token expires_at must be finite, got inf$"):
        mint(KEY, "apr_1", "approve", float("inf"), "n1")


def test_system_nonce_is_url_safe_and_fresh() -> None:
    nonces = {system_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", n) for n in nonces)
