"""The OpenAPI document (hotpath/openapi.yaml) is valid, matches the routes, and tells the truth.

"Tells the truth": every documented (route, status) is produced by the live server, and
every body the server sends validates against the schema documented for its status. The
server carries every route set the document covers — the action API, incidents and their
signed webhooks, silences — with real on-call and silence stores on the session's Redis,
and the same routes on a Redis nobody listens on for the 503s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from jsonschema import Draft202012Validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from escalation.approvals import ApprovalState, DecideResult
from escalation.errors import RequestStoreError
from escalation.inbound import (
    PAGERDUTY_SIGNATURE_HEADER,
    SLACK_SIGNATURE_HEADER,
    SLACK_TIMESTAMP_HEADER,
)
from escalation.oncall import EscalationPolicy, Level
from escalation.oncall_store import OnCallStore
from escalation.request import ActorKind
from escalation.silences import SilenceStore
from escalation.submission import SubmitStatus
from escalation.verdict import Check, Stage
from hotpath.api import MAX_BODY_BYTES, add_api_routes, load_openapi
from hotpath.api_auth import Authenticator, Principal, hash_token
from hotpath.http_server import HttpServer, make_app
from hotpath.metrics import Metrics
from hotpath.oncall_api import add_oncall_routes
from hotpath.silences_api import MAX_BODY_BYTES as SILENCE_MAX_BODY_BYTES
from hotpath.silences_api import add_silence_routes
from tests.escalation.test_inbound import (
    PD_SECRET,
    SLACK_SECRET,
    pd_event,
    pd_sign,
    signed_slack,
    slack_body,
)
from tests.hotpath.test_api import (
    AGENT_TOKEN,
    APPROVE_TOKEN,
    BODY,
    HUMAN_TOKEN,
    NOW,
    Api,
    RecordingControlPlane,
    approval,
)

DOC = load_openapi()
DOC_URI = "urn:hotpath:openapi"
REGISTRY = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# The signed webhooks: no bearer token, the sender's signature headers instead.
SIGNATURE_HEADERS = {
    "/v1/inbound/pagerduty": {PAGERDUTY_SIGNATURE_HEADER},
    "/v1/inbound/slack": {SLACK_TIMESTAMP_HEADER, SLACK_SIGNATURE_HEADER},
}
PUBLIC = {"/openapi.json", *SIGNATURE_HEADERS}
SECRETS = (AGENT_TOKEN, HUMAN_TOKEN, APPROVE_TOKEN, PD_SECRET.decode(), SLACK_SECRET.decode())
POLICY = EscalationPolicy("checkout", (Level(("alice",), 300.0), Level(("bob",), 600.0)))


def deref(node: Any) -> Any:
    """Follow local ``$ref``s (responses, parameters, examples) to the object they name."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = DOC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def absolute(schema: Any) -> Any:
    """The schema with ``#/...`` refs made absolute, so they resolve in the document."""
    if isinstance(schema, dict):
        return {k: (DOC_URI + v if k == "$ref" and v.startswith("#/") else absolute(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [absolute(v) for v in schema]
    return schema


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(absolute(schema), registry=REGISTRY)


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method.upper(), op


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


# --- the document itself -------------------------------------------------------------------

def test_the_document_is_openapi_3_1_with_bearer_security() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert DOC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert DOC["security"] == [{"bearer": []}]
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids))


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    inline = [v for k, v in walk(DOC["paths"]) if k == "schema"]
    inline += [v for k, v in walk(DOC["components"]["responses"]) if k == "schema"]
    assert len(inline) > 20
    for schema in inline:
        Draft202012Validator.check_schema(schema)


def test_every_ref_resolves() -> None:
    refs = [v for k, v in walk(DOC) if k == "$ref"]
    assert refs
    for ref in refs:
        assert deref({"$ref": ref}) is not None


def test_every_operation_documents_its_errors() -> None:
    action_api = registered(action_api_only=True)
    for path, method, op in operations():
        codes = set(op["responses"])
        public = op.get("security") == []
        assert public == (path in PUBLIC), path
        if public and path not in SIGNATURE_HEADERS:
            pass  # the document itself
        elif (method, path) in action_api:
            assert {"401", "500"} <= codes, (method, path)
        elif path in SIGNATURE_HEADERS:
            assert {"200", "400", "401", "413", "503"} <= codes, (method, path)
            headers = {deref(p)["name"] for p in op["parameters"] if deref(p)["in"] == "header"}
            assert headers == SIGNATURE_HEADERS[path]
            assert all(deref(p)["required"] for p in op["parameters"])
        elif not public:
            assert {"401", "503"} <= codes, (method, path)
        for code, response in op["responses"].items():
            assert deref(response)["description"], (method, path, code)


def test_every_example_validates_against_its_schema() -> None:
    checked = 0
    for key, node in walk(DOC):
        if key != "content":
            continue
        for media in node.values():
            check = validator(media["schema"])
            for example in media.get("examples", {}).values():
                check.validate(deref(example)["value"])
                checked += 1
    assert checked >= 20


def add_routes(app: web.Application, control: RecordingControlPlane, auth: Authenticator,
               oncall: OnCallStore, silences: SilenceStore, *,
               action_api: bool = True) -> None:
    """Every route set the document covers, the webhooks with their secrets configured."""
    if action_api:
        add_api_routes(app, control, auth, clock=lambda: NOW,
                       default_environment="production")
    add_oncall_routes(app, oncall, auth, control, clock=lambda: NOW,
                      pagerduty_secrets=[PD_SECRET], slack_secrets=[SLACK_SECRET])
    add_silence_routes(app, silences, auth, control, clock=lambda: NOW)


def registered(*, action_api_only: bool = False) -> set[tuple[str, str]]:
    app = web.Application()
    control, auth = RecordingControlPlane(), Authenticator([])
    if action_api_only:
        add_api_routes(app, control, auth, clock=lambda: NOW,
                       default_environment="production")
    else:
        # Registering routes opens no connection: the client is never used.
        unused = aioredis.Redis(host="127.0.0.1", port=1)
        add_routes(app, control, auth, OnCallStore(unused), SilenceStore(unused))
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.resource is not None}


