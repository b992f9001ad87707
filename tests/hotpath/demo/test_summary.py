"""The summary's readers of the audit log, the incident expectations and the problem list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest

from hotpath.demo.incidents import (
    EXPECT_ACT,
    EXPECT_ACT_AFTER_APPROVAL,
    EXPECT_PAGE_BUDGET,
    EXPECT_PAGE_NO_RULE,
    Incident,
)
from hotpath.demo.oncall import OnCallAnswer
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.demo.summary import (
    Summary,
    actions_from,
    approvals_from,
    expectation,
    problems,
)

SHIP = {"service": "shipping", "target": "service/shipping"}


def rec(kind: str, **body: Any) -> dict[str, Any]:
    return {"kind": kind, "body": body}


def requested(aid: str, rid: str, at: float) -> dict[str, Any]:
    return rec("approval", event="requested", approval_id=aid, request_id=rid,
               actor="automation:failover-shipping", at=at, requested_at=at,
               reason="risk high >= high", where=SHIP)


def decided(aid: str, event: str, at: float, actor: str | None = "human:alice",
            **extra: Any) -> dict[str, Any]:
    return rec("approval", event=event, approval_id=aid, actor=actor, at=at, **extra)


REQUEST = rec("request", request={"request_id": "req_1", "action": "failover_region"})


def test_approvals_from_every_ending() -> None:
    records = [
        REQUEST,
        requested("apr_1", "req_1", 100.0),
        decided("apr_1", "refused", 100.5, "human:bob", code="not_authorized"),
        decided("apr_1", "approved", 101.75),
        requested("apr_2", "req_2", 200.0),
        decided("apr_2", "denied", 230.0),
        requested("apr_3", "req_3", 300.0),
        decided("apr_3", "expired", 900.0, None),
        requested("apr_4", "req_4", 400.0),
        decided("apr_0", "approved", 50.0),  # requested before this log began: skipped
    ]
    got = [(a["approval_id"], a["action"], a["state"], a["decided_by"], a["latency_s"],
            a["refusals"]) for a in approvals_from(records)]
    assert got == [
        ("apr_1", "failover_region", "approved", "human:alice", 1.75, ["not_authorized"]),
        ("apr_2", None, "denied", "human:alice", 30.0, []),
        ("apr_3", None, "expired", None, None, []),
        ("apr_4", None, "pending", None, None, []),
    ]
    first = approvals_from(records)[0]
    assert (first["requested_by"], first["service"], first["target"], first["reason"]) == (
        "automation:failover-shipping", "shipping", "service/shipping", "risk high >= high")


def intent(rid: str, actor: str, service: str) -> dict[str, Any]:
    return rec("intent", request_id=rid, actor=actor, action="a", target=f"t/{service}",
               idempotency_key=f"k-{rid}", where={"service": service})


def test_actions_from_joins_outcome_verification_and_approval() -> None:
    records = [
        REQUEST, requested("apr_1", "req_1", 100.0), decided("apr_1", "approved", 102.0),
        intent("req_1", "automation:failover-shipping", "shipping"),
        rec("outcome", request_id="req_1", result="success"),
        intent("req_2", "automation:restart-checkout", "checkout"),
        rec("outcome", request_id="req_2", result="success"),
        rec("verification", request_id="req_2", result="recovered"),
        intent("req_3", "agent:copilot", "payments"),
        rec("outcome", request_id="req_3", result="failed"),
        intent("req_4", "human:bob", "search"),
    ]
    got = [(a["request_id"], a["rule"], a["service"], a["outcome"], a["verification"],
            a["approval_id"], a["approver"])
           for a in actions_from(records, approvals_from(records))]
    assert got == [
        ("req_1", "failover-shipping", "shipping", "succeeded", None, "apr_1", "human:alice"),
        ("req_2", "restart-checkout", "checkout", "succeeded", "recovered", None, None),
        ("req_3", None, "payments", "failed", None, None, None),
        ("req_4", None, "search", "pending", None, None, None),
    ]


Rows = Sequence[dict[str, Any]]


def summary(*, actions: Rows = (), approvals: Rows = (), pages: Rows = (),
            healed: tuple[str, ...] = ()) -> Summary:
    events = [{"kind": "healed", "incident": name} for name in healed]
    return Summary(45.0, 0, {}, [], list(actions), list(approvals), list(pages), {}, events,
                   {"ok": True, "records": 0, "reason": None})


SHIPPING = Incident("shipping-queue", "shipping", "queue_depth", 16, 14, 8,
                    expect=EXPECT_ACT_AFTER_APPROVAL)
APPROVED = {"service": "shipping", "state": "approved"}
LINK_PAGE = {"service": "shipping", "reasons": ["rule matched", "approval required"],
             "links": {"approve": "http://api/v1/approvals/apr_1/approve?token=t"}}
ACTED = {"service": "shipping", "outcome": "succeeded", "approval_id": "apr_1"}


@pytest.mark.parametrize(
    ("s", "detail"),
    [
        (summary(), "no approval requested"),
        (summary(approvals=[{**APPROVED, "state": "pending"}]), "no page with an approve link"),
        (summary(approvals=[{**APPROVED, "state": "expired"}], pages=[LINK_PAGE]),
         "approval not granted (expired)"),
        (summary(approvals=[APPROVED], pages=[LINK_PAGE],
                 actions=[{**ACTED, "outcome": "failed"}]),
         "approved, but no successful action after it"),
        (summary(approvals=[APPROVED], pages=[LINK_PAGE], actions=[{**ACTED, "approval_id": None}]),
         "approved, but no successful action after it"),
        (summary(approvals=[APPROVED], pages=[LINK_PAGE], actions=[ACTED]),
         "acted, but the fleet was not healed"),
        (summary(approvals=[APPROVED], pages=[LINK_PAGE], actions=[ACTED],
                 healed=("shipping-queue",)), ""),
    ],
)
def test_act_after_approval_needs_every_step(s: Summary, detail: str) -> None:
    assert expectation(SHIPPING, s) == {
        "incident": "shipping-queue", "service": "shipping", "expect": EXPECT_ACT_AFTER_APPROVAL,
        "met": not detail, "detail": detail}


@pytest.mark.parametrize(
    ("expect", "s", "detail"),
    [
        (EXPECT_ACT, summary(), "no successful action"),
        (EXPECT_ACT, summary(actions=[{**ACTED, "approval_id": None}], healed=("x",)), ""),
        (EXPECT_PAGE_NO_RULE, summary(pages=[{**LINK_PAGE, "service": "search"}]),
         "no page 'no remediation rule'"),
        (EXPECT_PAGE_NO_RULE,
         summary(pages=[{"service": "shipping", "reasons": ["no remediation rule"]}]), ""),
        (EXPECT_PAGE_BUDGET, summary(pages=[LINK_PAGE]), "no page 'budget exhausted'"),
        (EXPECT_PAGE_BUDGET, summary(pages=[{"service": "shipping",
                                             "reasons": ["rule matched", "budget exhausted"]}]),
         ""),
    ],
)
def test_other_expectations(expect: str, s: Summary, detail: str) -> None:
    inc = Incident("x", "shipping", "queue_depth", 16, 14, 8, expect=expect)
    assert (expectation(inc, s)["met"], expectation(inc, s)["detail"]) == (not detail, detail)


def test_missing_lists_unmet_incidents_and_a_broken_chain() -> None:
    s = summary()
    s.incidents = [expectation(SHIPPING, s)]
    s.audit = {"ok": False, "records": 3, "reason": "line 2: TAMPERED"}
    assert s.missing == ["shipping-queue: no approval requested",
                         "audit chain broken: line 2: TAMPERED"]
    assert s.to_dict()["expectations_missing"] == s.missing


async def test_problems_count_refused_requests_and_approvals() -> None:
    async with ActionReceiver(secret=b"k" * 32) as actions, PageReceiver() as pages, \
            aiohttp.ClientSession() as session:
        async with session.post(actions.url, json={"action": "x"},
                                headers={"Idempotency-Key": "k1"}) as resp:
            assert resp.status == 401
        async with session.post(pages.url, json={"dedup_key": 1}) as resp:
            assert resp.status == 400
    refused = OnCallAnswer("apr_2", 410, "approval_expired", "expired at 12", 1.5, "alice")
    fine = OnCallAnswer("apr_1", 200, "approved", "", 1.5, "alice", "human:alice", "a", "t")
    assert problems(actions, pages, [fine, refused]) == [
        "action receiver answered 401 to k1: missing header",
        "page receiver answered 400: wrong type: expected string (field dedup_key)",
        "on-call alice could not approve apr_2: 410 approval_expired — expired at 12",
    ]
