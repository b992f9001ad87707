"""What the control plane writes down: audit bodies, the executed request, later pages.

Pure builders shared by :mod:`escalation.control` and :mod:`escalation.followup`, so every
record about one request names it the same way (``where``, ``request_id``, the config
version it was decided under).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from escalation.executors.base import ActionRequest
from escalation.page import Page, request_page
from escalation.request import Request
from escalation.submission import Submission
from escalation.verdict import Stage


def where(req: Request) -> dict[str, str]:
    return {"service": req.service, "environment": req.environment, "region": req.region,
            "target": req.target}


def execution_request(req: Request, *, rollback_of: str | None = None) -> ActionRequest:
    """What the action runner executes: the action's own params, plus the request for the
    follow-up (outcome audit, verification, failure page) after any restart."""
    return ActionRequest(
        action=req.action, target=req.target, service=req.service,
        finding_id=req.finding_id or "", idempotency_key=req.idempotency_key,
        rule=req.actor.name, params=dict(req.params),
        context={"request": req.to_dict(), "rollback_of": rollback_of},
    )


def event_page(req: Request, reason: str, now: float, event: str,
               links: dict[str, str] | None = None) -> Page:
    """A later page about ``req`` (approval asked, expired, not run, failed, no recovery).

    One request can be paged several times, and the sender delivers one page per dedup key
    (a second page under a key already delivered is dropped as a duplicate), so each event
    gets its own key; it stays deterministic, so a replay of the same event pages once.
    The first-contact pages (a store down) keep the request's plain key.

    >>> from escalation.request import Actor, ActorKind
    >>> req = Request(Actor(ActorKind.AGENT, "copilot"), "failover_region", "checkout",
    ...               "production", "checkout", "k1", requested_at=5.0)
    >>> event_page(req, "approval expired unanswered", 6.0, "expired").dedup_key
    'hotpath-req_6ab9f1eb8f7d3388:expired'
    """
    page = request_page(req, reason, now, links)
    return replace(page, dedup_key=f"{page.dedup_key}:{event}")


def request_body(config_version: str, s: Submission, now: float) -> dict[str, Any]:
    """The audit "request" record: the request, every check, and the authorization it ran
    under (the policy rule, the limits state, the approval and who gave it)."""
    limits: dict[str, Any] = {}
    rule = None
    approval_id, approver = s.approval_id, None
    for c in s.checks:
        if c.stage is Stage.LIMITS:
            limits = c.state
        if c.code == "allowed":
            rule = c.state.get("rule")
        if c.code == "approved":
            # After a decide the submission is rebuilt without the id: the check has it.
            approver = c.state.get("approver")
            approval_id = approval_id or c.state.get("approval_id")
    return {
        "request": s.request.to_dict(), "decided_at": now,
        "config_version": config_version, "where": where(s.request),
        "checks": [c.to_dict() for c in s.checks], "result": s.status.value,
        "authorization": {"rule": rule, "limits": limits, "approval_id": approval_id,
                          "approver": approver},
    }


def intent_body(config_version: str, req: Request, now: float) -> dict[str, Any]:
    """The audit "intent" record, written (fsynced) before anything can execute it."""
    return {"request_id": req.request_id, "action": req.action, "target": req.target,
            "actor": str(req.actor), "at": now, "params": dict(req.params),
            "idempotency_key": req.idempotency_key,
            "config_version": config_version, "where": where(req)}
