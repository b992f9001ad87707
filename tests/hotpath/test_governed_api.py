"""The action API end to end against the real control plane (issue 4's acceptance).

No doubles: the control plane ``serve`` builds (``tests/hotpath/governed_harness.py``),
the example config (deploy/hotpath.yaml), a real redis-server, real HTTP with the example's
bearer tokens, and loopback receivers standing in for the remediation API and the pager.
Time is the injected clock; only the HTTP round trips are real time.

Covered: an agent's action runs once, signed, and its replay is a duplicate; approvals
refuse self-approval, the wrong role, an agent, forged, reused and expired tokens, and
run once when a right-holder approves; Redis down refuses and pages through the spool,
Redis back works; the kill switch stops agents but not people; every call is one ``api``
audit record, no secret reaches the audit, and ``hotpath report`` counts the approval.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from escalation.approvals import approval_id
from escalation.audit import verify as verify_audit
from escalation.errors import SignatureError
from escalation.executors.signing import verify as verify_signature
from escalation.request import request_id
from hotpath.api_auth import hash_token
from hotpath.cli import main
from hotpath.demo.receivers import PageReceiver
from hotpath.services.redis_server import RedisServer
from tests.hotpath.governed_harness import (
    APPROVAL_SECRET,
    TOKENS,
    WEBHOOK_SECRET,
    Clock,
    Governed,
    SignedActionReceiver,
    governed_config,
    run_governed,
    wait_async,
)
from tests.hotpath.test_openapi import DOC, deref, template_of, validator

pytestmark = pytest.mark.redis

ACTIONS_STREAM = "hotpath:actions"
POLICY_PASSED = ["action_known", "params_valid", "service_known", "rule_matched", "severity_met",
                 "no_freeze", "allowed"]

RESTART = {"action": "restart_pods", "service": "checkout", "target": "deployment/checkout",
           "params": {"max_unavailable": 1}, "severity": "error",
           "reason": "p99 latency 4x baseline"}
FAILOVER = {"action": "failover_region", "service": "shipping", "target": "service/shipping",
            "params": {"to_region": "us-west-2"}, "severity": "critical",
            "reason": "us-east-1 queue depth 20x baseline"}


class System:
    """One test's running system, its receivers and the injected clock."""

    def __init__(self, g: Governed, actions: SignedActionReceiver, pages: PageReceiver,
                 clock: Clock) -> None:
        self.g, self.actions, self.pages, self.clock = g, actions, pages, clock

    async def queued(self) -> int:
        """Entries ever added to the action queue: the runner deletes what it acked, so
        the stream's length says nothing; Redis' own ``entries-added`` counter does."""
        if not await self.g.redis.exists(ACTIONS_STREAM):
            return 0
        info = await self.g.redis.xinfo_stream(ACTIONS_STREAM)
        return int(info["entries-added"])

    async def page_saying(self, text: str) -> dict[str, Any]:
        async def seen() -> bool:
            return any(text in p["summary"] for p in self.pages.pages)

        await wait_async(seen, f"a page saying {text!r}; got "
                               f"{[p['summary'] for p in self.pages.pages]}")
        return next(p for p in self.pages.pages if text in p["summary"])

    async def executed(self, n: int) -> None:
        async def done() -> bool:
            return len(self.actions.accepted) >= n

        await wait_async(done, f"{n} action(s) at the receiver; got {self.actions.received}")

    def check_audit(self, extra_secrets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The audit chain verifies; one ``api`` record per call, in order, saying who,
        what, the status and the code; no bearer or approval token anywhere in it. And
        every answer the real control plane gave is one the OpenAPI document describes."""
        for method, url, reply in self.g.replies:
            op = DOC["paths"][template_of(url)][method.lower()]
            documented = deref(op["responses"].get(str(reply.status)))
            assert documented is not None, f"{method} {url}: undocumented {reply.status}"
            validator(documented["content"]["application/json"]["schema"]).validate(reply.body)
        path = self.g.cfg.audit.path
        self.g.parts.audit.flush()
        report = verify_audit(path)
        assert report.ok, report
        api = self.g.records("api")
        assert [(r["actor"], r["method"], r["path"], r["status"], r["code"]) for r in api] == [
            (c.actor, c.method, c.path, c.status, c.code) for c in self.g.calls]
        raw = path.read_bytes()
        for secret in (*TOKENS.values(), APPROVAL_SECRET, WEBHOOK_SECRET, *extra_secrets):
            assert secret.encode() not in raw, f"secret {secret[:12]}... in the audit"
        return api


@pytest.fixture
async def system(tmp_path: Path, redis_client: aioredis.Redis, redis_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[System]:
    """The governed path on a flushed Redis, aimed at fresh receivers."""
    monkeypatch.setenv("HOTPATH_APPROVAL_SECRET", APPROVAL_SECRET)
    monkeypatch.setenv("HOTPATH_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.delenv("HOTPATH_AUDIT_KEY", raising=False)
    clock = Clock()
    async with SignedActionReceiver() as actions, PageReceiver(None) as pages:
        cfg = governed_config(tmp_path, redis_url, action_url=actions.url, page_url=pages.url)
        async with run_governed(cfg, clock) as g:
            yield System(g, actions, pages, clock)


def link_parts(link: str) -> tuple[str, str]:
    """(path, token) of a page's approve/deny link; the test sends the path to its server."""
    parts = urlsplit(link)
    (token,) = parse_qs(parts.query)["token"]
    return parts.path, token


# --- 1. an agent's request: queued, executed once, signed; its replay executes nothing --


async def test_agent_action_runs_once_signed_and_its_replay_is_a_duplicate(
        system: System) -> None:
    g, actions = system.g, system.actions
    body = {**RESTART, "idempotency_key": "copilot-restart-1"}
    rid = request_id("agent:copilot:copilot-restart-1")  # keys are scoped by the caller

    first = await g.submit("copilot", body)
    assert first.status == 202, first.body
    assert (first.body["request_id"], first.body["status"]) == (rid, "queued")
    assert [c["code"] for c in first.body["checks"]] == [
        *POLICY_PASSED, "no_approval_needed", "claimed"]
    assert first.body["checks"][6]["state"]["rule"] == "copilot"
    assert first.headers["Location"] == f"/v1/actions/{rid}"

    await system.executed(1)
    # No finding series in the evidence, so nothing to verify: the request ends succeeded.
    state = await g.wait_status(rid, "copilot", ("succeeded",))
    assert state.body["request"]["actor"] == {"kind": "agent", "name": "copilot", "roles": []}
    assert [h["status"] for h in state.body["history"]] == ["queued", "succeeded"]

    # The receiver got exactly one request; it checked the signature itself (401 if not),
    # and so does the test, over the exact bytes that arrived.
    (received,) = actions.received
    assert actions.problems == []
    assert (received.status, received.outcome) == (202, "accepted")
    ((signature, raw),) = actions.signed
    assert signature is not None
    verify_signature(WEBHOOK_SECRET.encode(), signature, raw, now=time.time())
    with pytest.raises(SignatureError, match="no v1 signature matches the body"):
        verify_signature(WEBHOOK_SECRET.encode(), signature, raw.replace(b"max_", b"min_"),
                         now=time.time())
    sent = orjson.loads(raw)
    assert (sent["action"], sent["target"], sent["idempotency_key"], sent["rule"],
            sent["params"]) == ("restart_pods", "deployment/checkout",
                                "agent:copilot:copilot-restart-1",
                                "copilot", {"max_unavailable": 1})
    assert sent["context"]["request"]["request_id"] == rid

    # Replays of the same body (same idempotency key): 200 duplicate, nothing queued again.
    for _ in range(2):
        again = await g.submit("copilot", body)
        assert again.status == 200, again.body
        assert (again.body["request_id"], again.body["status"]) == (rid, "duplicate")
        last = again.body["checks"][-1]
        assert (last["stage"], last["code"], last["ok"]) == ("limits", "duplicate", False)
    assert await system.queued() == 1
    assert len(actions.received) == 1

    intents = [r for r in g.records("intent") if r["request_id"] == rid]
    outcomes = [r for r in g.records("outcome") if r["request_id"] == rid]
    assert len(intents) == 1 and len(outcomes) == 1
    assert (outcomes[0]["result"], outcomes[0]["actor"]) == ("success", "agent:copilot")
    results = [r["result"] for r in g.records("request") if r["request"]["request_id"] == rid]
    assert results == ["queued", "duplicate", "duplicate"]
    system.check_audit()


# --- 2. approvals: who may decide, forged and reused tokens, one execution --------------


async def test_approval_refusals_then_one_right_holder_runs_it_once(system: System) -> None:
    g, actions, clock = system.g, system.actions, system.clock
    # The example policy's copilot rule lists restart_pods, flush_cache, record_change and
    # scale_out; no rule lets the agent fail over a region.
    refused = await g.submit("copilot", {**FAILOVER, "idempotency_key": "copilot-failover-1"})
    assert refused.status == 403
    assert refused.body["status"] == "refused"
    assert refused.body["checks"][-1] == {
        "ok": False, "stage": "policy", "code": "no_rule", "state": {},
        "detail": "no rule lets agent:copilot run failover_region on shipping in production"}
    assert "Location" not in refused.headers

    body = {**FAILOVER, "idempotency_key": "alice-failover-1"}
    rid = request_id("human:alice:alice-failover-1")
    aid = approval_id(rid)
    asked = await g.submit("alice", body)
    assert asked.status == 202, asked.body
    assert asked.body["status"] == "pending_approval"
    assert asked.body["approval"] == {"approval_id": aid, "expires_at": clock.now + 600.0}
    assert [c["code"] for c in asked.body["checks"]] == [
        *POLICY_PASSED, "approval_required", "pending"]
    assert asked.body["checks"][6]["state"]["rule"] == "oncall"

    page = await system.page_saying("approval required")
    assert page["summary"] == ("human:alice asks failover_region service/shipping (shipping) "
                               "— approval required: risk high >= high")
    base = f"{g.cfg.api.public_url}/approvals/{aid}"
    assert page["links"]["approve"].startswith(f"{base}/approve?token=")
    assert page["links"]["deny"].startswith(f"{base}/deny?token=")
    assert page["dedup_key"] == f"hotpath-{rid}:approval"
    # The links point at the configured public URL; their path and query go to this server.
    approve_path, approve_token = link_parts(page["links"]["approve"])
    _, deny_token = link_parts(page["links"]["deny"])
    approve_link = f"{approve_path}?token={approve_token}"
    assert approve_path == f"/v1/approvals/{aid}/approve"

    pending = await g.call("GET", "/v1/approvals", "bob")
    assert [a["approval_id"] for a in pending.body["approvals"]] == [aid]

    async def refused_with(who: str, path: str, status: int, code: str, detail: str,
                           json: Any = None) -> None:
        r = await g.call("POST", path, who, json=json)
        assert (r.status, r.body) == (status, {"error": code, "detail": detail})

    await refused_with("alice", approve_link, 403, "self_approval",
                       f"human:alice requested {aid}; a requester cannot approve or deny "
                       "its own request")
    await refused_with("bob", approve_link, 403, "not_authorized",
                       "human:bob (roles: sre) may not approve failover_region in production")
    claims, signature = approve_token.split(".")
    forged = f"{claims}.{signature[:10]}{'B' if signature[10] != 'B' else 'C'}{signature[11:]}"
    await refused_with("carol", f"/v1/approvals/{aid}/approve", 403, "bad_signature",
                       "signature does not match the key", json={"token": forged})
    await refused_with("copilot", approve_link, 403, "not_authorized",
                       "agent:copilot (roles: none) may not approve failover_region "
                       "in production")
    await refused_with("carol", f"/v1/approvals/{aid}/approve", 403, "wrong_decision",
                       "token is a deny link, not approve", json={"token": deny_token})
    assert actions.received == [] and await system.queued() == 0

    clock.advance(45.0)  # carol answers 45 s after the page
    approved = await g.call("POST", f"/v1/approvals/{aid}/approve", "carol",
                            json={"token": approve_token, "note": "standby is healthy"})
    assert approved.status == 200, approved.body
    assert (approved.body["state"], approved.body["approver"], approved.body["decided_at"],
            approved.body["note"]) == ("approved", "human:carol", clock.now,
                                       "standby is healthy")
    await system.executed(1)
    (sent,) = actions.accepted
    assert (sent["action"], sent["params"], sent["rule"]) == (
        "failover_region", {"to_region": "us-west-2"}, "alice")
    await g.wait_status(rid, "alice", ("succeeded",))

    # The spent link: its nonce is checked before the approval's state, because a used
    # link's approval is always decided already, so token_reused is the more exact reason
    # (and not in the API's 404/409/410/503 table, hence 403).
    await refused_with("carol", f"/v1/approvals/{aid}/approve", 403, "token_reused",
                       "this approval link was already used; each link works once",
                       json={"token": approve_token})
    # An unspent link of the decided approval: the state refuses it.
    decided_detail = (f"approval {aid} was already approved by human:carol at "
                      "2025-11-26T04:40:45Z")
    await refused_with("carol", f"/v1/approvals/{aid}/deny", 409, "already_decided",
                       decided_detail, json={"token": deny_token})

    now_pending = await g.call("GET", "/v1/approvals", "alice")
    assert now_pending.body == {"approvals": []}
    one = await g.call("GET", f"/v1/approvals/{aid}", "alice")
    assert (one.body["state"], one.body["approver"]) == ("approved", "human:carol")

    # alice replays her request: the approval is decided, so it is a duplicate; no new page.
    replay = await g.submit("alice", body)
    assert (replay.status, replay.body["status"]) == (200, "duplicate")
    assert replay.body["checks"][-1]["detail"] == f"approval {aid} is approved"
    assert await system.queued() == 1 and len(actions.received) == 1

    system.check_audit((approve_token, deny_token, forged))
    events = [(r["event"], r.get("code"), r["actor"]) for r in g.records("approval")]
    assert events == [
        ("requested", None, "human:alice"),
        ("refused", "self_approval", "human:alice"),
        ("refused", "not_authorized", "human:bob"),
        ("refused", "bad_signature", "human:carol"),
        ("refused", "not_authorized", "agent:copilot"),
        ("refused", "wrong_decision", "human:carol"),
        ("approved", None, "human:carol"),
        ("refused", "token_reused", "human:carol"),
        ("refused", "already_decided", "human:carol"),
    ]
    approved_rec = next(r for r in g.records("approval") if r["event"] == "approved")
    assert approved_rec["at"] - approved_rec["requested_at"] == 45.0
    assert approved_rec["where"] == {"service": "shipping", "environment": "production",
                                     "region": "", "target": "service/shipping"}
    run = [r for r in g.records("request") if r["request"]["request_id"] == rid]
    assert [r["result"] for r in run] == ["pending_approval", "queued", "duplicate"]
    assert run[1]["authorization"] == {
        "rule": "oncall", "approval_id": aid, "approver": "human:carol",
        "limits": run[1]["checks"][-1]["state"]}
    (intent,) = [r for r in g.records("intent") if r["request_id"] == rid]
    assert (intent["actor"], intent["params"], intent["at"]) == (
        "human:alice", {"to_region": "us-west-2"}, clock.now)
    (outcome,) = [r for r in g.records("outcome") if r["request_id"] == rid]
    assert outcome["result"] == "success"

    report = CliRunner().invoke(main, ["report", str(g.cfg.audit.path)])
    assert report.exit_code == 0, report.output
    lines = report.output.splitlines()
    assert "  decision latency              n 1, p50 45.0s, p90 45.0s, max 45.0s" in lines, (
        report.output)
    card = CliRunner().invoke(main, ["report", str(g.cfg.audit.path), "--json"])
    approvals = orjson.loads(card.output)["approvals"]
    assert approvals["by_event"] == {"requested": 1, "approved": 1, "denied": 0, "expired": 0,
                                     "refused": 7}
    assert approvals["denials_by_code"] == {
        "already_decided": 1, "bad_signature": 1, "not_authorized": 2, "self_approval": 1,
        "token_reused": 1, "wrong_decision": 1}


# --- 3. an approval nobody answers: expired, paged, never executed ---------------------


async def ask_failover(system: System, key: str) -> tuple[str, str, str]:
    """alice asks for a failover; (request id, approval id, approve token from the page)."""
    asked = await system.g.submit("alice", {**FAILOVER, "idempotency_key": key})
    assert (asked.status, asked.body["status"]) == (202, "pending_approval")
    page = await system.page_saying("approval required")
    _, token = link_parts(page["links"]["approve"])
    rid = asked.body["request_id"]
    return rid, approval_id(rid), token


async def test_expired_approval_is_swept_never_runs_and_cannot_be_approved(
        system: System) -> None:
    g, clock = system.g, system.clock
    rid, aid, token = await ask_failover(system, "alice-failover-expires")
    assert await g.plane.control.sweep_expired() == []  # not yet

    clock.advance(g.cfg.policy.approval.expiry_s + 1)
    (expired,) = await g.plane.control.sweep_expired()
    assert (expired.approval_id, expired.state.value) == (aid, "expired")
    assert await g.plane.control.sweep_expired() == []  # taken once only

    # The page link outlives the approval by a grace period, so a late approver is told
    # the approval itself lapsed (410, as documented), not that the link is bad.
    late = await g.call("POST", f"/v1/approvals/{aid}/approve", "carol", json={"token": token})
    assert (late.status, late.body["error"]) == (410, "approval_expired")
    assert late.body["detail"].startswith(f"approval {aid} expired at ")
    state = await g.call("GET", f"/v1/approvals/{aid}", "carol")
    assert (state.body["state"], state.body["approver"]) == ("expired", None)
    status = await g.call("GET", f"/v1/actions/{rid}", "alice")
    assert (status.body["status"], status.body["detail"]) == (
        "expired", "approval expired unanswered")
    # A replay of the expired request finds the expired approval: nothing new.
    replay = await g.submit("alice", {**FAILOVER, "idempotency_key": "alice-failover-expires"})
    assert (replay.status, replay.body["checks"][-1]["detail"]) == (
        200, f"approval {aid} is expired")

    # The on-call hears that it lapsed: its own dedup key, so not folded into the ask.
    page = await system.page_saying("approval expired unanswered")
    assert page["summary"] == ("human:alice asks failover_region service/shipping (shipping) "
                               "— approval expired unanswered; failover_region not run")
    assert page["dedup_key"] == f"hotpath-{rid}:expired"
    assert page["links"] == {}
    assert [p["dedup_key"] for p in system.pages.pages] == [
        f"hotpath-{rid}:approval", f"hotpath-{rid}:expired"]

    assert system.actions.received == [] and await system.queued() == 0
    events = [(r["event"], r.get("code")) for r in g.records("approval")]
    assert events == [("requested", None), ("expired", None), ("refused", "approval_expired")]
    (page_rec,) = g.records("page")
    assert (page_rec["request_id"], page_rec["reason"], page_rec["dedup_key"]) == (
        rid, "approval expired", f"hotpath-{rid}:expired")
    assert g.records("intent") == [] and g.records("outcome") == []
    system.check_audit((token,))


# --- 4. Redis down: refused, nothing runs, paged via the spool; Redis back: runs -------


async def test_redis_down_refuses_and_pages_then_recovers(
        system: System, redis_server: RedisServer) -> None:
    g, actions = system.g, system.actions
    redis_server.stop()
    try:
        down = await g.submit("copilot", {**RESTART, "idempotency_key": "copilot-during-outage"})
        assert down.status == 403, down.body
        assert down.body["status"] == "refused"
        # The first thing a machine's request needs is the kill switch: unreadable, it is
        # held back as if paused (fail closed), with its own code, and paged.
        last = down.body["checks"][-1]
        assert (last["stage"], last["code"], last["ok"]) == ("policy", "unavailable", False)
        assert last["detail"] == ("the kill switch cannot be read (Redis unavailable or "
                                  "slow); failing closed")
        # Delivered while Redis is still down: the page came through the spool on disk.
        page = await system.page_saying("policy: unavailable")
        assert page["summary"] == (
            "agent:copilot asks restart_pods deployment/checkout (checkout) — "
            "policy: unavailable: the kill switch cannot be read (Redis unavailable or slow); "
            "failing closed")
        assert page["dedup_key"] == f"hotpath-{down.body['request_id']}"
        assert (g.cfg.spool.dir / "pages.jsonl").exists()
    finally:
        redis_server.start()
    assert actions.received == []

    system.clock.advance(5.0)
    up = await g.submit("copilot", {**RESTART, "idempotency_key": "copilot-after-outage"})
    assert (up.status, up.body["status"]) == (202, "queued"), up.body
    await system.executed(1)
    (sent,) = actions.accepted
    assert sent["idempotency_key"] == "agent:copilot:copilot-after-outage"
    await g.wait_status(up.body["request_id"], "copilot", ("succeeded",))

    requests = g.records("request")
    assert [r["result"] for r in requests] == ["refused", "queued"]
    assert requests[0]["checks"][-1]["code"] == "unavailable"
    assert [r["request_id"] for r in g.records("intent")] == [up.body["request_id"]]
    system.check_audit()


# --- 5. the kill switch stops machines, not people -------------------------------------


async def test_paused_refuses_the_agent_but_not_a_human(system: System) -> None:
    g, actions = system.g, system.actions
    await g.plane.kill_switch.set(paused=True, actor="human:alice", reason="incident review",
                                  now=system.clock())
    agent = await g.submit("copilot", {**RESTART, "idempotency_key": "copilot-paused"})
    assert agent.status == 403
    assert agent.body["checks"] == [{
        "ok": False, "stage": "policy", "code": "paused", "state": {},
        "detail": "automation paused by human:alice: incident review"}]

    human = await g.submit("bob", {**RESTART, "idempotency_key": "bob-paused"})
    assert (human.status, human.body["status"]) == (202, "queued"), human.body
    assert human.body["checks"][6]["state"]["rule"] == "oncall"
    await system.executed(1)
    assert [a["rule"] for a in actions.accepted] == ["bob"]
    assert await system.queued() == 1
    system.check_audit()


# --- 6. the API's own edges are audited too --------------------------------------------


async def test_unauthenticated_and_malformed_calls_are_audited_without_the_token(
        system: System) -> None:
    g = system.g
    assert hash_token(TOKENS["copilot"]) == g.cfg.principals[0].token_sha256
    stranger = await g.call("POST", "/v1/actions", None, token="not-a-known-token",
                            json={**RESTART, "idempotency_key": "x"})
    assert (stranger.status, stranger.body["error"]) == (401, "unknown_token")
    no_key = await g.submit("copilot", dict(RESTART))
    assert (no_key.status, no_key.body) == (400, {
        "error": "bad_request", "problems": ["request: field 'idempotency_key' is required"]})
    impostor = await g.submit("copilot", {**RESTART, "idempotency_key": "y",
                                          "actor": "human:alice"})
    assert (impostor.status, impostor.body["error"]) == (403, "actor_mismatch")
    unknown = await g.call("GET", "/v1/actions/req_0000000000000000", "bob")
    assert (unknown.status, unknown.body["error"]) == (404, "unknown_request")
    assert system.actions.received == [] and await system.queued() == 0
    api = system.check_audit(("not-a-known-token",))
    assert [r["actor"] for r in api] == [None, "agent:copilot", "agent:copilot", "human:bob"]
