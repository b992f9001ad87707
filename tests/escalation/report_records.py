"""Hand-built audit records for the scorecard tests: builders and one log that has it all.

Bodies follow the control plane's audit schema (see ``escalation.report``); ``LOG`` tells
its story in comments, and the tests assert the numbers that story must give.
"""

from __future__ import annotations

from typing import Any

AUTO = "automation:restart-on-latency"


def rec(kind: str, ts: float, **body: Any) -> dict[str, Any]:
    return {"seq": 0, "ts": ts, "kind": kind, "body": body}


def decision(fid: str, event_ts: float, decided_at: float, kind: str = "act") -> dict[str, Any]:
    return rec("decision", decided_at, decision=kind, decided_at=decided_at,
               evidence={"finding_id": fid, "ts": event_ts, "value": 9.0, "baseline": 1.0})


def request(rid: str, result: str, actor: str = AUTO, *, finding: str | None = None,
            event_ts: float | None = None, checks: list[dict[str, Any]] | None = None,
            ts: float = 0.0) -> dict[str, Any]:
    kind, _, name = actor.partition(":")
    return rec("request", ts, result=result, decided_at=ts, checks=checks or [],
               request={"request_id": rid, "actor": {"kind": kind, "name": name, "roles": []},
                        "finding_id": finding, "event_ts": event_ts})


def outcome(rid: str, action: str, result: str, actor: str = AUTO,
            rollback_of: str | None = None, ts: float = 0.0) -> dict[str, Any]:
    return rec("outcome", ts, request_id=rid, action=action, actor=actor, result=result,
               at=ts, rollback_of=rollback_of)


def verification(rid: str, result: str, recovered_at: float | None = None,
                 event_ts: float | None = None) -> dict[str, Any]:
    return rec("verification", recovered_at or 0.0, request_id=rid, result=result,
               recovered_at=recovered_at, event_ts=event_ts)


def approval(aid: str, rid: str, event: str, at: float, requested_at: float,
             **more: Any) -> dict[str, Any]:
    return rec("approval", at, approval_id=aid, request_id=rid, event=event, at=at,
               requested_at=requested_at, **more)


def refused_check(stage: str, code: str) -> dict[str, Any]:
    return {"ok": False, "stage": stage, "code": code, "detail": "", "state": {}}


LOG = [
    # f1: automation acts and the service recovers.
    decision("f1", 1000.0, 1002.0),
    request("r1", "queued", finding="f1", event_ts=1000.0, ts=1002.0),
    rec("intent", 1005.0, request_id="r1", action="restart_pods", at=1005.0, actor=AUTO),
    outcome("r1", "restart_pods", "success"),
    verification("r1", "recovered", 1060.0, 1000.0),
    # f2: no recovery; the rollback restores health (verified after it).
    decision("f2", 2000.0, 2001.0),
    request("r2", "queued", finding="f2", event_ts=2000.0),
    rec("intent", 2003.0, request_id="r2", at=2003.0),
    outcome("r2", "restart_pods", "success"),
    verification("r2", "no_recovery"),
    rec("page", 2100.0, request_id="r2", reason="automation tried restart_pods; no recovery"),
    outcome("r2-rb", "undo_restart", "success", rollback_of="r2"),
    verification("r2", "recovered", 2300.0, 2000.0),
    # f3: the action fails; its rollback fails too and is never verified.
    decision("f3", 3000.0, 3004.0),
    request("r3", "queued", finding="f3", event_ts=3000.0),
    rec("intent", 3010.0, request_id="r3", at=3010.0),
    outcome("r3", "scale_out", "failed"),
    rec("page", 3011.0, request_id="r3", reason="remediation failed"),
    outcome("r3-rb", "scale_in", "failed", rollback_of="r3"),
    # f4: paged, nobody acts. A replayed decision later must not move detection.
    decision("f4", 4000.0, 4010.0, kind="page"),
    decision("f4", 4000.0, 4050.0, kind="page"),
    # f13: no recovery, rolled back, still no recovery.
    decision("f13", 5000.0, 5006.0),
    request("r13", "queued", finding="f13", event_ts=5000.0),
    rec("intent", 5008.0, request_id="r13", at=5008.0),
    outcome("r13", "restart_pods", "success"),
    verification("r13", "no_recovery"),
    rec("page", 5100.0, request_id="r13", reason="automation tried restart_pods; no recovery"),
    outcome("r13-rb", "undo_restart", "success", rollback_of="r13"),
    verification("r13-rb", "no_recovery"),
    # A human's request, approved after 30 s, runs fine.
    request("r5", "pending_approval", "human:alice"),
    approval("a5", "r5", "requested", 5000.0, 5000.0, actor="human:alice"),
    approval("a5", "r5", "approved", 5030.0, 5000.0, actor="human:bob"),
    request("r5", "queued", "human:alice"),
    rec("intent", 5031.0, request_id="r5", at=5031.0),
    outcome("r5", "drain_node", "success", actor="human:alice"),
    # An agent's request: it tries to approve itself (refused), then a human denies it.
    request("r6", "pending_approval", "agent:copilot"),
    approval("a6", "r6", "requested", 6000.0, 6000.0),
    approval("a6", "r6", "refused", 6010.0, 6000.0, actor="agent:copilot",
             code="self_approval", detail="an actor cannot approve its own request"),
    approval("a6", "r6", "denied", 6090.0, 6000.0, actor="human:bob"),
    # Nobody answers: expired and paged.
    request("r7", "pending_approval", "agent:copilot"),
    approval("a7", "r7", "requested", 7000.0, 7000.0),
    approval("a7", "r7", "expired", 7600.0, 7000.0),
    rec("page", 7600.0, request_id="r7", reason="approval expired"),
    # Refusals, a dry run, an action that never ran, an unrelated page.
    request("r8", "refused", checks=[
        {"ok": True, "stage": "policy", "code": "allowed", "detail": "", "state": {}},
        refused_check("limits", "budget_exhausted")]),
    request("r9", "refused", checks=[refused_check("policy", "freeze")]),
    request("r10", "dry_run"),
    outcome("r11", "restart_pods", "not_executed"),
    rec("page", 8000.0, request_id=None, reason="anomaly, no rule"),
    # Bookkeeping and kinds the scorecard does not read.
    rec("automation", 8001.0, paused=True, actor="alice", reason="incident"),
    rec("checkpoint", 8002.0),
    rec("mystery", 8003.0),
    rec("mystery", 8004.0),
]
# Audit write times only move forward: a record built without one was written with the last.
for _i, _r in enumerate(LOG):
    _r["seq"] = _i + 1
    _r["ts"] = max(_r["ts"], LOG[_i - 1]["ts"] if _i else 0.0)
