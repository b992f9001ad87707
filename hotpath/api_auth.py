"""Who is calling the action API: principals and bearer-token authentication.

The config names each principal (an outside agent or a human) with the SHA-256 of its
token, never the token itself; :func:`hash_token` makes that digest. A request's
``Authorization: Bearer <token>`` header is hashed and compared against every principal's
digest in constant time, with no early exit, so neither the answer nor its timing tells
which principal (or how much of a digest) came close.

>>> digest = hash_token("s3cret-agent-token")
>>> digest
'ae30582fa821c0da8c83c781b4755829fb7f21bd861d07e69f745586c79ae2e2'
>>> auth = Authenticator([Principal("copilot", ActorKind.AGENT, ("responder",), digest)])
>>> str(auth.authenticate("Bearer s3cret-agent-token"))
'agent:copilot'
>>> auth.authenticate("Bearer guess")
Traceback (most recent call last):
...
hotpath.api_auth.AuthError: unknown_token: the bearer token matches no principal
>>> auth.authenticate(None)
Traceback (most recent call last):
...
hotpath.api_auth.AuthError: missing_token: expected an 'Authorization: Bearer <token>' header
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from escalation.request import Actor, ActorKind
from hotpath.errors import HotpathError

MISSING_TOKEN_DETAIL = "expected an 'Authorization: Bearer <token>' header"
UNKNOWN_TOKEN_DETAIL = "the bearer token matches no principal"

# RFC 6750 b64token: the characters a bearer token may hold. Anything else is a malformed
# header, refused before hashing (and never echoed: it may be a mistyped secret).
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# Only callers from outside authenticate here; automation acts from inside the processor.
API_KINDS = frozenset({ActorKind.AGENT, ActorKind.HUMAN})


class AuthError(HotpathError):
    """A request could not be authenticated; ``code`` is ``missing_token`` or ``unknown_token``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what the config stores instead of the token.

    >>> hash_token("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """One API caller: an agent or a human, its roles (approval rights) and token digest."""

    name: str
    kind: ActorKind
    roles: tuple[str, ...]
    token_sha256: str

    def __post_init__(self) -> None:
        if self.kind not in API_KINDS:
            raise ValueError(f"principal {self.name!r}: kind must be agent or human, "
                             f"not {self.kind.value}")
        if not self.name:
            raise ValueError("principal name must not be empty")
        if not _SHA256_HEX.fullmatch(self.token_sha256):
            raise ValueError(f"principal {self.name!r}: token_sha256 must be 64 lowercase "
                             "hex digits (hotpath.api_auth.hash_token of the token)")

    @property
    def actor(self) -> Actor:
        return Actor(self.kind, self.name, self.roles)


class Authenticator:
    """Maps a bearer token to the :class:`Actor` of the principal that holds it."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self._principals = tuple(principals)
        seen_names: set[str] = set()
        seen_digests: set[str] = set()
        for p in self._principals:
            if str(p.actor) in seen_names:
                raise ValueError(f"principal {p.actor} is named twice")
            if p.token_sha256 in seen_digests:
                # Two principals with one token: the caller's identity would be ambiguous.
                raise ValueError(f"principal {p.actor} shares its token with another")
            seen_names.add(str(p.actor))
            seen_digests.add(p.token_sha256)

    def authenticate(self, header: str | None) -> Actor:
        """The caller named by an ``Authorization`` header value; raises :class:`AuthError`."""
        match = _BEARER.fullmatch(header.strip()) if header else None
        if match is None:
            raise AuthError("missing_token", MISSING_TOKEN_DETAIL)
        presented = hash_token(match.group(1)).encode()
        found: Principal | None = None
        for p in self._principals:
            # Every digest is compared, even after a hit: the time taken is the same for
            # every token, known or not.
            if hmac.compare_digest(presented, p.token_sha256.encode()):
                found = p
        if found is None:
            raise AuthError("unknown_token", UNKNOWN_TOKEN_DETAIL)
        return found.actor
