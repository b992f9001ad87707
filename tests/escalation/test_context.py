"""The page context: exact dicts for the situations an on-call engineer meets."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import orjson

from escalation.approval_tokens import iso_utc
from escalation.catalogue import ServiceSpec
from escalation.changes import ChangeEvent
from escalation.context import (
    Automation,
    ContextSettings,
    automation_of,
    build_context,
)
from escalation.decision import (
    Decision,
    DecisionContext,
    RemediationRule,
    decide,
    request_for,
    settle,
)
from escalation.finding import Finding, finding_id, series_key
from escalation.page import Page
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Check, Stage

T0 = 1_764_132_000.0  # 2025-11-26T04:40:00Z
NOW = T0 + 5
CONSOLE = "https://hotpath.example/"
CHECKOUT = ServiceSpec("checkout", targets=4, regions=("eu-west-1",), team="payments",
                       runbook="https://runbooks.example/checkout")
NAN = math.nan


def finding(service: str = "checkout", metric: str = "error_ratio", ts: float = T0,
            value: float = 0.21, baseline: float = 0.004, region: str = "eu-west-1",
            first_seen: float | None = None, recent: tuple[float, ...] = (),
            confidence: float = 0.97) -> Finding:
    labels = {"region": region} if region else {}
    key = series_key(service, metric, labels)
    return Finding(finding_id(key, ts), key, service, metric, labels, ts, value, baseline,
                   12.3, confidence, ("ewma", "mad"), recent=recent, first_seen=first_seen)


F = finding(first_seen=T0 - 120, recent=(0.004, 0.005, 0.004, 0.09, 0.21))
NO_RULE = Automation(covered=False, did=None, why_not="no remediation rule")
FAILOVER = RemediationRule("regional-failover", action="failover_region",
                           metric="error_ratio", min_confidence=0.9,
                           target="region/{region}")
CTX = DecisionContext(page_threshold=0.7, rules=(FAILOVER,))


def plain_dict(**changes: Any) -> dict[str, Any]:
    """The context of F with no rule, no changes and nothing correlated."""
    out: dict[str, Any] = {
        "what": {"service": "checkout", "metric": "error_ratio",
                 "labels": {"region": "eu-west-1"}},
        "since": "2025-11-26T04:38:00Z",
        "current": 0.21,
        "baseline": 0.004,
        "deviation": 12.3,
        "confidence": 0.97,
        "detectors": ["ewma", "mad"],
        "sparkline": " " * 25 + "▁▁▁▄█",
        "recent": [0.004, 0.005, 0.004, 0.09, 0.21],
        "chart_url": "https://hotpath.example/chart?series=checkout%7Cerror_ratio%7C"
                     "region%3Deu-west-1",
        "correlated": [],
        "correlated_more": 0,
        "changes": [],
        "automation": {"did": None, "why_not": "no remediation rule", "rule": None,
                       "action": None, "target": None, "status": None, "approval": None},
        "owner": {"team": "payments"},
        "runbook": "https://runbooks.example/checkout",
        "suggested": [
            "no automation covers error_ratio on checkout: consider a remediation rule",
            "check the runbook: https://runbooks.example/checkout",
        ],
    }
    out.update(changes)
    return out


def test_plain_page() -> None:
    ctx = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, console_url=CONSOLE)
    assert ctx.to_dict() == plain_dict()
    assert list(ctx.to_dict()) == list(plain_dict())  # stable key order


def test_plain_page_from_the_decision_and_into_the_page() -> None:
    d = decide(F, DecisionContext(page_threshold=0.7))
    ctx = build_context(F, automation_of(d), now=NOW, owner=CHECKOUT, console_url=CONSOLE)
    assert ctx.to_dict() == plain_dict()
    # JSON-able as is, and it survives the page's own round trip.
    page = Page.from_json(orjson.dumps({**_page_dict(), "context": ctx.to_dict()}))
    assert page.context == plain_dict()


def _page_dict() -> dict[str, Any]:
    return {"dedup_key": "hotpath-x", "summary": "s", "severity": "critical",
            "service": "checkout", "metric": "error_ratio", "labels": {}, "value": 0.21,
            "baseline": 0.004, "deviation": 12.3, "confidence": 0.97, "detectors": [],
            "reasons": [], "recent": [], "finding_id": "x", "ts": T0, "created": NOW,
            "action": None}


def test_unknown_service_without_console() -> None:
    f = finding(service="search", region="", recent=(1.0,))
    ctx = build_context(f, NO_RULE, now=NOW, owner=ServiceSpec("search"))
    d = ctx.to_dict()
    assert (d["what"], d["since"], d["chart_url"], d["owner"], d["runbook"]) == (
        {"service": "search", "metric": "error_ratio", "labels": {}},
        "2025-11-26T04:40:00Z", "", {"team": ""}, "")
    assert d["suggested"] == [
        "no automation covers error_ratio on search: consider a remediation rule",
        "no runbook for search: add one to the service catalogue",
        "no owner team for search: add one to the service catalogue",
    ]


def _pending(d: Decision) -> Submission:
    req = request_for(d, now=NOW)
    wait = Check.allow(Stage.APPROVAL, "pending",
                       "approval apr_1 requested; expires at 1764132905", approval_id="apr_1")
    checks = (Check.allow(Stage.POLICY, "approval_required", "risk high"), wait)
    return Submission(req, SubmitStatus.PENDING_APPROVAL, checks, "apr_1", T0 + 905,
                      "tok-a", "tok-d")


def test_approval_pending() -> None:
    d = decide(F, CTX)
    settled = settle(d, _pending(d))
    links = {"approve": "https://hotpath.example/v1/approvals/apr_1/approve?token=tok-a",
             "deny": "https://hotpath.example/v1/approvals/apr_1/deny?token=tok-d"}
    ctx = build_context(F, automation_of(settled, links), now=NOW, owner=CHECKOUT,
                        console_url=CONSOLE)
    assert ctx.to_dict() == plain_dict(
        automation={
            "did": "requested failover_region on region/eu-west-1; waiting for approval",
            "why_not": "rule matched; approval required (approval: pending: approval apr_1 "
                       "requested; expires at 1764132905)",
            "rule": "regional-failover", "action": "failover_region",
            "target": "region/eu-west-1", "status": "pending_approval",
            "approval": {**links, "expires": "2025-11-26T04:55:05Z"}},
        suggested=[
            "approve or deny the pending failover_region on region/eu-west-1 "
            "(expires in 15 min)",
            "check the runbook: https://runbooks.example/checkout",
        ])


def test_approval_pending_without_links_has_no_approval_to_offer() -> None:
    d = decide(F, CTX)
    auto = automation_of(settle(d, _pending(d)), links={})
    assert auto.approval is None and auto.status == "pending_approval"


def test_recent_deploy() -> None:
    changes = [
        ChangeEvent("deploy", "checkout", T0 - 300, "ci", "v1.4.2", "bump payment client"),
        ChangeEvent("config", "checkout", T0 - 1800, "alice", "", "pool size 20 -> 5"),
        ChangeEvent("deploy", "search", T0 - 200, "ci", "v9"),      # another service
        ChangeEvent("flag", "checkout", T0 + 60, "bob"),            # after the point paged
        ChangeEvent("deploy", "checkout", T0 - 120 - 3601, "ci", "v1.4.0"),  # too early
    ]
    ctx = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, console_url=CONSOLE,
                        changes=changes)
    assert ctx.to_dict() == plain_dict(
        changes=[
            {"kind": "deploy", "service": "checkout", "ts": T0 - 300,
             "at": "2025-11-26T04:35:00Z", "actor": "ci", "version": "v1.4.2",
             "description": "bump payment client", "before_s": 180.0},
            {"kind": "config", "service": "checkout", "ts": T0 - 1800,
             "at": "2025-11-26T04:10:00Z", "actor": "alice", "version": "",
             "description": "pool size 20 -> 5", "before_s": 1680.0},
        ],
        suggested=[
            "a deploy of checkout v1.4.2 went out 3 min before the anomaly: "
            "consider rolling it back",
            "no automation covers error_ratio on checkout: consider a remediation rule",
            "check the runbook: https://runbooks.example/checkout",
        ])


def test_a_config_change_after_the_anomaly_began_is_offered_for_revert() -> None:
    change = ChangeEvent("flag", "checkout", T0 - 60, "bob", "", "new_pricing on")
    ctx = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, changes=[change])
    assert ctx.suggested[0] == ("a flag change to checkout (new_pricing on) was made 60 s "
                                "after the anomaly began: consider reverting it")
    assert ctx.to_dict()["changes"][0]["before_s"] == -60.0


def test_changes_are_capped_newest_first() -> None:
    changes = [ChangeEvent("deploy", "checkout", T0 - 60 * i, "ci", f"v{i}") for i in range(8)]
    ctx = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, changes=changes)
    assert [c["version"] for c in ctx.to_dict()["changes"]] == ["v0", "v1", "v2", "v3", "v4"]


def test_correlated_findings_over_the_cap() -> None:
    others = [finding(service=f"svc{i:02d}", metric="latency_p99_ms", ts=T0 - 600 + 30 * i,
                      value=100.0 + i, baseline=50.0) for i in range(12)]
    same_service = [finding(metric="http_5xx", ts=T0 - 30, value=7.0, baseline=1.0),
                    finding(metric="http_5xx", ts=T0 - 90, value=5.0, baseline=1.0)]
    unrelated = [
        finding(service="search", metric="latency_p99_ms", region="us-east-1"),  # region
        finding(service="svc99", metric="cpu", ts=T0 - 901),                 # too early
        finding(value=0.3, ts=T0 - 60),                                      # same series
    ]
    ctx = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, console_url=CONSOLE,
                        candidates=[*others, *same_service, *unrelated])
    expected = [{"service": f"svc{i:02d}", "metric": "latency_p99_ms", "region": "eu-west-1",
                 "value": 100.0 + i, "baseline": 50.0,
                 "since": iso_utc(T0 - 600 + 30 * i)} for i in range(10)]
    assert ctx.to_dict() == plain_dict(
        correlated=expected, correlated_more=3,
        suggested=[
            "13 other series in 12 other services (svc00, svc01, svc02, …) are anomalous "
            "too: look for a shared cause first",
            "no automation covers error_ratio on checkout: consider a remediation rule",
            "check the runbook: https://runbooks.example/checkout",
        ])
    # The same-service series is one entry: first seen at its earliest, values at its latest.
    full = build_context(F, NO_RULE, now=NOW, owner=CHECKOUT, candidates=same_service,
                         settings=ContextSettings(max_correlated=10))
    assert full.to_dict()["correlated"] == [
        {"service": "checkout", "metric": "http_5xx", "region": "eu-west-1", "value": 7.0,
         "baseline": 1.0, "since": "2025-11-26T04:38:30Z"}]
    assert full.suggested[0] == ("1 other metric of checkout is anomalous too: "
                                 "treat them as one incident")


def test_nan_baseline() -> None:
    f = replace(F, baseline=NAN, deviation=NAN, recent=(NAN, 0.1, 0.2), first_seen=None)
    other = finding(metric="http_5xx", baseline=NAN, value=3.0)
    ctx = build_context(f, NO_RULE, now=NOW, owner=CHECKOUT, console_url=CONSOLE,
                        candidates=[other])
    d = ctx.to_dict()
    assert d == plain_dict(
        since="2025-11-26T04:40:00Z", baseline=None, deviation=None,
        sparkline=" " * 27 + "·▁█", recent=[None, 0.1, 0.2],
        correlated=[{"service": "checkout", "metric": "http_5xx", "region": "eu-west-1",
                     "value": 3.0, "baseline": None, "since": "2025-11-26T04:40:00Z"}],
        suggested=[
            "1 other metric of checkout is anomalous too: treat them as one incident",
            "no automation covers error_ratio on checkout: consider a remediation rule",
            "no baseline yet (a new or sparse series): judge the value against the "
            "sparkline and the chart",
            "check the runbook: https://runbooks.example/checkout",
        ])
    assert b"NaN" not in orjson.dumps(d)


def test_budget_refusal() -> None:
    d = decide(F, CTX)
    refused = Check.refuse(Stage.LIMITS, "budget_action_service", "failover_region/checkout 1/1")
    settled = settle(d, Submission(request_for(d, NOW), SubmitStatus.REFUSED, (refused,)))
    ctx = build_context(F, automation_of(settled), now=NOW, owner=CHECKOUT)
    assert ctx.to_dict()["automation"] == {
        "did": "requested failover_region on region/eu-west-1; refused",
        "why_not": "rule matched; budget exhausted "
                   "(limits: budget_action_service: failover_region/checkout 1/1)",
        "rule": "regional-failover", "action": "failover_region",
        "target": "region/eu-west-1", "status": "refused", "approval": None}
    assert ctx.suggested == (
        "automation's failover_region on region/eu-west-1 was refused: request it by hand "
        "if it is still the right fix",
        "check the runbook: https://runbooks.example/checkout")


def test_low_confidence() -> None:
    f = replace(F, confidence=0.8)
    ctx = build_context(f, automation_of(decide(f, CTX)), now=NOW, owner=CHECKOUT)
    assert ctx.to_dict()["automation"] == {
        "did": None, "why_not": "confidence below automation threshold",
        "rule": "regional-failover", "action": "failover_region",
        "target": "region/eu-west-1", "status": None, "approval": None}
    assert ctx.suggested[0] == (
        "confidence 0.80 is below rule regional-failover's automation threshold: confirm "
        "the anomaly, then request failover_region on region/eu-west-1 by hand if it fits")


def test_dry_run_and_queued() -> None:
    d = decide(F, CTX)
    req = request_for(d, NOW)
    dry = settle(d, Submission(req, SubmitStatus.DRY_RUN,
                               (Check.allow(Stage.POLICY, "dry_run", "policy in dry run"),)))
    ctx = build_context(F, automation_of(dry), now=NOW, owner=CHECKOUT)
    assert ctx.automation.did == "dry run: would have run failover_region on region/eu-west-1"
    assert ctx.suggested[0] == ("policy is in dry run, so failover_region on region/eu-west-1"
                                " did not run: request it by hand if it is right")
    queued = settle(d, Submission(req, SubmitStatus.QUEUED,
                                  (Check.allow(Stage.LIMITS, "claimed"),)))
    auto = automation_of(queued)
    assert (auto.did, auto.why_not, auto.status) == (
        "queued failover_region on region/eu-west-1", "", "queued")


def test_a_failed_action_described_by_the_caller() -> None:
    auto = Automation(covered=True, did="ran restart_pods on deployment/checkout: HTTP 500",
                      why_not="remediation failed", rule="restart", action="restart_pods",
                      target="deployment/checkout", status="queued")
    ctx = build_context(F, auto, now=NOW, owner=CHECKOUT)
    assert ctx.to_dict()["automation"]["did"] == (
        "ran restart_pods on deployment/checkout: HTTP 500")
    assert ctx.suggested == ("check the runbook: https://runbooks.example/checkout",)


def test_pure_same_inputs_same_context() -> None:
    args: dict[str, Any] = {"now": NOW, "owner": CHECKOUT, "console_url": CONSOLE,
                            "candidates": [finding(metric="http_5xx")],
                            "changes": [ChangeEvent("deploy", "checkout", T0 - 10)]}
    assert build_context(F, NO_RULE, **args) == build_context(F, NO_RULE, **args)
