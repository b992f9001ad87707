"""The action API over real sockets: hotpath's HttpServer on 127.0.0.1, an aiohttp client.

The control plane behind it is :class:`RecordingControlPlane`, a test double that answers
what each test scripts and records every call, so each test asserts the exact status and
body on the wire, what reached the control plane, and the one audit line per call. The
lead's integration test runs the same routes against the real ``ControlPlane``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
import pytest

from escalation.approvals import (
    ApprovalState,
    DecideResult,
    PendingApproval,
)
from escalation.errors import ApprovalStoreUnavailable, StoreUnavailable
from escalation.request import Actor, ActorKind, Request
from escalation.request_store import RequestStoreError
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Check, Stage
from hotpath.api import MAX_BODY_BYTES, add_api_routes, load_openapi
from hotpath.api_auth import Authenticator, Principal, hash_token
from hotpath.http_server import HttpServer, make_app
from hotpath.metrics import Metrics
from tests.hotpath.conftest import AuditCall

NOW = 1764132000.0
AGENT_TOKEN = "agent-token-7c1f0e"
HUMAN_TOKEN = "human-token-93ab2d"
APPROVE_TOKEN = "approve-link-token-51d2"
COPILOT = Actor(ActorKind.AGENT, "copilot", ("responder",))
ALICE = Actor(ActorKind.HUMAN, "alice", ("sre",))
SECRETS = (AGENT_TOKEN, HUMAN_TOKEN, APPROVE_TOKEN)

BODY = {"action": "restart_pods", "service": "checkout", "environment": "production",
        "target": "deployment/checkout", "idempotency_key": "copilot-42",
        "params": {"replicas": 3}, "severity": "error", "reason": "p99 4x baseline"}


def checks_for(status: SubmitStatus) -> tuple[Check, ...]:
    allowed = Check.allow(Stage.POLICY, "allowed", "rule agents-restart", rule="agents-restart")
    return {
        SubmitStatus.QUEUED: (allowed, Check.allow(Stage.LIMITS, "claimed",
                                                   "budget 1/3 per hour", used=1, limit=3)),
        SubmitStatus.PENDING_APPROVAL: (
            Check.allow(Stage.POLICY, "approval_required", "production restarts need an sre"),
            Check.allow(Stage.APPROVAL, "pending", "approval apr_1 requested")),
        SubmitStatus.DRY_RUN: (allowed, Check.allow(Stage.LIMITS, "peek", "budget 0/3")),
        SubmitStatus.DUPLICATE: (allowed, Check.refuse(Stage.LIMITS, "duplicate",
                                                       "idempotency key copilot-42 claimed")),
        SubmitStatus.REFUSED: (Check.refuse(Stage.POLICY, "freeze",
                                            "change freeze black-friday"),),
    }[status]


def approval(state: ApprovalState = ApprovalState.PENDING) -> PendingApproval:
    req = Request(COPILOT, "restart_pods", "checkout", "production", "deployment/checkout",
                  "copilot-42", requested_at=NOW)
    decided = state in (ApprovalState.APPROVED, ApprovalState.DENIED)
    return PendingApproval(
        "apr_f760be47cf33fefc", req, NOW, NOW + 1800.0, state,
        "production restarts need an sre", approver=str(ALICE) if decided else None,
        decided_at=NOW + 60.0 if decided else None, note="looks right" if decided else "")


class RecordingControlPlane:
    """Test double of ``ControlPlaneApi``: scripted answers, every call recorded."""

    def __init__(self) -> None:
        self.submit_status = SubmitStatus.QUEUED
        self.submit_checks: tuple[Check, ...] | None = None  # None: checks_for(status)
        self.states: dict[str, dict[str, Any]] = {}
        self.approvals: dict[str, PendingApproval] = {}
        self.decide_result = DecideResult(Check.allow(Stage.APPROVAL, "approved", "ok"), None)
        self.fail_with: Exception | None = None
        self.submitted: list[Request] = []
        self.decided: list[tuple[str, str, Actor, str, str]] = []
        self.audits: list[AuditCall] = []

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def submit(self, req: Request) -> Submission:
        self._maybe_fail()
        self.submitted.append(req)
        pending = self.submit_status is SubmitStatus.PENDING_APPROVAL
        checks = self.submit_checks or checks_for(self.submit_status)
        return Submission(req, self.submit_status, checks,
                          "apr_f760be47cf33fefc" if pending else None,
                          NOW + 1800.0 if pending else None,
                          "approve-tok" if pending else None, "deny-tok" if pending else None)

    async def status(self, request_id: str) -> dict[str, Any] | None:
        self._maybe_fail()
        return self.states.get(request_id)

    async def pending_approvals(self) -> list[PendingApproval]:
        self._maybe_fail()
        return [a for a in self.approvals.values() if a.state is ApprovalState.PENDING]

    async def approval(self, approval_id: str) -> PendingApproval | None:
        self._maybe_fail()
        return self.approvals.get(approval_id)

    async def decide(self, approval_id: str, token: str, approver: Actor,
                     decision: Literal["approve", "deny"], note: str) -> DecideResult:
        self._maybe_fail()
        self.decided.append((approval_id, token, approver, decision, note))
        return self.decide_result

    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None:
        self.audits.append(AuditCall(actor, method, path, status, code, detail))


@dataclass
class Api:
    control: RecordingControlPlane
    session: aiohttp.ClientSession
    url: str
    # Every response: (method, path, status, body, headers), for the OpenAPI checks.
    seen: list[tuple[str, str, int, Any, dict[str, str]]] = field(default_factory=list)

    async def call(self, method: str, path: str, *, token: str | None = AGENT_TOKEN,
                   json: Any = None, data: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url + path, data=data,
                                        headers=hdrs) as resp:
            assert resp.content_type == "application/json"
            body = orjson.loads(await resp.read())
            self.seen.append((method, path, resp.status, body, dict(resp.headers)))
            return resp.status, body, dict(resp.headers)


async def start_api(control: RecordingControlPlane, **kwargs: Any
                    ) -> tuple[HttpServer, aiohttp.ClientSession, str]:
    app = make_app(Metrics())
    auth = Authenticator([
        Principal("copilot", ActorKind.AGENT, ("responder",), hash_token(AGENT_TOKEN)),
        Principal("alice", ActorKind.HUMAN, ("sre",), hash_token(HUMAN_TOKEN)),
    ])
    add_api_routes(app, control, auth, clock=lambda: NOW, default_environment="production",
                   **kwargs)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    return server, aiohttp.ClientSession(), f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    control = RecordingControlPlane()
    server, session, url = await start_api(control)
    try:
        yield Api(control, session, url)
    finally:
        await session.close()
        await server.stop()
    # Whatever the test did, no secret reached the audit.
    for call in control.audits:
        assert not any(s in repr(call) for s in SECRETS), call


def only_audit(api: Api) -> AuditCall:
    assert len(api.control.audits) == 1, api.control.audits
    return api.control.audits[0]


# --- POST /v1/actions ---------------------------------------------------------------------

async def test_submit_queued_is_202_with_the_submission_and_its_location(api: Api) -> None:
    status, body, headers = await api.call("POST", "/v1/actions", json=BODY)
    (req,) = api.control.submitted
    assert status == 202
    assert body == Submission(req, SubmitStatus.QUEUED, checks_for(SubmitStatus.QUEUED)).to_dict()
    assert headers["Location"] == f"/v1/actions/{req.request_id}"
    # The caller is the actor, with its principal's roles; the server's clock is the time.
    assert (req.actor, req.requested_at, req.environment) == (COPILOT, NOW, "production")
    assert (req.action, req.service, req.params) == ("restart_pods", "checkout", {"replicas": 3})
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 202, "queued",
                                        f"{req.request_id}: limits: claimed: budget 1/3 per hour")


@pytest.mark.parametrize(("outcome", "http"), [
    (SubmitStatus.PENDING_APPROVAL, 202), (SubmitStatus.DRY_RUN, 202),
    (SubmitStatus.DUPLICATE, 200), (SubmitStatus.REFUSED, 403),
])
async def test_submit_status_codes(api: Api, outcome: SubmitStatus, http: int) -> None:
    api.control.submit_status = outcome
    status, body, headers = await api.call("POST", "/v1/actions", json=BODY)
    (req,) = api.control.submitted
    expected = Submission(req, outcome, checks_for(outcome),
                          *(("apr_f760be47cf33fefc", NOW + 1800.0)
                            if outcome is SubmitStatus.PENDING_APPROVAL else ()))
    assert (status, body) == (http, expected.to_dict())
    assert body["request_id"] == "req_26aa9b39c681d35f"  # the duplicate names the original
    assert ("Location" in headers) == (http != 403)
    assert "approve-tok" not in orjson.dumps(body).decode()  # link tokens go to pages only
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", http, outcome.value,
                                        f"req_26aa9b39c681d35f: {expected.reason}")


async def test_a_body_actor_naming_the_caller_is_accepted(api: Api) -> None:
    status, _, _ = await api.call("POST", "/v1/actions", json={**BODY, "actor": "agent:copilot"})
    assert status == 202
    assert api.control.submitted[0].actor == COPILOT


async def test_a_body_actor_naming_someone_else_is_403(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/actions", json={**BODY, "actor": "human:alice"})
    detail = "the body names actor human:alice but the bearer token is agent:copilot's"
    assert (status, body) == (403, {"error": "actor_mismatch", "detail": detail})
    assert api.control.submitted == []
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 403, "actor_mismatch",
                                        detail)


async def test_bad_fields_are_400_with_every_problem(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/actions", json={
        "actor": 7, "service": "checkout", "idempotency_key": "k", "acton": "x"})
    problems = ["request: field 'actor' must be a string, got int",
                "request: field 'action' is required",
                "request: unknown field 'acton'"]
    assert (status, body) == (400, {"error": "bad_request", "problems": problems})
    assert api.control.submitted == []
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 400, "bad_request",
                                        "; ".join(problems))


@pytest.mark.parametrize(("raw", "problem"), [
    (b'{"action": "x",\n not json', "body is not valid JSON (line 2 column 2)"),
    (b"", "body is empty: expected a JSON object"),
    (b"[1]", "request: must be a JSON object, got list"),
    (orjson.dumps({**BODY, "actor": "robot:x"}),
     "request: field 'actor': actor 'robot:x': kind must be one of automation, agent, human"),
])
async def test_malformed_bodies_are_400(api: Api, raw: bytes, problem: str) -> None:
    status, body, _ = await api.call("POST", "/v1/actions", data=raw,
                                     headers={"Content-Type": "application/json"})
    assert (status, body) == (400, {"error": "bad_request", "problems": [problem]})
    assert only_audit(api).code == "bad_request"


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    big = {**BODY, "evidence": {"blob": "x" * MAX_BODY_BYTES}}
    status, body, _ = await api.call("POST", "/v1/actions", json=big)
    detail = f"the body must be at most {MAX_BODY_BYTES} bytes"
    assert (status, body) == (413, {"error": "body_too_large", "detail": detail})
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 413, "body_too_large",
                                        detail)


async def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"evidence": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 1):
            yield b"x" * 4096  # no Content-Length: the server must count as it reads
        yield b'"}'

    status, body, _ = await api.call("POST", "/v1/actions", data=chunks(),
                                     headers={"Content-Type": "application/json"})
    assert (status, body["error"]) == (413, "body_too_large")
    assert api.control.submitted == []


async def test_a_body_at_the_limit_is_read(api: Api) -> None:
    control = RecordingControlPlane()
    server, session, url = await start_api(control, max_body_bytes=len(orjson.dumps(BODY)))
    try:
        async with session.post(url + "/v1/actions", data=orjson.dumps(BODY), headers={
                "Authorization": f"Bearer {AGENT_TOKEN}",
                "Content-Type": "application/json"}) as resp:
            assert resp.status == 202
    finally:
        await session.close()
        await server.stop()


async def test_a_body_that_is_not_json_typed_is_415(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/actions", data=orjson.dumps(BODY),
                                     headers={"Content-Type": "text/plain"})
    detail = "Content-Type must be application/json, got text/plain"
    assert (status, body) == (415, {"error": "unsupported_media_type", "detail": detail})
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 415,
                                        "unsupported_media_type", detail)


# --- authentication -----------------------------------------------------------------------

MISSING = "expected an 'Authorization: Bearer <token>' header"


@pytest.mark.parametrize(("header", "code", "detail", "challenge"), [
    (None, "missing_token", MISSING, 'Bearer realm="hotpath"'),
    (f"Basic {AGENT_TOKEN}", "missing_token", MISSING, 'Bearer realm="hotpath"'),
    ("Bearer", "missing_token", MISSING, 'Bearer realm="hotpath"'),
    ("Bearer not-a-known-token", "unknown_token", "the bearer token matches no principal",
     'Bearer realm="hotpath", error="invalid_token"'),
])
async def test_bad_auth_is_401_with_a_bearer_challenge(
        api: Api, header: str | None, code: str, detail: str, challenge: str) -> None:
    status, body, headers = await api.call(
        "POST", "/v1/actions", token=None, json=BODY,
        headers={} if header is None else {"Authorization": header})
    assert (status, body) == (401, {"error": code, "detail": detail})
    assert headers["WWW-Authenticate"] == challenge
    assert api.control.submitted == []
    assert only_audit(api) == AuditCall(None, "POST", "/v1/actions", 401, code, detail)
    assert "not-a-known-token" not in repr(api.control.audits)


async def test_auth_comes_before_the_body(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/actions", token="wrong", data=b"x",
                                     headers={"Content-Type": "text/plain"})
    assert (status, body["error"]) == (401, "unknown_token")


# --- GET /v1/actions/{request_id} -----------------------------------------------------------

async def test_status_of_a_known_request(api: Api) -> None:
    req = Request(COPILOT, "restart_pods", "checkout", "production", "deployment/checkout",
                  "copilot-42", requested_at=NOW)
    state = {"request": req.to_dict(), "status": "queued", "detail": "limits: claimed",
             "at": NOW, "history": [{"status": "queued", "detail": "limits: claimed",
                                     "at": NOW}]}
    api.control.states["req_26aa9b39c681d35f"] = state
    status, body, _ = await api.call("GET", "/v1/actions/req_26aa9b39c681d35f", token=HUMAN_TOKEN)
    assert (status, body) == (200, state)
    assert only_audit(api) == AuditCall(ALICE, "GET", "/v1/actions/req_26aa9b39c681d35f", 200,
                                        "ok", "req_26aa9b39c681d35f")


async def test_status_of_an_unknown_request_is_404(api: Api) -> None:
    status, body, _ = await api.call("GET", "/v1/actions/req_0000000000000000")
    assert (status, body) == (404, {"error": "unknown_request",
                                    "detail": "no request req_0000000000000000"})
    assert only_audit(api).code == "unknown_request"


# --- approvals ------------------------------------------------------------------------------

async def test_pending_approvals_are_listed(api: Api) -> None:
    pending, done = approval(), approval(ApprovalState.DENIED)
    api.control.approvals = {"apr_f760be47cf33fefc": pending, "apr_done": done}
    status, body, _ = await api.call("GET", "/v1/approvals", token=HUMAN_TOKEN)
    assert (status, body) == (200, {"approvals": [pending.to_dict()]})
    assert only_audit(api) == AuditCall(ALICE, "GET", "/v1/approvals", 200, "ok", "1 pending")


async def test_one_approval_or_404(api: Api) -> None:
    api.control.approvals = {"apr_f760be47cf33fefc": approval()}
    status, body, _ = await api.call("GET", "/v1/approvals/apr_f760be47cf33fefc")
    assert (status, body) == (200, approval().to_dict())
    status, body, _ = await api.call("GET", "/v1/approvals/apr_0000000000000000")
    assert (status, body) == (404, {"error": "unknown_approval",
                                    "detail": "no approval apr_0000000000000000"})
    assert [(a.status, a.code) for a in api.control.audits] == [(200, "ok"),
                                                                (404, "unknown_approval")]


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_a_decision_is_200_with_the_approval(api: Api, decision: str) -> None:
    state = ApprovalState.APPROVED if decision == "approve" else ApprovalState.DENIED
    verb = state.value
    check = Check.allow(Stage.APPROVAL, verb, f"apr_f760be47cf33fefc {verb} by human:alice")
    api.control.decide_result = DecideResult(check, approval(state))
    path = f"/v1/approvals/apr_f760be47cf33fefc/{decision}"
    status, body, _ = await api.call("POST", path, token=HUMAN_TOKEN,
                                     json={"token": APPROVE_TOKEN, "note": "looks right"})
    assert (status, body) == (200, approval(state).to_dict())
    assert api.control.decided == [("apr_f760be47cf33fefc", APPROVE_TOKEN, ALICE, decision,
                                    "looks right")]
    assert only_audit(api) == AuditCall(ALICE, "POST", path, 200, verb, str(check))


async def test_the_token_may_come_from_the_links_query(api: Api) -> None:
    api.control.decide_result = DecideResult(
        Check.allow(Stage.APPROVAL, "approved", "ok"), approval(ApprovalState.APPROVED))
    path = "/v1/approvals/apr_f760be47cf33fefc/approve"
    status, _, _ = await api.call("POST", f"{path}?token={APPROVE_TOKEN}", token=HUMAN_TOKEN)
    assert status == 200
    assert api.control.decided == [("apr_f760be47cf33fefc", APPROVE_TOKEN, ALICE, "approve", "")]
    assert only_audit(api).path == path  # the query (and its token) is never audited


@pytest.mark.parametrize(("code", "http"), [
    ("unknown_approval", 404), ("already_decided", 409), ("approval_expired", 410),
    ("unavailable", 503), ("self_approval", 403), ("bad_signature", 403), ("expired", 403),
    ("not_allowed_to_approve", 403),
])
async def test_a_refused_decision_maps_its_code(api: Api, code: str, http: int) -> None:
    api.control.decide_result = DecideResult(
        Check.refuse(Stage.APPROVAL, code, f"because {code}"), approval())
    path = "/v1/approvals/apr_f760be47cf33fefc/approve"
    status, body, _ = await api.call("POST", path, json={"token": APPROVE_TOKEN})
    assert (status, body) == (http, {"error": code, "detail": f"because {code}"})
    assert only_audit(api) == AuditCall(COPILOT, "POST", path, http, code, f"because {code}")


@pytest.mark.parametrize(("path_suffix", "raw", "problems"), [
    ("", {}, ["body: field 'token' is required"]),
    ("", {"token": 5, "note": 1},
     ["body: field 'token' must be a string, got int",
      "body: field 'note' must be a string, got int"]),
    ("", {"token": ""}, ["body: field 'token' must not be empty"]),
    ("", {"token": APPROVE_TOKEN, "approver": "human:bob"},
     ["body: unknown field 'approver'"]),
    (f"?token={APPROVE_TOKEN}", {"token": APPROVE_TOKEN},
     ["token: give it in the body or in the query, not both"]),
    ("", ["x"], ["body: must be a JSON object, got list"]),
])
async def test_bad_decision_bodies_are_400(api: Api, path_suffix: str, raw: Any,
                                           problems: list[str]) -> None:
    path = "/v1/approvals/apr_f760be47cf33fefc/deny"
    status, body, _ = await api.call("POST", path + path_suffix, json=raw)
    assert (status, body) == (400, {"error": "bad_request", "problems": problems})
    assert api.control.decided == []
    assert only_audit(api) == AuditCall(COPILOT, "POST", path, 400, "bad_request",
                                        "; ".join(problems))


async def test_a_decision_body_must_be_json(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/approvals/apr_1/approve",
                                     data=f"token={APPROVE_TOKEN}",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["error"]) == (415, "unsupported_media_type")
    big = {"token": APPROVE_TOKEN, "note": "x" * MAX_BODY_BYTES}
    status, body, _ = await api.call("POST", "/v1/approvals/apr_1/approve", json=big)
    assert (status, body["error"]) == (413, "body_too_large")
    assert api.control.decided == []


# --- failures of the control plane, unknown routes, the document ---------------------------

async def test_a_control_plane_failure_is_500_and_audited(api: Api) -> None:
    api.control.fail_with = RuntimeError("boom")
    status, body, _ = await api.call("POST", "/v1/actions", json=BODY)
    detail = "the server failed (RuntimeError); see its log"
    assert (status, body) == (500, {"error": "internal_error", "detail": detail})
    assert only_audit(api) == AuditCall(COPILOT, "POST", "/v1/actions", 500, "internal_error",
                                        detail)


@pytest.mark.parametrize("outage", [
    ApprovalStoreUnavailable("approval store could not list pending approvals: refused"),
    StoreUnavailable("budget store timed out"),
    RequestStoreError("request store unavailable: ConnectionError: refused"),
])
async def test_a_store_outage_is_503(api: Api, outage: Exception) -> None:
    api.control.fail_with = outage
    status, body, _ = await api.call("GET", "/v1/approvals")
    assert (status, body) == (503, {"error": "unavailable", "detail": str(outage)})
    assert only_audit(api) == AuditCall(COPILOT, "GET", "/v1/approvals", 503, "unavailable",
                                        str(outage))


async def test_unknown_routes_under_v1_are_json_and_audited(api: Api) -> None:
    status, body, _ = await api.call("GET", "/v1/nothing")
    assert (status, body) == (404, {"error": "not_found", "detail": "no route GET /v1/nothing"})
    status, body, headers = await api.call("DELETE", "/v1/actions")
    assert (status, body) == (405, {"error": "method_not_allowed",
                                    "detail": "DELETE is not allowed here; allowed: POST"})
    assert headers["Allow"] == "POST"
    status, body, _ = await api.call("GET", "/v1/nothing", token=None)
    assert (status, body["error"]) == (401, "missing_token")
    assert [(a.actor, a.status, a.code) for a in api.control.audits] == [
        (COPILOT, 404, "not_found"), (COPILOT, 405, "method_not_allowed"),
        (None, 401, "missing_token")]


async def test_the_openapi_document_is_served_without_auth(api: Api) -> None:
    status, body, _ = await api.call("GET", "/openapi.json", token=None)
    assert (status, body) == (200, load_openapi())
    assert only_audit(api) == AuditCall(None, "GET", "/openapi.json", 200, "ok",
                                        "openapi document")


async def test_metrics_and_health_are_untouched(api: Api) -> None:
    async with api.session.get(api.url + "/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"ok": True})
    async with api.session.get(api.url + "/metrics") as resp:
        assert resp.status == 200
    async with api.session.get(api.url + "/nowhere") as resp:
        assert resp.status == 404
    assert api.control.audits == []



async def test_a_key_reused_for_another_change_is_409(api: Api) -> None:
    api.control.submit_status = SubmitStatus.REFUSED
    clash = Check.refuse(Stage.LIMITS, "idempotency_conflict", "key reused for another change")
    api.control.submit_checks = (clash,)
    status, body, headers = await api.call("POST", "/v1/actions", json=BODY)
    assert (status, body["status"], body["reason"]) == (
        409, "refused", "limits: idempotency_conflict: key reused for another change")
    assert "Location" not in headers
