"""Pending approvals in Redis: requested, then approved, denied or expired — exactly once.

A request the policy says needs a human becomes a :class:`PendingApproval` with an expiry.
:meth:`ApprovalStore.request` stores it (a replayed request finds the same one: its id is
derived from the request id) and returns approve and deny :class:`Links` — signed,
expiring, single-use tokens (``escalation.approval_tokens``) the lead turns into URLs.
:meth:`ApprovalStore.decide` checks a token and who presents it, in this order, each
refusal a :class:`~escalation.verdict.Check` of stage APPROVAL with a stable code:

==================  ==================================================================
code                refused because
==================  ==================================================================
malformed           the token is not a token (detail says which part)
bad_signature       no configured key signed it (forged, or signed over other claims)
expired             the token's own expiry has passed
wrong_approval      the token names another approval
wrong_decision      a deny link used to approve, or the other way round
unknown_approval    no such approval (never requested, or past retention)
token_reused        this link was already used (checked before the state: a used link's
                    approval is always decided already, so it is the more exact reason)
already_decided     approved or denied before — the detail names the state and by whom
approval_expired    past its expiry, swept or not: nothing executes
self_approval       the approver is the requester (same kind and name) — for any actor,
                    whatever the decision-rights callback says
(callback's code)   the decision-rights callback refused; its Check is returned unchanged
unavailable         Redis failed or was slower than ``timeout_s``: nothing is decided
==================  ==================================================================

then flips PENDING → APPROVED/DENIED and spends the token's nonce in one Lua script
(``approvals.lua``) that re-checks all of the above, so two concurrent decides on one
approval give exactly one ``approved``/``denied``. :meth:`ApprovalStore.take_expired`
moves PENDING approvals past their expiry to EXPIRED and hands each to exactly one caller
across replicas; the lead pages them. Decided and expired approvals stay readable for
``retention_s`` (audit, ``hotpath report``), then Redis drops them.

If the reply of an applied decide is lost (timeout after Redis ran the script), the caller
sees ``unavailable`` while the approval is decided; :meth:`ApprovalStore.get` tells.

>>> import asyncio, redis.asyncio
>>> closed_port = redis.asyncio.Redis(host="127.0.0.1", port=1)
>>> store = ApprovalStore(closed_port, secrets=[b"k" * 32], clock=lambda: 1764132000.0,
...                       nonce=lambda: "n1")
>>> token = mint(b"k" * 32, "apr_1", "approve", expires_at=1764132600.0, nonce="n1")
>>> anyone = lambda actor, req: Check.allow(Stage.APPROVAL, "authorised")
>>> print(asyncio.run(store.decide("apr_1", token, Actor.parse("human:bob"), "approve",
...                                anyone)).check)
approval: unavailable: approval store (Redis) did not answer; nothing is decided
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal

import redis.asyncio
from redis.exceptions import RedisError

from escalation.approval_tokens import (
    Decision,
    check_secrets,
    iso_utc,
    mint,
    verify,
)
from escalation.errors import ApprovalStoreUnavailable, TokenError
from escalation.request import Actor, Request
from escalation.verdict import Check, Stage

_SCRIPT = files("escalation").joinpath("approvals.lua").read_text(encoding="utf-8")
_FAILURES = (RedisError, OSError, TimeoutError)
# A few Redis round trips; past it a human is paged rather than an API call hanging.
DEFAULT_TIMEOUT_S = 0.25
# A week outlives the weekly incident review that reads approval latency and denials.
DEFAULT_RETENTION_S = 7 * 86400.0
# Bounds one sweep's work; a sweeper that gets a full batch simply calls again.
SWEEP_BATCH = 100



# How long after an approval's expiry its links still say why they no longer work.
LINK_GRACE_S = 24 * 3600.0

class ApprovalState(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


_DECIDED: dict[Decision, ApprovalState] = {
    "approve": ApprovalState.APPROVED, "deny": ApprovalState.DENIED}


def approval_id(request_id: str) -> str:
    """The approval's id, derived from the request's: a replayed request finds the same one.

    >>> approval_id("req_0123456789abcdef") == approval_id("req_0123456789abcdef")
    True
    >>> approval_id("req_0123456789abcdef")
    'apr_2a977d2399286ea8'
    """
    return "apr_" + hashlib.sha256(f"approval:{request_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """One approval case: the request, why it needs a human, and what became of it."""

    approval_id: str
    request: Request
    created_at: float
    expires_at: float
    state: ApprovalState
    reason: str                  # why approval is needed (the policy check's detail)
    approver: str | None = None  # str(Actor) of who approved or denied
    decided_at: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"approval_id": self.approval_id, "request": self.request.to_dict(),
                "created_at": self.created_at, "expires_at": self.expires_at,
                "state": self.state.value, "reason": self.reason, "approver": self.approver,
                "decided_at": self.decided_at, "note": self.note}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PendingApproval:
        decided_at = raw.get("decided_at")
        approver = raw.get("approver")
        return cls(
            approval_id=str(raw["approval_id"]), request=Request.from_dict(raw["request"]),
            created_at=float(raw["created_at"]), expires_at=float(raw["expires_at"]),
            state=ApprovalState(raw["state"]), reason=str(raw.get("reason", "")),
            approver=None if approver is None else str(approver),
            decided_at=None if decided_at is None else float(decided_at),
            note=str(raw.get("note", "")))


@dataclass(frozen=True, slots=True)
class Links:
    """The tokens of the approve and deny links the lead puts in the page."""

    approve_token: str
    deny_token: str


@dataclass(frozen=True, slots=True)
class DecideResult:
    """The approval stage's answer; ``approval`` as read (or as decided), when known."""

    check: Check
    approval: PendingApproval | None


