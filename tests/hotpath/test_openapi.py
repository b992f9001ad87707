"""The OpenAPI document (hotpath/openapi.yaml) is valid, matches the routes, and tells the truth.

"Tells the truth": every documented (route, status) is produced by the live server, and
every body the server sends validates against the schema documented for its status.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from escalation.approvals import ApprovalState, DecideResult
from escalation.request_store import RequestStoreError
from escalation.submission import SubmitStatus
from escalation.verdict import Check, Stage
from hotpath.api import MAX_BODY_BYTES, add_api_routes, load_openapi
from hotpath.api_auth import Authenticator
from tests.hotpath.test_api import (
    APPROVE_TOKEN,
    BODY,
    HUMAN_TOKEN,
    NOW,
    Api,
    RecordingControlPlane,
    approval,
    start_api,
)

DOC = load_openapi()
DOC_URI = "urn:hotpath:openapi"
REGISTRY = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


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
    for path, method, op in operations():
        codes = set(op["responses"])
        public = op.get("security") == []
        assert public == (path == "/openapi.json"), path
        if not public:
            assert {"401", "500"} <= codes, (method, path)
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


def test_the_documented_routes_are_the_registered_routes() -> None:
    app = web.Application()
    add_api_routes(app, RecordingControlPlane(), Authenticator([]), clock=lambda: NOW,
                   default_environment="production")
    registered = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None}
    documented = {(method, path) for path, method, _ in operations()}
    assert registered == documented


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


@pytest.fixture
async def live() -> Api:
    control = RecordingControlPlane()
    server, session, url = await start_api(control)
    api = Api(control, session, url)
    try:
        await exercise(api)
    finally:
        await session.close()
        await server.stop()
    return api


async def test_every_response_matches_its_documented_schema(live: Api) -> None:
    for method, path, status, body, headers in live.seen:
        op = DOC["paths"][template_of(path)][method.lower()]
        response = deref(op["responses"].get(str(status)))
        assert response is not None, f"{method} {path} answered undocumented {status}"
        validator(response["content"]["application/json"]["schema"]).validate(body)
        for name in response.get("headers", {}):
            assert name in headers, (method, path, status, name)


async def test_every_documented_status_is_produced(live: Api) -> None:
    produced = {(template_of(p), m, str(s)) for m, p, s, _, _ in live.seen}
    documented = {(path, method, code) for path, method, op in operations()
                  for code in op["responses"]}
    assert documented == produced
