"""Ed25519 keys for audit checkpoints: loading, signing, verifying, and every bad key named."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from escalation.audit_signing import ENV_VAR, Signer, Verifier, key_id_of
from escalation.errors import AuditError

# RFC 8032 section 7.1, test 1: a published key pair and signature to check ours against.
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_matches_the_rfc_8032_test_vector() -> None:
    signer = Signer.from_seed_b64(b64(RFC_SEED))
    assert signer.public_b64 == b64(RFC_PUBLIC)
    assert signer.sign(b"") == b64(RFC_SIG_EMPTY)
    assert signer.key_id == key_id_of(RFC_PUBLIC) == "21fe31dfa154a261"
    verifier = Verifier(b64(RFC_PUBLIC))
    assert verifier.key_id == signer.key_id
    assert verifier.verify(b"", b64(RFC_SIG_EMPTY))


def test_wraps_an_existing_private_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC_SEED)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert Signer(key).public_b64 == b64(raw) == b64(RFC_PUBLIC)


def test_verify_rejects_other_data_other_keys_and_malformed_signatures() -> None:
    signer = Signer.from_seed_b64(b64(RFC_SEED))
    other = Signer.from_seed_b64(b64(bytes(32)))
    verifier = Verifier(signer.public_b64)
    sig = signer.sign(b"covers 11")
    assert verifier.verify(b"covers 11", sig)
    assert not verifier.verify(b"covers 12", sig)
    assert not verifier.verify(b"covers 11", other.sign(b"covers 11"))
    raw = base64.b64decode(sig)
    assert not verifier.verify(b"covers 11", b64(raw[:-1]))  # 63 bytes
    assert not verifier.verify(b"covers 11", b64(bytes([raw[0] ^ 1]) + raw[1:]))
    assert not verifier.verify(b"covers 11", "*" * 88)
    assert not verifier.verify(b"covers 11", "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not base64!", "audit signing key: not valid base64"),
        (b64(bytes(31)), "audit signing key: expected 32 bytes, got 31"),
        (b64(bytes(64)), "audit signing key: expected 32 bytes, got 64"),
    ],
)
def test_bad_seed(text: str, reason: str) -> None:
    with pytest.raises(AuditError) as err:
        Signer.from_seed_b64(text)
    assert str(err.value) == reason


def test_bad_public_key() -> None:
    with pytest.raises(AuditError) as err:
        Verifier(b64(bytes(16)))
    assert str(err.value) == "audit public key: expected 32 bytes, got 16"
    with pytest.raises(AuditError) as err:
        Verifier("???", what="--public-key")
    assert str(err.value) == "--public-key: not valid base64"


def test_from_env() -> None:
    seed = b64(RFC_SEED)
    assert Signer.from_env(environ={}) is None
    signer = Signer.from_env(environ={ENV_VAR: seed + "\n"})  # as read from a key file
    assert signer is not None and signer.public_b64 == b64(RFC_PUBLIC)
    custom = Signer.from_env("MY_KEY", environ={"MY_KEY": seed})
    assert custom is not None and custom.key_id == signer.key_id
    with pytest.raises(AuditError) as err:
        Signer.from_env(environ={ENV_VAR: "  "})
    assert str(err.value) == "$HOTPATH_AUDIT_KEY is set but empty"
    with pytest.raises(AuditError) as err:
        Signer.from_env(environ={ENV_VAR: b64(bytes(8))})
    # The message names the variable, never the (secret) value.
    assert str(err.value) == "$HOTPATH_AUDIT_KEY: expected 32 bytes, got 8"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert Signer.from_env() is None
    monkeypatch.setenv(ENV_VAR, b64(RFC_SEED))
    signer = Signer.from_env()
    assert signer is not None and signer.public_b64 == b64(RFC_PUBLIC)