def _fields(a: PendingApproval) -> list[str]:
    """The Redis hash of an approval; floats as repr so every bit survives."""
    return ["approval_id", a.approval_id, "request", a.request.to_json().decode(),
            "created_at", repr(a.created_at), "expires_at", repr(a.expires_at),
            "state", a.state.value, "reason", a.reason, "approver", a.approver or "",
            "decided_at", "" if a.decided_at is None else repr(a.decided_at), "note", a.note]


def _text(v: Any) -> str:
    # The caller's client may or may not decode responses.
    return v.decode() if isinstance(v, bytes) else str(v)


def _parse(flat: Sequence[Any]) -> PendingApproval:
    text = [_text(v) for v in flat]
    h = dict(zip(text[0::2], text[1::2], strict=True))
    return PendingApproval(
        approval_id=h["approval_id"], request=Request.from_json(h["request"]),
        created_at=float(h["created_at"]), expires_at=float(h["expires_at"]),
        state=ApprovalState(h["state"]), reason=h["reason"], approver=h["approver"] or None,
        decided_at=float(h["decided_at"]) if h["decided_at"] else None, note=h["note"])


def _refuse(code: str, detail: str, aid: str, approval: PendingApproval | None = None,
            **state: Any) -> DecideResult:
    return DecideResult(Check.refuse(Stage.APPROVAL, code, detail, approval_id=aid, **state),
                        approval)


def _closed(a: PendingApproval) -> DecideResult:
    """The refusal for an approval that is no longer pending (or is past its expiry)."""
    if a.state is ApprovalState.PENDING or a.state is ApprovalState.EXPIRED:
        return _refuse("approval_expired",
                       f"approval {a.approval_id} expired at {iso_utc(a.expires_at)}; "
                       "nothing executes", a.approval_id, a)
    when = iso_utc(a.decided_at) if a.decided_at is not None else "an unknown time"
    return _refuse("already_decided",
                   f"approval {a.approval_id} was already {a.state.value} by {a.approver} "
                   f"at {when}", a.approval_id, a, state=a.state.value, approver=a.approver)


def _reused(aid: str, a: PendingApproval | None) -> DecideResult:
    return _refuse("token_reused", "this approval link was already used; each link works once",
                   aid, a)


