"""Request bodies (action API, ``policy test`` files) into Requests; every bad field named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.errors import EscalationError, RequestError
from escalation.request import Actor, ActorKind, Request, Severity
from escalation.request_parse import FIELDS, parse_request

COPILOT = Actor.parse("agent:copilot", roles=("responder",))
NOW = 1764200000.0
MINIMAL = {"action": "restart_pods", "service": "checkout", "idempotency_key": "k1"}


def parse(raw: object, actor: Actor | None = COPILOT) -> Request:
    return parse_request(raw, actor=actor, now=NOW, default_environment="production")


def test_minimal_body_takes_the_defaults() -> None:
    assert parse(MINIMAL) == Request(
        actor=COPILOT, action="restart_pods", service="checkout", environment="production",
        target="checkout", idempotency_key="agent:copilot:k1", requested_at=NOW,
        severity=Severity.WARNING, region="", params={}, reason="", finding_id=None,
        evidence={})


def test_keys_are_scoped_by_the_caller() -> None:
    # Two callers' "k1" are different requests: neither can pre-empt or replay the other's.
    alice = Actor(ActorKind.HUMAN, "alice")
    mine, theirs = parse(MINIMAL), parse(MINIMAL, actor=alice)
    assert (mine.idempotency_key, theirs.idempotency_key) == ("agent:copilot:k1",
                                                              "human:alice:k1")
    assert mine.request_id != theirs.request_id


def test_full_policy_test_file() -> None:
    body = {"actor": "human:alice", "roles": ["sre", "oncall"], "action": "scale_out",
            "service": "payments", "environment": "staging", "region": "eu-west-1",
            "target": "payments-canary", "params": {"replicas": 4}, "severity": "critical",
            "idempotency_key": "alice-7", "reason": "queue depth climbing", "at": 1764300000,
            "finding_id": "f_abc", "evidence": {"score": 0.97}}
    got = parse(body, actor=None)
    assert got == Request(
        actor=Actor(ActorKind.HUMAN, "alice", ("sre", "oncall")), action="scale_out",
        service="payments", environment="staging", target="payments-canary",
        idempotency_key="human:alice:alice-7", requested_at=1764300000.0,
        severity=Severity.CRITICAL,
        region="eu-west-1", params={"replicas": 4}, reason="queue depth climbing",
        finding_id="f_abc", evidence={"score": 0.97})
    assert isinstance(got.requested_at, float)


def test_authenticated_caller_cannot_name_itself_grant_roles_or_pick_the_time() -> None:
    body = {**MINIMAL, "actor": "human:root", "roles": ["admin"], "at": 1.0}
    got = parse(body)
    assert got.actor == COPILOT and got.requested_at == NOW
    # Ignored entirely, so even malformed values there are no error for the API.
    assert parse({**MINIMAL, "actor": 5, "roles": "admin", "at": "soon"}).actor == COPILOT


@pytest.mark.parametrize(("extra", "field", "value"), [
    pytest.param({"finding_id": None}, "finding_id", None, id="null-finding"),
    pytest.param({"region": ""}, "region", "", id="empty-region"),
    pytest.param({"reason": ""}, "reason", "", id="empty-reason"),
    pytest.param({"idempotency_key": "k" * 200}, "idempotency_key", "agent:copilot:" + "k" * 200,
                 id="key-200"),
    pytest.param({"severity": "ERROR"}, "severity", Severity.ERROR, id="severity-any-case"),
])
def test_edge_values_accepted(extra: dict[str, Any], field: str, value: object) -> None:
    assert getattr(parse({**MINIMAL, **extra}), field) == value


@pytest.mark.parametrize(("raw", "actor", "problems"), [
    pytest.param([], COPILOT, ["request: must be a JSON object, got list"], id="list-body"),
    pytest.param(None, COPILOT, ["request: must be a JSON object, got null"], id="null-body"),
    pytest.param({"service": "s", "idempotency_key": "k"}, COPILOT,
                 ["request: field 'action' is required"], id="missing-action"),
    pytest.param({**MINIMAL, "action": ""}, COPILOT,
                 ["request: field 'action' must not be empty"], id="empty-action"),
    pytest.param({**MINIMAL, "service": 3}, COPILOT,
                 ["request: field 'service' must be a string, got int"], id="service-int"),
    pytest.param({**MINIMAL, "environment": None}, COPILOT,
                 ["request: field 'environment' must be a string, got null"], id="env-null"),
    pytest.param({**MINIMAL, "target": ""}, COPILOT,
                 ["request: field 'target' must not be empty"], id="empty-target"),
    pytest.param({**MINIMAL, "region": ["eu"]}, COPILOT,
                 ["request: field 'region' must be a string, got list"], id="region-list"),
    pytest.param({**MINIMAL, "params": [1]}, COPILOT,
                 ["request: field 'params' must be an object, got list"], id="params-list"),
    pytest.param({**MINIMAL, "evidence": "see grafana"}, COPILOT,
                 ["request: field 'evidence' must be an object, got str"], id="evidence-str"),
    pytest.param({**MINIMAL, "severity": "bad"}, COPILOT,
                 ["request: field 'severity': severity 'bad': must be one of info, warning, "
                  "error, critical"], id="severity-unknown"),
    pytest.param({**MINIMAL, "severity": 2}, COPILOT,
                 ["request: field 'severity' must be a string, got int"], id="severity-int"),
    pytest.param({"action": "a", "service": "s"}, COPILOT,
                 ["request: field 'idempotency_key' is required"], id="key-missing"),
    pytest.param({**MINIMAL, "idempotency_key": ""}, COPILOT,
                 ["request: field 'idempotency_key' must be 1..200 characters, got 0"],
                 id="key-empty"),
    pytest.param({**MINIMAL, "idempotency_key": "k" * 201}, COPILOT,
                 ["request: field 'idempotency_key' must be 1..200 characters, got 201"],
                 id="key-too-long"),
    pytest.param({**MINIMAL, "idempotency_key": 42}, COPILOT,
                 ["request: field 'idempotency_key' must be a string, got int"], id="key-int"),
    pytest.param({**MINIMAL, "reason": {"why": "x"}}, COPILOT,
                 ["request: field 'reason' must be a string, got dict"], id="reason-object"),
    pytest.param({**MINIMAL, "finding_id": 7}, COPILOT,
                 ["request: field 'finding_id' must be a string, got int"], id="finding-int"),
    pytest.param({**MINIMAL, "acton": "x"}, COPILOT, ["request: unknown field 'acton'"],
                 id="unknown-field"),
    pytest.param(MINIMAL, None, ["request: field 'actor' is required"], id="actor-missing"),
    pytest.param({**MINIMAL, "actor": "robot:x"}, None,
                 ["request: field 'actor': actor 'robot:x': kind must be one of automation, "
                  "agent, human"], id="actor-kind"),
    pytest.param({**MINIMAL, "actor": "copilot"}, None,
                 ["request: field 'actor': actor 'copilot': expected kind:name, kind one of "
                  "automation, agent, human"], id="actor-no-kind"),
    pytest.param({**MINIMAL, "actor": "human:a", "roles": "sre"}, None,
                 ["request: field 'roles' must be a list of strings, got str"], id="roles-str"),
    pytest.param({**MINIMAL, "actor": "human:a", "roles": ["sre", 1]}, None,
                 ["request: field 'roles' must be a list of strings"], id="roles-mixed"),
    pytest.param({**MINIMAL, "actor": "human:a", "at": "soon"}, None,
                 ["request: field 'at' must be a number, got str"], id="at-str"),
    pytest.param({**MINIMAL, "actor": "human:a", "at": True}, None,
                 ["request: field 'at' must be a number, got bool"], id="at-bool"),
    pytest.param({**MINIMAL, "actor": "human:a", "at": float("nan")}, None,
                 ["request: field 'at' must be finite, got nan"], id="at-nan"),
    pytest.param({"acton": "restart_pods", "service": 3, "params": [], "severity": "bad",
                  "extra": 1}, None,
                 ["request: field 'actor' is required",
                  "request: field 'action' is required",
                  "request: field 'service' must be a string, got int",
                  "request: field 'params' must be an object, got list",
                  "request: field 'severity': severity 'bad': must be one of info, warning, "
                  "error, critical",
                  "request: field 'idempotency_key' is required",
                  "request: unknown field 'acton'",
                  "request: unknown field 'extra'"], id="every-problem-collected"),
])
def test_bad_input_names_every_field(raw: object, actor: Actor | None,
                                     problems: list[str]) -> None:
    with pytest.raises(RequestError) as info:
        parse(raw, actor=actor)
    assert info.value.problems == problems
    assert str(info.value) == "; ".join(problems)
    assert isinstance(info.value, EscalationError)


names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(action=names, service=names, environment=names, region=st.just("") | names,
       target=names, key=st.text(min_size=1, max_size=200), severity=st.sampled_from(Severity),
       params=st.dictionaries(names, st.integers() | names, max_size=3),
       at=st.floats(0, 2e9), reason=st.text(max_size=50))
def test_round_trip_of_any_valid_body(action: str, service: str, environment: str,
                                      region: str, target: str, key: str, severity: Severity,
                                      params: dict[str, Any], at: float, reason: str) -> None:
    body = {"actor": "human:alice", "roles": ["sre"], "action": action, "service": service,
            "environment": environment, "region": region, "target": target, "params": params,
            "severity": severity.label, "idempotency_key": key, "reason": reason, "at": at,
            "finding_id": None, "evidence": {}}
    assert set(body) == set(FIELDS)
    got = parse(body, actor=None)
    expected = {k: v for k, v in body.items() if k not in ("at", "roles")}
    expected.update(actor={"kind": "human", "name": "alice", "roles": ["sre"]},
                    requested_at=at, event_ts=None, request_id=got.request_id,
                    idempotency_key=f"human:alice:{key}")
    assert got.to_dict() == expected
    assert Request.from_dict(got.to_dict()) == got