def test_the_documented_routes_are_the_registered_routes() -> None:
    documented = {(method, path) for path, method, _ in operations()}
    assert registered() == documented
    assert registered(action_api_only=True) < documented


# --- the live server against the document -------------------------------------------------

def template_of(path: str) -> str:
    path = path.split("?")[0]
    for template in DOC["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return str(template)
    raise AssertionError(f"{path} is not documented")


async def exercise(api: Api) -> None:
    """One call per documented (route, status), through the real server."""
    c = api.control
    act, apr = "/v1/actions", "/v1/approvals/apr_f760be47cf33fefc"
    for outcome in SubmitStatus:
        c.submit_status = outcome
        await api.call("POST", act, json=BODY)  # 200, 202 x3, 403
    c.submit_status = SubmitStatus.REFUSED
    c.submit_checks = (Check.refuse(Stage.LIMITS, "idempotency_conflict", "key reused"),)
    await api.call("POST", act, json=BODY)  # 409
    c.submit_checks = None
    await api.call("POST", act, json={**BODY, "actor": "human:alice"})  # 403 actor_mismatch
    await api.call("POST", act, json={"service": 1})                    # 400
    await api.call("POST", act, token="nope", json=BODY)                # 401
    await api.call("POST", act, json={"x": "y" * MAX_BODY_BYTES})       # 413
    await api.call("POST", act, data=b"{}", headers={"Content-Type": "text/plain"})  # 415

    c.states["req_991e2b039bae6d1a"] = {
        "request": approval().request.to_dict(), "status": "queued",
        "detail": "limits: claimed", "at": NOW,
        "history": [{"status": "queued", "detail": "limits: claimed", "at": NOW}]}
    await api.call("GET", f"{act}/req_991e2b039bae6d1a")  # 200
    await api.call("GET", f"{act}/req_0000000000000000")  # 404
    c.approvals = {"apr_f760be47cf33fefc": approval()}
    await api.call("GET", "/v1/approvals")                # 200
    await api.call("GET", apr)                            # 200
    await api.call("GET", "/v1/approvals/apr_0")          # 404

    for decision in ("approve", "deny"):
        path = f"{apr}/{decision}"
        c.decide_result = DecideResult(Check.allow(Stage.APPROVAL, "approved", "ok"),
                                       approval(ApprovalState.APPROVED))
        await api.call("POST", path, token=HUMAN_TOKEN, json={"token": APPROVE_TOKEN})
        for code in ("self_approval", "unknown_approval", "already_decided",
                     "approval_expired", "unavailable"):
            c.decide_result = DecideResult(Check.refuse(Stage.APPROVAL, code, "no"), None)
            await api.call("POST", path, json={"token": APPROVE_TOKEN})
        await api.call("POST", path, json={"token": 1})                  # 400
        await api.call("POST", path, token=None, json={"token": "t"})    # 401
        await api.call("POST", path, json={"note": "n" * MAX_BODY_BYTES})  # 413
        await api.call("POST", path, data=b"x", headers={"Content-Type": "text/plain"})  # 415

    await api.call("GET", "/openapi.json", token=None)

    # The control plane failing (500) or its stores down (503), on every route.
    for failure in (RuntimeError("boom"), RequestStoreError("request store unavailable")):
        c.fail_with = failure
        await api.call("POST", act, json=BODY)
        await api.call("GET", f"{act}/req_991e2b039bae6d1a")
        await api.call("GET", "/v1/approvals")
        await api.call("GET", apr)
        for decision in ("approve", "deny"):
            await api.call("POST", f"{apr}/{decision}", json={"token": APPROVE_TOKEN})
        c.fail_with = None
    for path in ("/v1/actions/x", "/v1/approvals", "/v1/approvals/x"):
        await api.call("GET", path, token=None)  # 401 on the GET routes


async def expect(api: Api, status: int, code: str | None, method: str, path: str,
                 **kwargs: Any) -> Any:
    """One call that must answer ``status`` with this ``code`` (or ``error``)."""
    got, body, _ = await api.call(method, path, **kwargs)
    named = body.get("code", body.get("error")) if isinstance(body, dict) else None
    assert (got, named) == (status, code), body
    return body


async def exercise_incidents(api: Api, store: OnCallStore) -> None:
    """Every status of the bearer ack/resolve routes, on real escalations."""
    for key in ("inc_1", "inc_2", "inc_3"):
        await store.start(POLICY, key, NOW - 60.0)
    inc, human = "/v1/incidents", {"token": HUMAN_TOKEN}
    await expect(api, 200, "acked", "POST", f"{inc}/inc_1/ack", **human)
    await expect(api, 409, "already_acked", "POST", f"{inc}/inc_1/ack", **human)
    await expect(api, 200, "resolved", "POST", f"{inc}/inc_1/resolve", **human)
    await expect(api, 409, "already_resolved", "POST", f"{inc}/inc_1/resolve", **human)
    await expect(api, 409, "already_resolved", "POST", f"{inc}/inc_1/ack", **human)
    for kind in ("ack", "resolve"):
        await expect(api, 404, "unknown_incident", "POST", f"{inc}/inc_0/{kind}", **human)
        await expect(api, 401, "missing_token", "POST", f"{inc}/inc_2/{kind}", token=None)
        # The agent's token: only a person may stop an escalation.
        await expect(api, 403, "not_a_person", "POST", f"{inc}/inc_2/{kind}")


def pagerduty(body: bytes, secret: bytes = PD_SECRET) -> dict[str, Any]:
    return {"token": None, "data": body, "headers": {
        PAGERDUTY_SIGNATURE_HEADER: pd_sign(secret, body), "Content-Type": "application/json"}}


def slack(body: bytes, ts: int = int(NOW)) -> dict[str, Any]:
    return {"token": None, "data": body, "headers": {
        **signed_slack(body, ts), "Content-Type": "application/x-www-form-urlencoded"}}


async def exercise_webhooks(api: Api) -> None:
    """Every answer of the signed webhooks (inc_2 and inc_3 are still paging)."""
    pd, sl = "/v1/inbound/pagerduty", "/v1/inbound/slack"
    ack = pd_event(id="E1", data={"incident_key": "inc_2"})
    await expect(api, 200, "acked", "POST", pd, **pagerduty(ack))
    await expect(api, 200, "duplicate", "POST", pd, **pagerduty(ack))
    await expect(api, 200, "already_acked", "POST", pd,
                 **pagerduty(pd_event(id="E2", data={"incident_key": "inc_2"})))
    await expect(api, 200, "resolved", "POST", pd, **pagerduty(
        pd_event("incident.resolved", id="E3", data={"incident_key": "inc_2"})))
    await expect(api, 200, "already_resolved", "POST", pd,
                 **pagerduty(pd_event(id="E4", data={"incident_key": "inc_2"})))
    await expect(api, 200, "unknown_incident", "POST", pd,
                 **pagerduty(pd_event(id="E5", data={"incident_key": "inc_9"})))
    await expect(api, 200, "ignored", "POST", pd, **pagerduty(pd_event("incident.triggered")))
    await expect(api, 400, "bad_request", "POST", pd,
                 **pagerduty(b'{"event": {"event_type": "incident.resolved"}}'))
    await expect(api, 401, "bad_signature", "POST", pd, **pagerduty(ack, b"not-our-secret"))
    await expect(api, 401, "bad_signature", "POST", pd,
                 **pagerduty(pd_event(id="E6", occurred_at="2025-11-26T03:00:00Z")))
    await expect(api, 413, "body_too_large", "POST", pd,
                 **pagerduty(b" " * (MAX_BODY_BYTES + 1)))

    button = slack_body("ack", "inc_3", trigger_id="T1")
    await expect(api, 200, "acked", "POST", sl, **slack(button))
    await expect(api, 200, "duplicate", "POST", sl, **slack(button))
    await expect(api, 200, "already_acked", "POST", sl,
                 **slack(slack_body("acknowledge", "inc_3", trigger_id="T2")))
    await expect(api, 200, "resolved", "POST", sl,
                 **slack(slack_body("hotpath_resolve", "inc_3", trigger_id="T3")))
    await expect(api, 200, "already_resolved", "POST", sl,
                 **slack(slack_body("ack", "inc_3", trigger_id="T4")))
    await expect(api, 200, "unknown_incident", "POST", sl,
                 **slack(slack_body("ack", "inc_9", trigger_id="T5")))
    await expect(api, 200, "ignored", "POST", sl, **slack(slack_body("approve")))
    await expect(api, 400, "bad_request", "POST", sl, **slack(b"text=hello"))
    await expect(api, 401, "bad_signature", "POST", sl,
                 **slack(slack_body(trigger_id="T6"), int(NOW) - 301))
    await expect(api, 413, "body_too_large", "POST", sl,
                 **slack(b"payload=" + b"x" * MAX_BODY_BYTES))


async def exercise_silences(api: Api) -> None:
    """Create, list and expire a silence; every refusal."""
    sil, human = "/v1/silences", {"token": HUMAN_TOKEN}
    body = {"matchers": {"service": "checkout", "metric": "http_*"}, "ends_at": NOW + 3600,
            "comment": "deploying v2"}
    made = await expect(api, 201, None, "POST", sil, json=body, **human)
    # The documented example is what the server makes of the documented request.
    op = DOC["paths"][sil]["post"]
    assert body == op["requestBody"]["content"]["application/json"]["examples"]["deploy"][
        "value"]
    assert made == op["responses"]["201"]["content"]["application/json"]["examples"][
        "created"]["value"]
    listed = await expect(api, 200, None, "GET", sil)  # any caller, the agent too
    assert listed == [made]
    # Only a person may set or lift a silence.
    await expect(api, 403, "not_a_person", "POST", sil, json=body)
    await expect(api, 403, "not_a_person", "DELETE", f"{sil}/{made['id']}")
    await expect(api, 200, None, "DELETE", f"{sil}/{made['id']}", **human)
    await expect(api, 404, "unknown_silence", "DELETE", f"{sil}/{made['id']}", **human)
    for bad in ({**body, "matchers": {}}, {**body, "ends_at": NOW - 1},
                {**body, "created_by": "human:mallory"}, [body]):
        await expect(api, 400, "bad_request", "POST", sil, json=bad, **human)
    await expect(api, 400, "bad_request", "POST", sil, data=b"{",
                 headers={"Content-Type": "application/json"}, **human)
    await expect(api, 413, "too_large", "POST", sil,
                 json={**body, "comment": "y" * 4 * SILENCE_MAX_BODY_BYTES}, **human)
    for method, path in (("POST", sil), ("GET", sil), ("DELETE", f"{sil}/{made['id']}")):
        await expect(api, 401, "missing_token", method, path, token=None)


async def exercise_outage(down: Api) -> None:
    """The same routes with their stores on a Redis nobody listens on: 503 everywhere."""
    for kind in ("ack", "resolve"):
        await expect(down, 503, "unavailable", "POST", f"/v1/incidents/inc_1/{kind}",
                     token=HUMAN_TOKEN)
    await expect(down, 503, "unavailable", "POST", "/v1/inbound/pagerduty",
                 **pagerduty(pd_event()))
    await expect(down, 503, "unavailable", "POST", "/v1/inbound/slack", **slack(slack_body()))
    await expect(down, 503, "unavailable", "POST", "/v1/silences", token=HUMAN_TOKEN, json={
        "matchers": {"service": "checkout"}, "ends_at": NOW + 60, "comment": "deploy"})
    await expect(down, 503, "unavailable", "GET", "/v1/silences")
    await expect(down, 503, "unavailable", "DELETE", "/v1/silences/sil_0000000000000000",
                 token=HUMAN_TOKEN)


async def serve(control: RecordingControlPlane, redis: aioredis.Redis, *,
                action_api: bool = True) -> tuple[HttpServer, str]:
    app = make_app(Metrics())
    auth = Authenticator([
        Principal("copilot", ActorKind.AGENT, ("responder",), hash_token(AGENT_TOKEN)),
        Principal("alice", ActorKind.HUMAN, ("sre",), hash_token(HUMAN_TOKEN)),
    ])
    add_routes(app, control, auth, OnCallStore(redis, timeout_s=2.0),
               SilenceStore(redis, timeout_s=2.0), action_api=action_api)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    return server, f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def live(redis_client: aioredis.Redis) -> Api:
    control = RecordingControlPlane()
    server, url = await serve(control, redis_client)
    # No retries: each call fails at once instead of backing off until the store's timeout.
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    outage, outage_url = await serve(control, dead, action_api=False)
    session = aiohttp.ClientSession()
    api = Api(control, session, url)
    try:
        await exercise(api)
        await exercise_incidents(api, OnCallStore(redis_client))
        await exercise_webhooks(api)
        await exercise_silences(api)
        await exercise_outage(Api(control, session, outage_url, api.seen))
    finally:
        await session.close()
        await server.stop()
        await outage.stop()
        await dead.aclose()
    return api


@pytest.mark.redis
async def test_every_call_is_audited_once_without_a_secret(live: Api) -> None:
    audits = live.control.audits
    assert [(a.method, a.path, a.status) for a in audits] == [
        (m, p.split("?")[0], s) for m, p, s, _, _ in live.seen]
    for call in audits:
        assert not any(secret in repr(call) for secret in SECRETS), call


@pytest.mark.redis
async def test_every_response_matches_its_documented_schema(live: Api) -> None:
    for method, path, status, body, headers in live.seen:
        op = DOC["paths"][template_of(path)][method.lower()]
        response = deref(op["responses"].get(str(status)))
        assert response is not None, f"{method} {path} answered undocumented {status}"
        validator(response["content"]["application/json"]["schema"]).validate(body)
        for name in response.get("headers", {}):
            assert name in headers, (method, path, status, name)


@pytest.mark.redis
async def test_every_documented_status_is_produced(live: Api) -> None:
    produced = {(template_of(p), m, str(s)) for m, p, s, _, _ in live.seen}
    documented = {(path, method, code) for path, method, op in operations()
                  for code in op["responses"]}
    assert documented == produced