class ApprovalStore:
    """Pending approvals shared by every replica; see the module docstring for the rules."""

    def __init__(self, redis: redis.asyncio.Redis, *, secrets: Sequence[bytes],
                 clock: Callable[[], float], nonce: Callable[[], str],
                 timeout_s: float = DEFAULT_TIMEOUT_S, prefix: str = "hotpath",
                 retention_s: float = DEFAULT_RETENTION_S) -> None:
        self._secrets = check_secrets(secrets)
        self._redis = redis
        self._clock = clock
        self._nonce = nonce
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._retention_s = retention_s
        self._pending_key = f"{prefix}:approvals:pending"
        self._script = redis.register_script(_SCRIPT)
        self.last_error: str | None = None  # why the latest Redis failure happened, for logs

    def _key(self, aid: str) -> str:
        return f"{self._prefix}:approval:{aid}"

    def _nonce_key(self, nonce: str) -> str:
        return f"{self._prefix}:approval-nonce:{nonce}"

    async def _call(self, keys: list[str], args: list[Any]) -> Any:
        async with asyncio.timeout(self._timeout_s):
            return await self._script(keys=keys, args=args)

    def _unavailable(self, e: BaseException, what: str) -> ApprovalStoreUnavailable:
        self.last_error = f"{type(e).__name__}: {e}"
        return ApprovalStoreUnavailable(f"approval store could not {what}: {self.last_error}")

    async def request(self, req: Request, *, reason: str,
                      expiry_s: float) -> tuple[PendingApproval, Links, bool]:
        """Store a pending approval for ``req`` (or find the one a replay stored).

        Returns the approval, fresh approve/deny links valid until its expiry (a replay
        gets new links to the same approval; only one decision can ever apply), and
        whether it was created now. Raises :class:`ApprovalStoreUnavailable`.
        """
        if not (math.isfinite(expiry_s) and expiry_s > 0):
            raise ValueError(
                f"approval expiry_s must be a positive finite number of seconds, got {expiry_s}")
        now = self._clock()
        new = PendingApproval(approval_id(req.request_id), req, now, now + expiry_s,
                              ApprovalState.PENDING, reason)
        keys = [self._key(new.approval_id), self._pending_key]
        try:
            reply = await self._call(keys, ["create", expiry_s + self._retention_s,
                                            *_fields(new)])
        except _FAILURES as e:
            raise self._unavailable(e, "store the approval") from e
        created = reply[0] == 1
        approval = new if created else _parse(reply[1:])
        return approval, self._links(approval), created

    def _links(self, a: PendingApproval) -> Links:
        key = self._secrets[0]
        # The links outlive the approval by a grace period, so a late click is told
        # "approval expired" (410: the case was paged, nothing ran) by the approval's own
        # state, not "token expired"; the approval's deadline is still what counts.
        until = a.expires_at + LINK_GRACE_S
        return Links(mint(key, a.approval_id, "approve", until, self._nonce()),
                     mint(key, a.approval_id, "deny", until, self._nonce()))

    async def decide(self, approval_id: str, token: str, approver: Actor,
                     decision: Literal["approve", "deny"],
                     may_approve: Callable[[Actor, Request], Check],
                     note: str = "") -> DecideResult:
        """Apply one approve/deny link presented by ``approver``; never raises for Redis."""
        now = self._clock()
        aid = approval_id
        try:
            claims = verify(self._secrets, token, now)
        except TokenError as e:
            return _refuse(e.code, e.detail, aid)
        if claims.approval_id != aid:
            return _refuse("wrong_approval",
                           f"token is for approval {claims.approval_id}, not {aid}", aid)
        if claims.decision != decision:
            return _refuse("wrong_decision",
                           f"token is a {claims.decision} link, not {decision}", aid)
        nonce_key = self._nonce_key(claims.nonce)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(self._key(aid))
                    pipe.exists(nonce_key)
                    raw, used = await pipe.execute()
        except _FAILURES as e:
            return self._decide_unavailable(e, aid)
        if not raw:
            return _refuse("unknown_approval",
                           f"no approval {aid} (never requested, or past its retention)", aid)
        current = _parse([x for kv in raw.items() for x in kv])
        if used:
            return _reused(aid, current)
        if current.state is not ApprovalState.PENDING or now >= current.expires_at:
            return _closed(current)
        requester = current.request.actor
        if (approver.kind, approver.name) == (requester.kind, requester.name):
            return _refuse("self_approval",
                           f"{approver} requested {aid}; a requester cannot approve or deny "
                           "its own request", aid, current)
        rights = may_approve(approver, current.request)
        if not rights.ok:
            return DecideResult(rights, current)
        return await self._apply(current, nonce_key, claims.expires_at, approver, decision,
                                 note, now)

    async def _apply(self, current: PendingApproval, nonce_key: str, token_exp: float,
                     approver: Actor, decision: Decision, note: str,
                     now: float) -> DecideResult:
        aid = current.approval_id
        state = _DECIDED[decision]
        args = ["decide", repr(now), state.value, str(approver), repr(now), note,
                (token_exp - now) * 1000.0, self._retention_s]
        try:
            reply = await self._call([self._key(aid), self._pending_key, nonce_key], args)
        except _FAILURES as e:
            return self._decide_unavailable(e, aid)
        code = _text(reply[0])
        if code == "unknown_approval":
            return _refuse(code, f"no approval {aid} (never requested, or past its retention)",
                           aid)
        after = _parse(reply[1:])
        if code == "token_reused":
            return _reused(aid, after)
        if code != "applied":
            return _closed(after)
        verb = {"approve": "approved", "deny": "denied"}[decision]
        check = Check.allow(Stage.APPROVAL, verb, f"{aid} {verb} by {approver}",
                            approval_id=aid, approver=str(approver), decided_at=now,
                            latency_s=now - after.created_at)
        return DecideResult(check, after)

    def _decide_unavailable(self, e: BaseException, aid: str) -> DecideResult:
        self.last_error = f"{type(e).__name__}: {e}"
        # One detail for refused connections, resets and timeouts alike (which one a
        # dead server gives depends on the client's retry jitter); the error says which.
        return _refuse("unavailable", "approval store (Redis) did not answer; nothing is decided",
                       aid, error=self.last_error)

    async def get(self, approval_id: str) -> PendingApproval | None:
        """The approval in any state, or None; raises :class:`ApprovalStoreUnavailable`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._redis.hgetall(self._key(approval_id))
        except _FAILURES as e:
            raise self._unavailable(e, "read the approval") from e
        return _parse([x for kv in raw.items() for x in kv]) if raw else None

    async def pending(self) -> list[PendingApproval]:
        """Every approval still PENDING, soonest expiry first (swept or not yet)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                ids = await self._redis.zrange(self._pending_key, 0, -1)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for aid in ids:
                        pipe.hgetall(self._key(_text(aid)))
                    raws = await pipe.execute()
        except _FAILURES as e:
            raise self._unavailable(e, "list pending approvals") from e
        found = [_parse([x for kv in raw.items() for x in kv]) for raw in raws if raw]
        return [a for a in found if a.state is ApprovalState.PENDING]

    async def take_expired(self) -> list[PendingApproval]:
        """Move PENDING approvals past their expiry to EXPIRED; each goes to one caller only.

        Raises :class:`ApprovalStoreUnavailable` when nothing could be taken; a failure
        part-way returns what was already taken (those are EXPIRED now: they must be paged).
        """
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                ids = await self._redis.zrangebyscore(self._pending_key, "-inf", repr(now),
                                                      start=0, num=SWEEP_BATCH)
        except _FAILURES as e:
            raise self._unavailable(e, "sweep expired approvals") from e
        taken: list[PendingApproval] = []
        for raw_id in ids:
            aid = _text(raw_id)
            try:
                reply = await self._call([self._key(aid), self._pending_key],
                                         ["expire", repr(now), self._retention_s, aid])
            except _FAILURES as e:
                if taken:
                    self.last_error = f"{type(e).__name__}: {e}"
                    return taken
                raise self._unavailable(e, "sweep expired approvals") from e
            if reply[0] == 1:
                taken.append(_parse(reply[1:]))
        return taken
