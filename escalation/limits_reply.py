"""Reading the limits script's reply: the counts it saw, turned into a check with a reason.

:func:`parse_reply` refuses anything the script cannot have said (a store we cannot trust is
``UNAVAILABLE``); :func:`outcome` builds the check a person reads ("action/service 2/3 per
1h; in flight 1/2 on payments") and the state the audit keeps (every limit's used/limit).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from escalation.limits_spec import (
    REFUSAL_CODES,
    LimitOutcome,
    LimitRequest,
    Limits,
    LimitStatus,
)
from escalation.verdict import Check, Stage


@dataclass(frozen=True, slots=True)
class Reading:
    """What the script read, before this claim (its reply, checked)."""

    status: LimitStatus
    code: str
    as_used: int
    svc_used: int
    glob_used: int
    in_flight_service: int
    in_flight_global: int
    last_target_at: float | None
    targets_touched: int
    target_touched: bool
    services_touched: int
    service_touched: bool


def parse_reply(reply: Any) -> Reading | None:
    """The script's reply, or ``None`` for anything the script cannot have said.

    >>> parse_reply([b"refused", b"cooldown", 0, 0, 0, 0, 0, b"1764132000.5", 1, 1, 1, 1]).code
    'cooldown'
    >>> parse_reply([b"claimed", b"budget_global", 0, 0, 0, 0, 0, b"", 0, 0, 0, 0]) is None
    True
    """
    try:
        word, code, *counts, last, touched, seen, services, service_seen = (
            x.decode() if isinstance(x, bytes) else x for x in reply
        )
        status = LimitStatus(word)
        last_at = float(last) if last != "" else None
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    numbers = [*counts, touched, seen, services, service_seen]
    if len(counts) != 5 or not all(type(n) is int and n >= 0 for n in numbers):
        return None
    expected = {LimitStatus.CLAIMED: ("claimed",), LimitStatus.DUPLICATE: ("duplicate",),
                LimitStatus.REFUSED: REFUSAL_CODES}.get(status, ())
    if code not in expected or (last_at is not None and not math.isfinite(last_at)):
        return None
    as_used, svc_used, glob_used, in_service, in_all = (int(n) for n in counts)
    return Reading(status, str(code), as_used, svc_used, glob_used, in_service, in_all, last_at,
                   int(touched), bool(seen), int(services), bool(service_seen))

def span(seconds: float) -> str:
    """A window length as people say it.

    >>> span(3600.0), span(5400.0), span(86400.0), span(90.0), span(0.5)
    ('1h', '90m', '1d', '90s', '0.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _state(item: LimitRequest, r: Reading, limits: Limits, now: float) -> dict[str, Any]:
    """used/limit of every configured limit, keyed by its refusal code; a claim counts
    itself (the counts after it), any other answer the counts as read."""
    add = 1 if r.status is LimitStatus.CLAIMED else 0
    state: dict[str, Any] = {}
    for code, window, used in (("budget_action_service", item.budget(limits), r.as_used),
                               ("budget_service", limits.per_service, r.svc_used),
                               ("budget_global", limits.global_, r.glob_used)):
        if window is not None:
            state[code] = {"used": used + add, "limit": window.limit, "window_s": window.window_s}
    for code, limit, used in (
        ("concurrency_service", limits.concurrency_per_service, r.in_flight_service),
        ("concurrency_global", limits.concurrency_global, r.in_flight_global),
    ):
        if limit is not None:
            state[code] = {"used": used + add, "limit": limit}
    if limits.cooldown_s > 0:
        last = now if add else r.last_target_at
        state["cooldown"] = {"cooldown_s": limits.cooldown_s, "last_at": last,
                             "free_at": None if last is None else last + limits.cooldown_s}
    if limits.blast_fraction is not None:
        state["blast_radius"] = {
            "used": r.targets_touched + (add and not r.target_touched),
            "targets": item.service_targets, "fraction": limits.blast_fraction,
            "window_s": limits.blast_window_s}
    if limits.max_services is not None:
        state["blast_services"] = {
            "used": r.services_touched + (add and not r.service_touched),
            "limit": limits.max_services, "window_s": limits.blast_window_s}
    return state


def _claimed_detail(item: LimitRequest, state: dict[str, Any]) -> str:
    """One line of every configured limit's count after the claim."""
    labels = {"budget_action_service": "action/service", "budget_service": "service",
              "budget_global": "global"}
    parts = [f"{label} {state[code]['used']}/{state[code]['limit']} per "
             f"{span(state[code]['window_s'])}"
             for code, label in labels.items() if code in state]
    where = {"concurrency_service": f"on {item.request.service}", "concurrency_global": "in all"}
    parts += [f"in flight {state[code]['used']}/{state[code]['limit']} {text}"
              for code, text in where.items() if code in state]
    if "cooldown" in state:
        parts.append(f"cooldown {span(state['cooldown']['cooldown_s'])}")
    if "blast_radius" in state:
        b = state["blast_radius"]
        parts.append(f"blast {b['used']}/{b['targets']} targets per {span(b['window_s'])}")
    if "blast_services" in state:
        b = state["blast_services"]
        parts.append(f"services {b['used']}/{b['limit']} per {span(b['window_s'])}")
    return "; ".join(parts) or "no limits configured"


def _refusal_detail(item: LimitRequest, r: Reading, limits: Limits, now: float) -> str:
    """Why the script refused, in the words a page or ``policy test`` shows."""
    req = item.request
    budget = item.budget(limits)
    if r.code == "duplicate":
        return f"idempotency key {req.idempotency_key!r} was claimed before; nothing new runs"
    if r.code == "budget_action_service" and budget is not None:
        return (f"{req.action} on {req.service}: {r.as_used}/{budget.limit} per "
                f"{span(budget.window_s)} used")
    if r.code == "budget_service" and limits.per_service is not None:
        w = limits.per_service
        return f"actions on {req.service}: {r.svc_used}/{w.limit} per {span(w.window_s)} used"
    if r.code == "budget_global" and limits.global_ is not None:
        w = limits.global_
        return f"all actions: {r.glob_used}/{w.limit} per {span(w.window_s)} used"
    if r.code == "concurrency_service":
        return (f"{r.in_flight_service}/{limits.concurrency_per_service} actions in flight "
                f"on {req.service}")
    if r.code == "concurrency_global":
        return f"{r.in_flight_global}/{limits.concurrency_global} actions in flight in all"
    if r.code == "cooldown" and r.last_target_at is not None:
        free_at = r.last_target_at + limits.cooldown_s
        return (f"{req.service}/{req.target} acted on at {_utc(r.last_target_at)}; cooldown "
                f"{span(limits.cooldown_s)}; free again at {_utc(free_at)} "
                f"(in {math.ceil(free_at - now)}s)")
    if r.code == "blast_radius":
        touched = r.targets_touched + (not r.target_touched)
        return (f"acting on {req.target} would touch {touched}/{item.service_targets} targets "
                f"of {req.service} within {span(limits.blast_window_s)}, more than "
                f"{limits.blast_fraction:g} of them")
    if r.code == "blast_services":
        touched = r.services_touched + (not r.service_touched)
        return (f"acting on {req.service} would touch {touched} services within "
                f"{span(limits.blast_window_s)}, more than {limits.max_services}")
    # Only a config reloaded between the script's answer and here lands on this line.
    return f"refused by {r.code}"


def unavailable(error: str) -> LimitOutcome:
    detail = f"limits store unavailable ({error}); failing closed"
    return LimitOutcome(LimitStatus.UNAVAILABLE,
                        Check.refuse(Stage.LIMITS, "unavailable", detail, error=error))


def outcome(item: LimitRequest, reading: Reading, limits: Limits, now: float,
            *, peek: bool = False) -> LimitOutcome:
    """The stage's answer for one reading; a peek's ``claimed`` means "would claim"."""
    state = _state(item, reading, limits, now)
    if peek:
        state["peek"] = True
    if reading.status is LimitStatus.CLAIMED:
        check = Check(True, Stage.LIMITS, "claimed", _claimed_detail(item, state), state)
    else:
        detail = _refusal_detail(item, reading, limits, now)
        check = Check(False, Stage.LIMITS, reading.code, detail, state)
    return LimitOutcome(reading.status, check)
