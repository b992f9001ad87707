"""Ed25519 keys for the audit log's signed checkpoints.

The hash chain proves a log was not edited *after* someone trusted its head; a signature
proves who wrote it, so an attacker who rewrites the whole file (and its head) still cannot
produce checkpoints the auditor's public key accepts.

Keys travel as base64 of their raw 32 bytes (the private key as its seed); ``key_id`` is the
first 16 hex digits of the sha256 of the raw public key, so a checkpoint can name its key
without carrying it.

>>> signer = Signer.from_seed_b64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
>>> signer.key_id
'56475aa75463474c'
>>> Verifier(signer.public_b64).verify(b"covered", signer.sign(b"covered"))
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from escalation.errors import AuditError

ENV_VAR = "HOTPATH_AUDIT_KEY"
_KEY_BYTES = 32  # Ed25519 seeds and public keys are both 32 raw bytes (RFC 8032)
_SIG_BYTES = 64
_CHECKPOINT_FIELDS = ["covers_hash", "covers_seq", "key_id", "sig"]
_HEX = frozenset("0123456789abcdef")


def _raw32(text: str, what: str) -> bytes:
    """Strict base64 of exactly 32 bytes; surrounding whitespace (a newline from a file) is
    forgiven, anything else is an error naming ``what`` but never echoing the secret."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuditError(f"{what}: not valid base64") from None
    if len(raw) != _KEY_BYTES:
        raise AuditError(f"{what}: expected {_KEY_BYTES} bytes, got {len(raw)}")
    return raw


def key_id_of(public_raw: bytes) -> str:
    """The short name of a public key that checkpoints carry.

    >>> key_id_of(bytes(32))
    '66687aadf862bd77'
    """
    return hashlib.sha256(public_raw).hexdigest()[:16]


class Signer:
    """Signs checkpoint bytes with one Ed25519 private key.

    >>> s = Signer.from_seed_b64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    >>> s.public_b64
    'A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg='
    >>> len(s.sign(b"x"))  # base64 of the 64-byte signature
    88
    """

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id_of(self._public_raw)

    @classmethod
    def from_seed_b64(cls, text: str, what: str = "audit signing key") -> Signer:
        """From the base64 of a 32-byte seed; AuditError naming ``what`` when malformed.

        >>> Signer.from_seed_b64("c2hvcnQ=")
        Traceback (most recent call last):
        ...
        escalation.errors.AuditError: audit signing key: expected 32 bytes, got 5
        """
        return cls(Ed25519PrivateKey.from_private_bytes(_raw32(text, what)))

    @classmethod
    def from_env(
        cls, var: str = ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> Signer | None:
        """The signer in ``var``; None when unset. Set but empty or malformed is an error:
        a typo must not quietly turn signing off.

        >>> Signer.from_env(environ={}) is None
        True
        >>> Signer.from_env(environ={"HOTPATH_AUDIT_KEY": ""})
        Traceback (most recent call last):
        ...
        escalation.errors.AuditError: $HOTPATH_AUDIT_KEY is set but empty
        """
        env = os.environ if environ is None else environ
        text = env.get(var)
        if text is None:
            return None
        if not text.strip():
            raise AuditError(f"${var} is set but empty")
        return cls.from_seed_b64(text, f"${var}")

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self._public_raw).decode("ascii")

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, data: bytes) -> str:
        """The base64 Ed25519 signature of ``data`` (deterministic, as Ed25519 is)."""
        return base64.b64encode(self._key.sign(data)).decode("ascii")


class Verifier:
    """Checks signatures against one public key (base64 of its raw 32 bytes).

    >>> v = Verifier("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=")
    >>> v.key_id
    '56475aa75463474c'
    >>> v.verify(b"x", "not base64!")
    False
    """

    def __init__(self, public_b64: str, what: str = "audit public key") -> None:
        raw = _raw32(public_b64, what)
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise AuditError(f"{what}: not an Ed25519 public key") from None
        self._key_id = key_id_of(raw)

    @property
    def key_id(self) -> str:
        return self._key_id

    def verify(self, data: bytes, sig_b64: str) -> bool:
        """True only for a well-formed signature by this key over exactly ``data``."""
        try:
            sig = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(sig) != _SIG_BYTES:
            return False
        try:
            self._key.verify(sig, data)
        except InvalidSignature:
            return False
        return True


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and _HEX.issuperset(v)


def checkpoint_message(covers_seq: int, covers_hash: str, key_id: str) -> bytes:
    """The bytes a checkpoint signs: the canonical JSON of what it covers and the key.

    >>> checkpoint_message(3, "ab", "k1")
    b'{"covers_hash":"ab","covers_seq":3,"key_id":"k1"}'
    """
    claim = {"covers_hash": covers_hash, "covers_seq": covers_seq, "key_id": key_id}
    return orjson.dumps(claim, option=orjson.OPT_SORT_KEYS)


def checkpoint_problem(
    body: dict[str, Any], last_seq: int, last_line_hash: str, verifiers: Mapping[str, Verifier]
) -> str | None:
    """Why a checkpoint body does not vouch for the record before it; None when it does.

    ``last_seq`` and ``last_line_hash`` describe that record (0 and 64 zeros before the
    first). Checked in order: shape, known key, coverage, signature — so a checkpoint
    copied from another log is named as such rather than as a bad signature.

    >>> body = {"covers_seq": 1, "covers_hash": "0" * 64, "key_id": "k9", "sig": ""}
    >>> checkpoint_problem(body, 1, "0" * 64, verifiers={})
    'checkpoint key k9 unknown'
    """
    if (
        sorted(body) != _CHECKPOINT_FIELDS
        or type(body["covers_seq"]) is not int
        or not _is_sha256(body["covers_hash"])
        or not isinstance(body["key_id"], str)
        or not isinstance(body["sig"], str)
    ):
        return ("checkpoint body needs exactly an integer 'covers_seq', a sha256 "
                "'covers_hash' and string 'key_id' and 'sig'")
    verifier = verifiers.get(body["key_id"])
    if verifier is None:
        return f"checkpoint key {body['key_id']} unknown"
    if body["covers_seq"] != last_seq:
        return f"checkpoint covers seq {body['covers_seq']}, previous record is {last_seq}"
    if body["covers_hash"] != last_line_hash:
        return "checkpoint covers_hash is not the previous record's line hash"
    message = checkpoint_message(body["covers_seq"], body["covers_hash"], body["key_id"])
    if not verifier.verify(message, body["sig"]):
        return "checkpoint signature invalid"
    return None
