"""Ack and resolve over real sockets: hotpath's HttpServer on 127.0.0.1, a real OnCallStore
on the session's redis-server, signed PagerDuty and Slack webhooks built per their docs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from escalation.oncall import EscalationPolicy, Level, Reason, Status, Transition
from escalation.oncall_store import OnCallStore
from escalation.request import Actor, ActorKind
from hotpath.api_auth import Authenticator, Principal, hash_token
from hotpath.http_server import HttpServer, make_app
from hotpath.metrics import Metrics
from hotpath.oncall_api import add_oncall_routes
from tests.hotpath.conftest import AuditCall

pytestmark = pytest.mark.redis

NOW = 1764132000.0
HUMAN_TOKEN = "human-token-5e0c"
AGENT_TOKEN = "agent-token-77f1"
PD_SECRET = b"pd-webhook-secret-0f3a"
SLACK_SECRET = b"slack-signing-secret-77c1"
ALICE = Actor(ActorKind.HUMAN, "alice", ("sre",))
POLICY = EscalationPolicy("checkout", (Level(("alice",), 300.0), Level(("bob",), 600.0)))
SECRETS = (HUMAN_TOKEN, PD_SECRET.decode(), SLACK_SECRET.decode())


@dataclass
class Harness:
    store: OnCallStore
    session: aiohttp.ClientSession
    url: str
    clock: list[float]
    audits: list[AuditCall] = field(default_factory=list)
    changes: list[tuple[Transition, str]] = field(default_factory=list)

    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None:
        self.audits.append(AuditCall(actor, method, path, status, code, detail))

    async def post(self, path: str, *, token: str | None = HUMAN_TOKEN, data: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.session.post(self.url + path, data=data, headers=hdrs) as resp:
            assert resp.content_type == "application/json"
            return resp.status, orjson.loads(await resp.read()), dict(resp.headers)

    def last_audit(self) -> AuditCall:
        return self.audits[-1]


async def serve(redis: aioredis.Redis, **kwargs: Any) -> tuple[Harness, HttpServer]:
    app = make_app(Metrics())
    auth = Authenticator([Principal("alice", ActorKind.HUMAN, ("sre",),
                                    hash_token(HUMAN_TOKEN)),
                          Principal("copilot", ActorKind.AGENT, ("sre",),
                                    hash_token(AGENT_TOKEN))])
    h = Harness(OnCallStore(redis, timeout_s=2.0), aiohttp.ClientSession(), "", [NOW])
    async def changed(t: Transition, via: str) -> None:
        h.changes.append((t, via))

    add_oncall_routes(app, h.store, auth, h, clock=lambda: h.clock[0], on_change=changed,
                      **kwargs)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    h.url = f"http://127.0.0.1:{server.port}"
    return h, server


@pytest.fixture
async def api(redis_client: aioredis.Redis) -> AsyncIterator[Harness]:
    h, server = await serve(redis_client, pagerduty_secrets=[b"older-secret", PD_SECRET],
                            slack_secrets=[SLACK_SECRET], max_body_bytes=4096)
    try:
        yield h
    finally:
        await h.session.close()
        await server.stop()
    for call in h.audits:  # whatever happened, no secret reached the audit
        assert not any(s in repr(call) for s in SECRETS), call


def pd_body(event_type: str = "incident.acknowledged", event_id: str = "01EVT",
            key: str = "inc-1", occurred_at: str = "2025-11-26T04:39:50Z") -> bytes:
    return orjson.dumps({"event": {
        "id": event_id, "event_type": event_type, "resource_type": "incident",
        "occurred_at": occurred_at,
        "agent": {"id": "PLH1HKV", "summary": "Jane Doe", "type": "user_reference"},
        "data": {"id": "PGR0VU2", "type": "incident", "incident_key": key}}})


def pd_headers(body: bytes, secret: bytes = PD_SECRET) -> dict[str, str]:
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-PagerDuty-Signature": f"v1={sig}", "Content-Type": "application/json"}


def slack_body(action_id: str = "ack", key: str = "inc-1", trigger: str = "13.4.ab") -> bytes:
    payload = {"type": "block_actions", "trigger_id": trigger,
               "user": {"id": "U024BE7LH", "username": "jane"},
               "actions": [{"type": "button", "action_id": action_id, "value": key,
                            "action_ts": "1764131999.5"}]}
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def slack_headers(body: bytes, ts: int, secret: bytes = SLACK_SECRET) -> dict[str, str]:
    sig = hmac.new(secret, f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={sig}",
            "Content-Type": "application/x-www-form-urlencoded"}


# --- bearer routes ---------------------------------------------------------------------

async def test_ack_through_the_api_stops_escalation(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW - 60.0)
    status, body, _ = await api.post("/v1/incidents/inc-1/ack")
    assert status == 200
    assert (body["code"], body["detail"]) == ("acked", "inc-1: acknowledged by human:alice")
    assert body["escalation"]["status"] == "acked"
    assert body["escalation"]["acked_at"] == NOW
    assert await api.store.due(NOW + 1e6) == []  # no one else is paged, ever
    assert api.last_audit() == AuditCall(ALICE, "POST", "/v1/incidents/inc-1/ack", 200,
                                         "acked", "inc-1: acknowledged by human:alice")
    (change, via), = api.changes
    assert (change.reason, via) == (Reason.ACKED, "api")

    status, body, _ = await api.post("/v1/incidents/inc-1/ack")
    assert status == 409
    assert body == {"error": "already_acked", "detail": "inc-1: already acknowledged by "
                                                        "human:alice at 2025-11-26T04:40:00Z"}
    assert len(api.changes) == 1  # only changes are told


async def test_resolve_through_the_api_then_ack_is_409(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    status, body, _ = await api.post("/v1/incidents/inc-1/resolve")
    assert (status, body["code"], body["escalation"]["resolved_by"]) == (200, "resolved",
                                                                         "human:alice")
    status, body, _ = await api.post("/v1/incidents/inc-1/ack")
    assert status == 409 and body["error"] == "already_resolved"


async def test_unknown_incident_is_404(api: Harness) -> None:
    status, body, _ = await api.post("/v1/incidents/inc-404/resolve")
    assert (status, body) == (404, {"error": "unknown_incident",
                                    "detail": "no escalation for incident inc-404"})


async def test_bearer_routes_need_a_known_token(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    status, body, headers = await api.post("/v1/incidents/inc-1/ack", token=None)
    assert (status, body["error"]) == (401, "missing_token")
    assert headers["WWW-Authenticate"] == 'Bearer realm="hotpath"'
    status, body, headers = await api.post("/v1/incidents/inc-1/ack", token="guess")
    assert (status, body["error"]) == (401, "unknown_token")
    assert headers["WWW-Authenticate"] == 'Bearer realm="hotpath", error="invalid_token"'
    # A signed webhook's headers are no substitute for a bearer token here.
    status, _, _ = await api.post("/v1/incidents/inc-1/ack", token=None,
                                  headers=pd_headers(b""))
    assert status == 401
    state = await api.store.get("inc-1")
    assert state is not None and state.status is Status.PAGING
    assert [a.actor for a in api.audits] == [None, None, None]


# --- PagerDuty webhook -----------------------------------------------------------------

async def test_signed_pagerduty_ack_acks(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW - 60.0)
    body = pd_body()
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=body,
                                       headers=pd_headers(body))
    assert (status, answer["code"]) == (200, "acked")
    assert answer["escalation"]["acked_by"] == "pagerduty:Jane Doe (PLH1HKV)"
    assert api.last_audit() == AuditCall(
        Actor(ActorKind.HUMAN, "pagerduty:Jane Doe (PLH1HKV)"), "POST",
        "/v1/inbound/pagerduty", 200, "acked",
        "inc-1: acknowledged by pagerduty:Jane Doe (PLH1HKV)")
    assert [via for _, via in api.changes] == ["pagerduty"]


async def test_a_replayed_pagerduty_event_is_ignored(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    ack = pd_body()
    await api.post("/v1/inbound/pagerduty", token=None, data=ack, headers=pd_headers(ack))
    await api.post("/v1/incidents/inc-1/resolve")
    # The captured ack sent again (valid signature, fresh enough) changes nothing.
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=ack,
                                       headers=pd_headers(ack))
    assert (status, answer) == (200, {"code": "duplicate",
                                      "detail": "pagerduty event 01EVT was already applied"})
    state = await api.store.get("inc-1")
    assert state is not None and state.status is Status.RESOLVED


@pytest.mark.parametrize("make_headers, detail", [
    (lambda body: {"X-PagerDuty-Signature": "v1=" + "ab" * 32},
     "pagerduty: no v1 signature matches the body under any of 2 secret(s)"),
    (lambda body: pd_headers(body, b"someone-elses-secret"),
     "pagerduty: no v1 signature matches the body under any of 2 secret(s)"),
    (lambda body: {}, "pagerduty: missing X-PagerDuty-Signature header"),
])
async def test_forged_pagerduty_webhooks_are_401(api: Harness, make_headers: Any,
                                                 detail: str) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    body = pd_body()
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=body,
                                       headers=make_headers(body))
    assert (status, answer) == (401, {"error": "bad_signature", "detail": detail})
    assert api.last_audit() == AuditCall(None, "POST", "/v1/inbound/pagerduty", 401,
                                         "bad_signature", detail)
    state = await api.store.get("inc-1")
    assert state is not None and state.status is Status.PAGING


async def test_stale_pagerduty_event_is_401(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    body = pd_body(occurred_at="2025-11-26T03:00:00Z")
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=body,
                                       headers=pd_headers(body))
    assert (status, answer["detail"]) == (401, "pagerduty: event 01EVT occurred at "
                                          "2025-11-26T03:00:00Z, 6000s old, beyond the "
                                          "3600s tolerance")


async def test_pagerduty_events_we_do_not_act_on_are_200(api: Harness) -> None:
    for body, code in ((pd_body("incident.triggered"), "ignored"),
                       (pd_body(key="someone-elses-incident", event_id="02EVT"),
                        "unknown_incident")):
        status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=body,
                                           headers=pd_headers(body))
        assert (status, answer["code"]) == (200, code)
    bad = b'{"event": {"event_type": "incident.resolved"}}'
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=bad,
                                       headers=pd_headers(bad))
    assert (status, answer["error"]) == (400, "bad_request")
    assert answer["problems"][0] == "pagerduty.event.id: missing or not a non-empty string"
    big = b" " * 5000
    status, answer, _ = await api.post("/v1/inbound/pagerduty", token=None, data=big,
                                       headers=pd_headers(big))
    assert (status, answer["error"]) == (413, "body_too_large")


# --- Slack webhook ---------------------------------------------------------------------

async def test_signed_slack_buttons_ack_then_resolve(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW - 60.0)
    body = slack_body()
    status, answer, _ = await api.post("/v1/inbound/slack", token=None, data=body,
                                       headers=slack_headers(body, int(NOW) - 2))
    assert (status, answer["code"]) == (200, "acked")
    assert answer["escalation"]["acked_by"] == "slack:jane (U024BE7LH)"
    body = slack_body("resolve", trigger="13.5.cd")
    status, answer, _ = await api.post("/v1/inbound/slack", token=None, data=body,
                                       headers=slack_headers(body, int(NOW)))
    assert (status, answer["code"]) == (200, "resolved")
    assert [(t.reason, via) for t, via in api.changes] == [(Reason.ACKED, "slack"),
                                                          (Reason.RESOLVED, "slack")]


async def test_stale_or_forged_slack_requests_are_401(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    body = slack_body()
    cases = [
        (slack_headers(body, int(NOW) - 301),
         "slack: timestamp 1764131699 is 301s old, beyond the 300s tolerance"),
        (slack_headers(body, int(NOW), b"wrong-secret"),
         "slack: X-Slack-Signature does not match the body under any of 1 secret(s)"),
        ({**slack_headers(body, int(NOW)), "X-Slack-Signature": "v0=" + "0" * 64},
         "slack: X-Slack-Signature does not match the body under any of 1 secret(s)"),
    ]
    for headers, detail in cases:
        status, answer, _ = await api.post("/v1/inbound/slack", token=None, data=body,
                                           headers=headers)
        assert (status, answer) == (401, {"error": "bad_signature", "detail": detail})
    # The same request, once its timestamp is fresh, would have worked: only the
    # signature and the clock refused it.
    api.clock[0] = NOW - 300.0
    status, _, _ = await api.post("/v1/inbound/slack", token=None, data=body,
                                  headers=slack_headers(body, int(NOW) - 301))
    assert status == 200
    assert [a.status for a in api.audits] == [401, 401, 401, 200]


async def test_other_slack_buttons_are_ignored(api: Harness) -> None:
    body = slack_body("approve")
    status, answer, _ = await api.post("/v1/inbound/slack", token=None, data=body,
                                       headers=slack_headers(body, int(NOW)))
    assert (status, answer) == (200, {"code": "ignored", "detail": "not an ack or resolve "
                                      "button of a block_actions interaction"})


# --- configuration and outages ---------------------------------------------------------

async def test_webhook_routes_exist_only_with_secrets(redis_client: aioredis.Redis) -> None:
    h, server = await serve(redis_client)
    try:
        body = pd_body()
        async with h.session.post(h.url + "/v1/inbound/pagerduty", data=body,
                                  headers=pd_headers(body)) as resp:
            assert resp.status == 404
    finally:
        await h.session.close()
        await server.stop()


async def test_redis_down_is_503_everywhere() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1)
    h, server = await serve(dead, pagerduty_secrets=[PD_SECRET])
    try:
        status, answer, _ = await h.post("/v1/incidents/inc-1/ack")
        assert (status, answer["error"]) == (503, "unavailable")
        assert answer["detail"].startswith("on-call store could not read inc-1: ")
        body = pd_body()
        status, answer, _ = await h.post("/v1/inbound/pagerduty", token=None, data=body,
                                         headers=pd_headers(body))
        assert (status, answer["error"]) == (503, "unavailable")
        assert answer["detail"].startswith("on-call store could not remember pagerduty "
                                           "event 01EVT: ")
    finally:
        await h.session.close()
        await server.stop()
        await dead.aclose()


async def test_a_machine_may_not_ack_or_resolve(api: Harness) -> None:
    await api.store.start(POLICY, "inc-1", NOW)
    for kind in ("ack", "resolve"):
        status, body, _ = await api.post(f"/v1/incidents/inc-1/{kind}", token=AGENT_TOKEN)
        assert (status, body) == (403, {"error": "not_a_person", "detail":
                                        f"agent:copilot may not {kind} incidents; only people"})
    state = await api.store.get("inc-1")
    assert state is not None and state.status.value == "paging"  # escalation goes on
    assert api.changes == []
