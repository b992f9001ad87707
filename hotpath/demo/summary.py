"""The demo's closing summary: findings, actions and pages, each with its reasons.

Built from what the run left behind — the audit log (every decision, intent and outcome),
the pages the console pager wrote, and what the local receivers got — so the summary
shows the same evidence a reviewer would read afterwards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from escalation.audit import VerifyReport
from hotpath.demo.fleet import Fleet
from hotpath.demo.incidents import EXPECT_ACT, EXPECT_PAGE_BUDGET, EXPECT_PAGE_NO_RULE
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.metrics import Metrics


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _fmt(x: Any) -> str:
    return "?" if x is None else f"{x:.4g}"


@dataclass
class Summary:
    duration_s: float
    messages_published: int
    counters: dict[str, float]
    findings: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    pages: list[dict[str, Any]]
    dlq: dict[str, int]
    fleet_events: list[dict[str, Any]]
    audit: dict[str, Any]
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s, "messages_published": self.messages_published,
            "counters": self.counters, "findings": self.findings, "actions": self.actions,
            "pages": self.pages, "dlq": self.dlq, "fleet_events": self.fleet_events,
            "audit": self.audit, "expectations_missing": self.missing,
        }

    def render(self) -> str:
        c = self.counters
        out = [
            "",
            "=== hotpath demo summary ===",
            f"{self.messages_published} messages published in {self.duration_s:.0f}s; "
            f"{c['messages']:.0f} consumed, {c['points']:.0f} points, "
            f"{len(self.findings)} findings, {len(self.actions)} actions, "
            f"{len(self.pages)} pages, {sum(self.dlq.values())} to the DLQ",
            "",
            "findings (decision: reasons):",
        ]
        for f in self.findings:
            out.append(f"  {f['service']:<9} {f['metric']:<22} {_fmt(f['value']):>8} vs "
                       f"{_fmt(f['baseline']):>8}  conf {f['confidence']:.2f}  → "
                       f"{f['decision']}: {'; '.join(f['reasons'])}")
        out.append("")
        out.append("actions (rule → action target: outcome):")
        for a in self.actions:
            out.append(f"  {a['rule']} → {a['action']} {a['target']}: {a['outcome']} "
                       f"(key {a['idempotency_key']})")
        out.append("")
        out.append("pages (severity summary):")
        for p in self.pages:
            out.append(f"  [{p['severity']}] {p['summary']}")
        if self.dlq:
            out.append("")
            out.append("dead-lettered (reason: count): " +
                       ", ".join(f"{k}: {v}" for k, v in sorted(self.dlq.items())))
        out.append("")
        a = self.audit
        out.append(f"audit log: {a['records']} records, chain "
                   f"{'intact' if a['ok'] else 'BROKEN: ' + str(a['reason'])}")
        return "\n".join(out)


def summarize(out_dir: Path, fleet: Fleet, actions: ActionReceiver, pages: PageReceiver,
              metrics: Metrics, *, messages_published: int, duration_s: float,
              audit_ok: VerifyReport) -> Summary:
    records = _jsonl(out_dir / "audit.jsonl")
    findings = []
    for r in records:
        if r["kind"] != "decision":
            continue
        b = r["body"]
        ev = b["evidence"]
        findings.append({
            "finding_id": ev["finding_id"], "service": b["where"]["service"],
            "metric": ev["series"].split("|")[1], "value": ev["value"],
            "baseline": ev["baseline"], "confidence": ev["confidence"],
            "detectors": ev["detectors"], "decision": b["decision"], "reasons": b["reasons"],
            "rule": b.get("rule"),
        })
    outcomes = {r["body"]["idempotency_key"]: r["body"] for r in records
                if r["kind"] == "outcome"}
    acted = []
    for r in records:
        if r["kind"] != "intent":
            continue
        b = r["body"]
        o = outcomes.get(b["idempotency_key"], {})
        acted.append({"rule": b["rule"], "action": b["action"], "target": b["target"],
                      "idempotency_key": b["idempotency_key"],
                      "outcome": o.get("outcome", "pending"),
                      "budget": b.get("budget")})
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
    summary = Summary(duration_s, messages_published, counters, findings, acted, paged, dlq,
                      events, {"ok": audit_ok.ok, "records": audit_ok.records,
                               "reason": audit_ok.reason})
    summary.missing = _expectations(summary, fleet)
    return summary


def _expectations(s: Summary, fleet: Fleet) -> list[str]:
    """What each injected incident was meant to show, and whether the run showed it."""
    missing = []
    reasons = Counter(p["reasons"][-1] for p in s.pages if p["reasons"])
    for inc in fleet.incidents:
        if inc.expect == EXPECT_ACT and not any(
                a["outcome"] == "succeeded" and a["target"].endswith(inc.service)
                for a in s.actions):
            missing.append(f"{inc.name}: no successful action")
        if inc.expect == EXPECT_PAGE_NO_RULE and not reasons["no remediation rule"]:
            missing.append(f"{inc.name}: no page 'no remediation rule'")
        if inc.expect == EXPECT_PAGE_BUDGET and not reasons["budget exhausted"]:
            missing.append(f"{inc.name}: no page 'budget exhausted'")
    if not s.audit["ok"]:
        missing.append(f"audit chain broken: {s.audit['reason']}")
    return missing
