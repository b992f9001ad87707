"""Bearer authentication of the action API: principals, digests, exact refusals."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from escalation.request import Actor, ActorKind
from hotpath.api_auth import (
    MISSING_TOKEN_DETAIL,
    UNKNOWN_TOKEN_DETAIL,
    Authenticator,
    AuthError,
    Principal,
    hash_token,
)

AGENT_TOKEN = "tok-agent-Zx81.q~"
HUMAN_TOKEN = "tok-human-Pq02"


def principals() -> list[Principal]:
    return [Principal("copilot", ActorKind.AGENT, ("responder",), hash_token(AGENT_TOKEN)),
            Principal("alice", ActorKind.HUMAN, ("sre", "lead"), hash_token(HUMAN_TOKEN))]


def test_hash_token_is_hex_sha256() -> None:
    # FIPS 180-2 test vector for "abc".
    assert hash_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


@pytest.mark.parametrize(("header", "actor"), [
    (f"Bearer {AGENT_TOKEN}", Actor(ActorKind.AGENT, "copilot", ("responder",))),
    (f"bearer {HUMAN_TOKEN}", Actor(ActorKind.HUMAN, "alice", ("sre", "lead"))),
    (f"  Bearer   {HUMAN_TOKEN} ", Actor(ActorKind.HUMAN, "alice", ("sre", "lead"))),
])
def test_a_known_token_names_its_principal(header: str, actor: Actor) -> None:
    assert Authenticator(principals()).authenticate(header) == actor


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"Basic {AGENT_TOKEN}", AGENT_TOKEN,
    f"Bearer {AGENT_TOKEN} extra", "Bearer tok\u00e9n", "Bearer a,b",
])
def test_a_missing_or_malformed_header_is_missing_token(header: str | None) -> None:
    with pytest.raises(AuthError) as info:
        Authenticator(principals()).authenticate(header)
    assert (info.value.code, info.value.detail) == ("missing_token", MISSING_TOKEN_DETAIL)
    assert MISSING_TOKEN_DETAIL == "expected an 'Authorization: Bearer <token>' header"
    assert AGENT_TOKEN not in str(info.value)


@pytest.mark.parametrize("token", ["tok-agent-Zx81", AGENT_TOKEN + "x", hash_token(AGENT_TOKEN)])
def test_an_unknown_token_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(AuthError) as info:
        Authenticator(principals()).authenticate(f"Bearer {token}")
    assert (info.value.code, info.value.detail) == ("unknown_token", UNKNOWN_TOKEN_DETAIL)
    assert str(info.value) == "unknown_token: the bearer token matches no principal"
    assert token not in str(info.value)


def test_no_principals_knows_no_token() -> None:
    with pytest.raises(AuthError) as info:
        Authenticator([]).authenticate(f"Bearer {AGENT_TOKEN}")
    assert info.value.code == "unknown_token"


@pytest.mark.parametrize("token", [AGENT_TOKEN, HUMAN_TOKEN, "unknown"])
def test_every_digest_is_compared_whatever_the_token(
        monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    # A spy around the real comparison: the first principal's match must not end the loop,
    # so a known token costs what an unknown one does.
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = Authenticator(principals())
    if token == "unknown":
        with pytest.raises(AuthError):
            auth.authenticate(f"Bearer {token}")
    else:
        assert auth.authenticate(f"Bearer {token}").name in ("copilot", "alice")
    assert compared == [p.token_sha256.encode() for p in principals()]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Principal("rule-1", ActorKind.AUTOMATION, (), hash_token("t")),
     "principal 'rule-1': kind must be agent or human, not automation"),
    (lambda: Principal("", ActorKind.AGENT, (), hash_token("t")),
     "principal name must not be empty"),
    (lambda: Principal("copilot", ActorKind.AGENT, (), "plain-token"),
     "principal 'copilot': token_sha256 must be 64 lowercase hex digits "
     "(hotpath.api_auth.hash_token of the token)"),
    (lambda: Principal("copilot", ActorKind.AGENT, (), hash_token("t").upper()),
     "principal 'copilot': token_sha256 must be 64 lowercase hex digits "
     "(hotpath.api_auth.hash_token of the token)"),
])
def test_bad_principals_are_refused(make: Callable[[], Principal], message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_a_principal_named_twice_is_refused() -> None:
    twice = [*principals(), Principal("copilot", ActorKind.AGENT, (), hash_token("other"))]
    with pytest.raises(ValueError) as info:
        Authenticator(twice)
    assert str(info.value) == "principal agent:copilot is named twice"


def test_two_principals_with_one_token_are_refused() -> None:
    shared = [*principals(), Principal("bob", ActorKind.HUMAN, (), hash_token(AGENT_TOKEN))]
    with pytest.raises(ValueError) as info:
        Authenticator(shared)
    assert str(info.value) == "principal human:bob shares its token with another"


def test_the_same_name_as_agent_and_human_is_two_principals() -> None:
    both = [Principal("ops", ActorKind.AGENT, (), hash_token("a")),
            Principal("ops", ActorKind.HUMAN, (), hash_token("h"))]
    auth = Authenticator(both)
    assert auth.authenticate("Bearer h") == Actor(ActorKind.HUMAN, "ops")
    assert auth.authenticate("Bearer a") == Actor(ActorKind.AGENT, "ops")
