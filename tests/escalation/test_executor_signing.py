"""sign/verify: the HMAC header of signed webhooks, as receivers check it."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.errors import EscalationError, SignatureError
from escalation.executors.signing import parse, sign, verify

T = 1_764_132_000
BODY = b'{"action":"restart_pods","target":"checkout-eu"}'


def test_header_is_the_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k1", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(b"k1", T, BODY) == f"t={T},v1={expected}"


def test_signature_error_is_an_escalation_error() -> None:
    assert issubclass(SignatureError, EscalationError)


@pytest.mark.parametrize("now", [T - 300.0, T, T + 299.5, T + 300.0])
def test_accepts_within_tolerance(now: float) -> None:
    verify(b"k1", sign(b"k1", T, BODY), BODY, now=now)


def test_any_of_several_secrets_is_accepted_during_rotation() -> None:
    verify([b"new", b"old"], sign(b"old", T, BODY), BODY, now=T)
    verify((b"new", b"old"), sign(b"new", T, BODY), BODY, now=T)


def test_a_header_with_several_v1_values_matches_on_any() -> None:
    # A sender mid-rotation may sign with both secrets; the receiver knows only one of them.
    header = sign(b"old", T, BODY) + "," + sign(b"new", T, BODY).split(",")[1]
    verify(b"new", header, BODY, now=T)


@pytest.mark.parametrize(
    ("header", "message"),
    [("", "signature: malformed header: '' is not key=value"),
     ("v1=ab", "signature: malformed header: no t="),
     (f"t={T}", "signature: malformed header: no v1="),
     (f"t={T},v0=ab", "signature: malformed header: no v1="),
     (f"t={T},t={T},v1=ab", "signature: malformed header: more than one t="),
     ("t=-5,v1=ab", "signature: malformed header: t='-5' is not an integer"),
     ("t=1.5,v1=ab", "signature: malformed header: t='1.5' is not an integer"),
     ("t=١٢,v1=ab", "signature: malformed header: t='١٢' is not an integer"),
     (f"t={T},v1=", "signature: malformed header: 'v1=' is not key=value"),
     (f"t={T};v1=ab", f"signature: malformed header: t='{T};v1=ab' is not an integer")],
)
def test_malformed_headers(header: str, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(b"k1", header, BODY, now=T)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("now", "message"),
    [(T + 300.5, f"signature: timestamp {T} is 300s old, beyond the 300s tolerance"),
     (T + 3600.0, f"signature: timestamp {T} is 3600s old, beyond the 300s tolerance"),
     (T - 301.0, f"signature: timestamp {T} is 301s in the future, beyond the 300s tolerance")],
)
def test_timestamps_outside_the_tolerance(now: float, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(b"k1", sign(b"k1", T, BODY), BODY, now=now)
    assert str(info.value) == message


def test_tolerance_is_configurable() -> None:
    with pytest.raises(SignatureError) as info:
        verify(b"k1", sign(b"k1", T, BODY), BODY, now=T + 31, tolerance_s=30)
    assert str(info.value) == f"signature: timestamp {T} is 31s old, beyond the 30s tolerance"


@pytest.mark.parametrize(
    ("secrets", "header", "body", "n"),
    [(b"k2", sign(b"k1", T, BODY), BODY, 1),                      # wrong secret
     ([b"a", b"b"], sign(b"k1", T, BODY), BODY, 2),               # none of the rotation set
     (b"k1", sign(b"k1", T, BODY), BODY + b" ", 1),               # body changed
     (b"k1", sign(b"k1", T, BODY).replace(f"t={T}", f"t={T + 1}"), BODY, 1)],  # t moved
)
def test_mismatches(secrets: bytes | list[bytes], header: str, body: bytes, n: int) -> None:
    with pytest.raises(SignatureError) as info:
        verify(secrets, header, body, now=T)
    assert str(info.value) == (
        f"signature: no v1 signature matches the body under any of {n} secret(s)")


def test_no_secrets_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"^verify needs at least one secret$"):
        verify([], sign(b"k1", T, BODY), BODY, now=T)


def test_unknown_schemes_are_skipped() -> None:
    assert parse(f"t={T}, v2=zz ,v1=ab") == (T, ["ab"])


@given(secret=st.binary(min_size=1, max_size=64), ts=st.integers(0, 2**40),
       body=st.binary(max_size=256), flip=st.integers(0, 255))
def test_round_trip_and_any_body_change_is_caught(
    secret: bytes, ts: int, body: bytes, flip: int
) -> None:
    header = sign(secret, ts, body)
    verify(secret, header, body, now=float(ts))
    changed = body + bytes([flip])
    with pytest.raises(SignatureError):
        verify(secret, header, changed, now=float(ts))
