"""The demo's closing summary: findings, actions, approvals and pages, each with its reasons.

Built from what the run left behind — the audit log (every decision, request, approval,
intent, outcome and verification), the pages the console pager wrote, what the local
receivers got and what the on-call answered — so the summary shows the same evidence a
reviewer would read afterwards. Each injected incident's ``expect`` is checked against that
evidence; a receiver that refused a request (bad body, bad signature) or an approval the
on-call could not give is a problem. Either fails the demo.

The audit readers are pure functions over the records:

>>> reqd = {"kind": "approval", "body": {"event": "requested", "approval_id": "apr_1",
...         "request_id": "req_1", "actor": "automation:failover-shipping", "at": 10.0,
...         "requested_at": 10.0, "reason": "risk high",
...         "where": {"service": "shipping", "target": "service/shipping"}}}
>>> done = {"kind": "approval", "body": {"event": "approved", "approval_id": "apr_1",
...         "request_id": "req_1", "actor": "human:alice", "at": 12.25, "requested_at": 10.0}}
>>> [(a["state"], a["decided_by"], a["latency_s"]) for a in approvals_from([reqd, done])]
[('approved', 'human:alice', 2.25)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from escalation.audit import VerifyReport
from hotpath.demo.fleet import Fleet, FleetEventKind
from hotpath.demo.incidents import (
    EXPECT_ACT,
    EXPECT_ACT_AFTER_APPROVAL,
    EXPECT_PAGE_BUDGET,
    EXPECT_PAGE_NO_RULE,
    Incident,
)
from hotpath.demo.oncall import OnCallAnswer
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.metrics import Metrics

Record = dict[str, Any]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _fmt(x: Any) -> str:
    return "?" if x is None else f"{x:.4g}"


def _bodies(records: Iterable[Record], kind: str) -> list[dict[str, Any]]:
    return [r["body"] for r in records if r["kind"] == kind]


def findings_from(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One entry per ``decision`` record: what was seen and what was decided, with reasons."""
    out = []
    for b in _bodies(records, "decision"):
        ev = b["evidence"]
        out.append({
            "finding_id": ev["finding_id"], "service": b["where"]["service"],
            "metric": ev["series"].split("|")[1], "value": ev["value"],
            "baseline": ev["baseline"], "confidence": ev["confidence"],
            "detectors": ev["detectors"], "decision": b["decision"], "reasons": b["reasons"],
            "rule": b.get("rule"), "request_id": b.get("request_id"),
        })
    return out


def approvals_from(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One entry per approval asked for: who asked, for what, and who decided how fast.

    ``latency_s`` runs from the request to the approval or denial (None while pending or
    when it expired); ``refusals`` are the codes of decision attempts the control plane
    refused (no rights, self-approval, bad token, ...).
    """
    actions = {b["request"]["request_id"]: b["request"]["action"]
               for b in _bodies(records, "request")}
    out: dict[str, dict[str, Any]] = {}
    for b in _bodies(records, "approval"):
        aid = b["approval_id"]
        if b["event"] == "requested":
            where = b.get("where") or {}
            out[aid] = {
                "approval_id": aid, "request_id": b["request_id"], "requested_by": b["actor"],
                "action": actions.get(b["request_id"]), "service": where.get("service"),
                "target": where.get("target"), "reason": b.get("reason", ""),
                "requested_at": b["requested_at"], "state": "pending", "decided_by": None,
                "latency_s": None, "refusals": [],
            }
            continue
        entry = out.get(aid)
        if entry is None:
            continue  # decided in an earlier run of the same audit log
        if b["event"] == "refused":
            entry["refusals"].append(b.get("code"))
        elif b["event"] in ("approved", "denied"):
            entry.update(state=b["event"], decided_by=b["actor"],
                         latency_s=round(b["at"] - entry["requested_at"], 3))
        elif b["event"] == "expired":
            entry["state"] = "expired"
    return list(out.values())


def actions_from(records: Sequence[Record],
                 approvals: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per ``intent`` (an action about to execute): its outcome, verification
    and, when a person had to approve it first, the approval and approver."""
    outcomes = {b["request_id"]: b for b in _bodies(records, "outcome")}
    verified = {b["request_id"]: b["result"] for b in _bodies(records, "verification")}
    approved = {a["request_id"]: a for a in approvals if a["state"] == "approved"}
    out = []
    for b in _bodies(records, "intent"):
        rid = b["request_id"]
        result = outcomes.get(rid, {}).get("result")
        kind, _, name = str(b["actor"]).partition(":")
        ap = approved.get(rid)
        out.append({
            "request_id": rid, "actor": b["actor"],
            "rule": name if kind == "automation" else None,
            "action": b["action"], "target": b["target"],
            "service": (b.get("where") or {}).get("service"),
            "idempotency_key": b["idempotency_key"],
            "outcome": {"success": "succeeded", "failed": "failed"}.get(result or "", "pending"),
            "verification": verified.get(rid), "rollback_of": b.get("rollback_of"),
            "approval_id": None if ap is None else ap["approval_id"],
            "approver": None if ap is None else ap["decided_by"],
        })
    return out


@dataclass
class Summary:
    duration_s: float
    messages_published: int
    counters: dict[str, float]
    findings: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    pages: list[dict[str, Any]]
    dlq: dict[str, int]
    fleet_events: list[dict[str, Any]]
    audit: dict[str, Any]
    on_call: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """The expectations the run did not show (incidents, and an intact audit chain)."""
        out = [f"{i['incident']}: {i['detail']}" for i in self.incidents if not i["met"]]
        if not self.audit["ok"]:
            out.append(f"audit chain broken: {self.audit['reason']}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s, "messages_published": self.messages_published,
            "counters": self.counters, "findings": self.findings, "actions": self.actions,
            "approvals": self.approvals, "pages": self.pages, "dlq": self.dlq,
            "fleet_events": self.fleet_events, "audit": self.audit, "on_call": self.on_call,
            "incidents": self.incidents, "problems": self.problems,
            "expectations_missing": self.missing,
        }

    def render(self) -> str:
        c = self.counters
        out = [
            "",
            "=== hotpath demo summary ===",
            f"{self.messages_published} messages published in {self.duration_s:.0f}s; "
            f"{c['messages']:.0f} consumed, {c['points']:.0f} points, "
            f"{len(self.findings)} findings, {len(self.actions)} actions, "
            f"{len(self.approvals)} approvals, {len(self.pages)} pages, "
            f"{sum(self.dlq.values())} to the DLQ",
            "",
            "findings (decision: reasons):",
        ]
        for f in self.findings:
            out.append(f"  {f['service']:<9} {f['metric']:<22} {_fmt(f['value']):>8} vs "
                       f"{_fmt(f['baseline']):>8}  conf {f['confidence']:.2f}  → "
                       f"{f['decision']}: {'; '.join(f['reasons'])}")
        out += ["", "actions (actor → action target: outcome, verification):"]
        for a in self.actions:
            line = f"  {a['actor']} → {a['action']} {a['target']}: {a['outcome']}"
            if a["verification"]:
                line += f", {a['verification']}"
            if a["approval_id"]:
                line += f" (approval {a['approval_id']} by {a['approver']})"
            out.append(line)
        out += ["", "approvals (requested by → decision):"]
        for ap in self.approvals:
            line = (f"  {ap['approval_id']} {ap['action']} {ap['target']} requested by "
                    f"{ap['requested_by']} → {ap['state']}")
            if ap["decided_by"]:
                line += f" by {ap['decided_by']} after {ap['latency_s']:.1f} s"
            if ap["refusals"]:
                line += f" (refused attempts: {', '.join(map(str, ap['refusals']))})"
            out.append(line)
        out += ["", "pages (severity summary):"]
        for p in self.pages:
            links = " [approve/deny links]" if "approve" in (p.get("links") or {}) else ""
            out.append(f"  [{p['severity']}] {p['summary']}{links}")
        if self.dlq:
            out += ["", "dead-lettered (reason: count): " +
                    ", ".join(f"{k}: {v}" for k, v in sorted(self.dlq.items()))]
        out += ["", "incidents (expected: shown?):"]
        for i in self.incidents:
            out.append(f"  {i['incident']:<17} {i['expect']}: "
                       f"{'yes' if i['met'] else 'NO — ' + i['detail']}")
        if self.problems:
            out += ["", "problems:"] + [f"  {p}" for p in self.problems]
        a = self.audit
        out += ["", f"audit log: {a['records']} records, chain "
                    f"{'intact' if a['ok'] else 'BROKEN: ' + str(a['reason'])}"]
        return "\n".join(out)


def summarize(out_dir: Path, fleet: Fleet, actions: ActionReceiver, pages: PageReceiver,
              metrics: Metrics, *, messages_published: int, duration_s: float,
              audit_ok: VerifyReport, on_call: Sequence[OnCallAnswer] = ()) -> Summary:
    records = _jsonl(out_dir / "audit.jsonl")
    approvals = approvals_from(records)
    paged = _jsonl(out_dir / "pages.jsonl")
    dlq = {label["reason"]: int(s.value) for metric in metrics.dlq.collect()
           for s in metric.samples if s.name.endswith("_total")
           for label in [s.labels]}
    counters = {
        "messages": metrics.messages._value.get(), "points": metrics.points._value.get(),
        "findings": metrics.findings._value.get(),
    }
    events = [{"at_s": round(e.at_s, 2), "kind": e.kind.value, "incident": e.incident,
               "service": e.service, "occurrence": e.occurrence, "detail": e.detail}
              for e in fleet.events]
    summary = Summary(duration_s, messages_published, counters, findings_from(records),
                      actions_from(records, approvals), approvals, paged, dlq, events,
                      {"ok": audit_ok.ok, "records": audit_ok.records, "reason": audit_ok.reason},
                      on_call=[a.to_dict() for a in on_call])
    summary.incidents = [expectation(inc, summary) for inc in fleet.incidents]
    summary.problems = problems(actions, pages, on_call)
    return summary


def expectation(inc: Incident, s: Summary) -> dict[str, Any]:
    """Whether the run showed what ``inc`` was injected to show, and if not, what was missing."""
    healed = any(e["kind"] == FleetEventKind.HEALED.value and e["incident"] == inc.name
                 for e in s.fleet_events)
    succeeded = [a for a in s.actions
                 if a["outcome"] == "succeeded" and a["service"] == inc.service]
    last_reasons = {p["reasons"][-1] for p in s.pages
                    if p["reasons"] and p["service"] == inc.service}
    detail = ""
    if inc.expect == EXPECT_ACT:
        if not succeeded:
            detail = "no successful action"
        elif not healed:
            detail = "acted, but the fleet was not healed"
    elif inc.expect == EXPECT_PAGE_NO_RULE:
        if "no remediation rule" not in last_reasons:
            detail = "no page 'no remediation rule'"
    elif inc.expect == EXPECT_PAGE_BUDGET:
        if "budget exhausted" not in last_reasons:
            detail = "no page 'budget exhausted'"
    elif inc.expect == EXPECT_ACT_AFTER_APPROVAL:
        asked = [ap for ap in s.approvals if ap["service"] == inc.service]
        if not asked:
            detail = "no approval requested"
        elif not any(p.get("links", {}).get("approve") for p in s.pages
                     if p["service"] == inc.service):
            detail = "no page with an approve link"
        elif not any(ap["state"] == "approved" for ap in asked):
            detail = f"approval not granted ({', '.join(ap['state'] for ap in asked)})"
        elif not any(a["approval_id"] for a in succeeded):
            detail = "approved, but no successful action after it"
        elif not healed:
            detail = "acted, but the fleet was not healed"
    return {"incident": inc.name, "service": inc.service, "expect": inc.expect,
            "met": not detail, "detail": detail}


def problems(actions: ActionReceiver, pages: PageReceiver,
             on_call: Sequence[OnCallAnswer]) -> list[str]:
    """Requests the receivers refused and approvals the on-call could not give."""
    out = [f"action receiver answered {r.status} to {r.idempotency_key}: {r.outcome}"
           for r in actions.problems]
    out += [f"page receiver answered 400: {p.reason.value} (field {p.field})"
            for _, p in pages.rejected]
    out += [a.line() for a in on_call if not a.ok]
    return out
