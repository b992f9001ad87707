"""Policy decisions and their reasons, as tables; plus invariants hypothesis searches for."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.catalogue import ActionSpec, Catalogue, Risk, ServiceSpec
from escalation.policy import (
    ApprovalMode,
    ApprovalPolicy,
    ApprovalRight,
    FreezeWindow,
    Policy,
    PolicyRule,
    approval_deadline,
    evaluate,
    may_approve,
    policy_problems,
)
from escalation.request import Actor, Request, Severity
from escalation.verdict import Stage

CATALOGUE = Catalogue(actions={
    "restart_pods": ActionSpec(
        "restart_pods", risk=Risk.LOW,
        params_schema={"type": "object",
                       "properties": {"replicas": {"type": "integer", "minimum": 1}},
                       "additionalProperties": False}),
    "scale_out": ActionSpec("scale_out", risk=Risk.MEDIUM),
    "failover_region": ActionSpec("failover_region", risk=Risk.HIGH),
    "drain_node": ActionSpec("drain_node", executor="command", risk=Risk.CRITICAL),
})

BOT = Actor.parse("automation:latency-restart")
COPILOT = Actor.parse("agent:copilot")
ALICE = Actor.parse("human:alice", roles=("oncall",))
BOB_SRE = Actor.parse("human:bob", roles=("sre",))

FREEZE_START = 1764288000.0  # 2025-11-28T00:00:00Z
FREEZE_END = 1764633600.0    # 2025-12-02T00:00:00Z
BEFORE = FREEZE_START - 86400.0
FREEZE = FreezeWindow("black-friday", start=FREEZE_START, end=FREEZE_END,
                      services=("checkout",), environments=("production",),
                      exempt_actors=("human:*",))


def req(actor: Actor = BOT, **kw: Any) -> Request:
    base: dict[str, Any] = {
        "action": "restart_pods", "service": "checkout", "environment": "production",
        "target": "checkout-1", "idempotency_key": "k1", "requested_at": BEFORE,
        "severity": Severity.ERROR}
    base.update(kw)
    return Request(actor=actor, **base)


def rules(*items: PolicyRule, **kw: Any) -> Policy:
    return Policy(rules=items, **kw)


ANY_BOT = PolicyRule("any-bot")
NO_APPROVAL = ApprovalPolicy(risk_at_least=None)

# (request, policy, now, code, detail) — every refusal ends the checks with exactly this.
REFUSALS = [
    pytest.param(req(action="restrat_pods"), rules(ANY_BOT), BEFORE, "unknown_action",
                 "action 'restrat_pods' is not in the catalogue "
                 "(known: drain_node, failover_region, restart_pods, scale_out)",
                 id="unknown-action"),
    pytest.param(req(params={"replicas": 0, "force": True}), rules(ANY_BOT), BEFORE,
                 "invalid_params",
                 "params.replicas: 0 is less than the minimum of 1; params: Additional "
                 "properties are not allowed ('force' was unexpected)",
                 id="invalid-params-every-error"),
    pytest.param(req(params={"replicas": "two"}), rules(ANY_BOT), BEFORE, "invalid_params",
                 "params.replicas: 'two' is not of type 'integer'", id="invalid-params-type"),
    pytest.param(req(COPILOT, action="scale_out", service="payments", environment="staging"),
                 rules(ANY_BOT, PolicyRule("humans", actors=("human:*",))), BEFORE, "no_rule",
                 "no rule lets agent:copilot run scale_out on payments in staging",
                 id="no-rule-actor-kind"),
    pytest.param(req(action="scale_out"), rules(PolicyRule("r", actions=("restart_*",))),
                 BEFORE, "no_rule",
                 "no rule lets automation:latency-restart run scale_out on checkout in "
                 "production", id="no-rule-action-glob"),
    pytest.param(req(service="payments"), rules(PolicyRule("r", services=("checkout",))),
                 BEFORE, "no_rule",
                 "no rule lets automation:latency-restart run restart_pods on payments in "
                 "production", id="no-rule-service"),
    pytest.param(req(environment="staging"), rules(PolicyRule("r", environments=("prod*",))),
                 BEFORE, "no_rule",
                 "no rule lets automation:latency-restart run restart_pods on checkout in "
                 "staging", id="no-rule-environment"),
    pytest.param(req(region="eu-west-1"), rules(PolicyRule("r", regions=("us-*",))), BEFORE,
                 "no_rule", "no rule lets automation:latency-restart run restart_pods on "
                 "checkout in production (eu-west-1)", id="no-rule-region"),
    pytest.param(req(region=""), rules(PolicyRule("r", regions=("eu-*",))), BEFORE, "no_rule",
                 "no rule lets automation:latency-restart run restart_pods on checkout in "
                 "production", id="no-rule-empty-region-only-matches-star"),
    pytest.param(req(COPILOT), rules(PolicyRule("r", actors=("agent:claude",))), BEFORE,
                 "no_rule", "no rule lets agent:copilot run restart_pods on checkout in "
                 "production", id="no-rule-agent-name"),
    pytest.param(req(severity=Severity.WARNING),
                 rules(PolicyRule("a", min_severity=Severity.ERROR),
                       PolicyRule("b", min_severity=Severity.CRITICAL)), BEFORE,
                 "severity_below_minimum", "severity warning < minimum error of rule 'a'",
                 id="severity-cites-first-matching-rule"),
    pytest.param(req(severity=Severity.INFO),
                 rules(PolicyRule("other", services=("payments",)),
                       PolicyRule("b", min_severity=Severity.WARNING)), BEFORE,
                 "severity_below_minimum", "severity info < minimum warning of rule 'b'",
                 id="severity-ignores-non-matching-rules"),
    pytest.param(req(), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_START, "change_freeze",
                 "change freeze 'black-friday' in force until 2025-12-02T00:00:00Z",
                 id="freeze-start-inclusive"),
    pytest.param(req(), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_END - 0.001, "change_freeze",
                 "change freeze 'black-friday' in force until 2025-12-02T00:00:00Z",
                 id="freeze-just-before-end"),
    pytest.param(req(COPILOT), rules(PolicyRule("c", actors=("agent:*",)), freezes=(FREEZE,)),
                 FREEZE_START, "change_freeze",
                 "change freeze 'black-friday' in force until 2025-12-02T00:00:00Z",
                 id="freeze-agent-not-exempt"),
    pytest.param(req(ALICE), rules(PolicyRule("h", actors=("human:*",)), freezes=(
        FREEZE, FreezeWindow("hard-freeze", FREEZE_START, FREEZE_START + 3600.0))),
        FREEZE_START, "change_freeze",
        "change freeze 'hard-freeze' in force until 2025-11-28T01:00:00Z",
        id="freeze-exempt-from-one-not-the-other"),
]


@pytest.mark.parametrize(("request_", "policy", "now", "code", "detail"), REFUSALS)
def test_refusals(request_: Request, policy: Policy, now: float, code: str,
                  detail: str) -> None:
    verdict = evaluate(request_, CATALOGUE, policy, now)
    last = verdict.checks[-1]
    assert (last.ok, last.stage, last.code, last.detail) == (False, Stage.POLICY, code, detail)
    assert all(c.ok for c in verdict.checks[:-1])
    assert not verdict.allowed and verdict.rule is None
    assert not verdict.approval_required and not verdict.dry_run
    assert verdict.refusal == last
    assert verdict.summary == f"refused: {code}: {detail}"


PASS = ["action_known", "params_valid", "rule_matched", "severity_met"]

# (request, policy, now, rule, the codes after the first four, {code: detail} to check)
ALLOWED = [
    pytest.param(req(), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_END, "any-bot",
                 ["no_freeze", "allowed", "no_approval_needed"],
                 {"no_freeze": "no change freeze in force",
                  "allowed": "allowed by rule 'any-bot'"}, id="freeze-end-exclusive"),
    pytest.param(req(), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_START - 0.001, "any-bot",
                 ["no_freeze", "allowed", "no_approval_needed"], {}, id="freeze-not-started"),
    pytest.param(req(service="payments"), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_START,
                 "any-bot", ["no_freeze", "allowed", "no_approval_needed"], {},
                 id="freeze-other-service"),
    pytest.param(req(environment="staging"), rules(ANY_BOT, freezes=(FREEZE,)), FREEZE_START,
                 "any-bot", ["no_freeze", "allowed", "no_approval_needed"], {},
                 id="freeze-other-environment"),
    pytest.param(req(), rules(ANY_BOT, freezes=(dataclasses.replace(
        FREEZE, actions=("failover_*",)),)), FREEZE_START, "any-bot",
        ["no_freeze", "allowed", "no_approval_needed"], {}, id="freeze-other-action"),
    pytest.param(req(ALICE), rules(PolicyRule("h", actors=("human:*",)), freezes=(FREEZE,)),
                 FREEZE_START, "h", ["freeze_exempt", "allowed", "no_approval_needed"],
                 {"freeze_exempt": "human:alice is exempt from change freeze 'black-friday'"},
                 id="freeze-break-glass-is-recorded"),
    pytest.param(req(), rules(PolicyRule("a", min_severity=Severity.CRITICAL),
                              PolicyRule("b", min_severity=Severity.ERROR)), BEFORE, "b",
                 ["no_freeze", "allowed", "no_approval_needed"],
                 {"rule_matched": "matching rules: 'a', 'b'",
                  "severity_met": "severity error >= minimum error of rule 'b'"},
                 id="first-rule-whose-severity-is-met"),
    pytest.param(req(), rules(PolicyRule("skip", actions=("scale_*",)), PolicyRule("a"),
                              PolicyRule("b")), BEFORE, "a",
                 ["no_freeze", "allowed", "no_approval_needed"],
                 {"rule_matched": "matching rules: 'a', 'b'"}, id="first-match-wins"),
    pytest.param(req(region=""), rules(PolicyRule("r", regions=("*",))), BEFORE, "r",
                 ["no_freeze", "allowed", "no_approval_needed"], {},
                 id="empty-region-matches-star"),
    pytest.param(req(region="eu-west-1"), rules(PolicyRule("us", regions=("us-*",)),
                                                PolicyRule("eu", regions=("eu-*",))),
                 BEFORE, "eu", ["no_freeze", "allowed", "no_approval_needed"], {},
                 id="region-glob"),
    pytest.param(req(action="failover_region"), rules(ANY_BOT), BEFORE, "any-bot",
                 ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "risk high >= high"}, id="approval-by-risk"),
    pytest.param(req(action="drain_node"), rules(ANY_BOT), BEFORE, "any-bot",
                 ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "risk critical >= high"}, id="approval-by-higher-risk"),
    pytest.param(req(action="scale_out"),
                 rules(ANY_BOT, approval=ApprovalPolicy(risk_at_least=Risk.MEDIUM)), BEFORE,
                 "any-bot", ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "risk medium >= medium"}, id="approval-risk-threshold"),
    pytest.param(req(), rules(ANY_BOT, approval=ApprovalPolicy(environments=("prod*",))),
                 BEFORE, "any-bot", ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "environment production requires approval"},
                 id="approval-by-environment"),
    pytest.param(req(action="failover_region"),
                 rules(ANY_BOT, approval=ApprovalPolicy(environments=("production",))),
                 BEFORE, "any-bot", ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "risk high >= high; environment production requires "
                                       "approval"}, id="approval-risk-and-environment"),
    pytest.param(req(), rules(PolicyRule("x", approval=ApprovalMode.ALWAYS)), BEFORE, "x",
                 ["no_freeze", "allowed", "approval_required"],
                 {"approval_required": "rule 'x' always requires approval"},
                 id="approval-always"),
    pytest.param(req(action="drain_node"), rules(PolicyRule("x", approval=ApprovalMode.NEVER),
                                                  approval=ApprovalPolicy(environments=("*",))),
                 BEFORE, "x", ["no_freeze", "allowed", "no_approval_needed"],
                 {"no_approval_needed": "rule 'x' never requires approval"}, id="approval-never"),
    pytest.param(req(), rules(ANY_BOT, approval=ApprovalPolicy(environments=("staging",))),
                 BEFORE, "any-bot", ["no_freeze", "allowed", "no_approval_needed"],
                 {"no_approval_needed": "risk low < high; environment production does not "
                                        "require approval"}, id="no-approval-low-risk"),
    pytest.param(req(action="drain_node"), rules(ANY_BOT, approval=NO_APPROVAL), BEFORE,
                 "any-bot", ["no_freeze", "allowed", "no_approval_needed"],
                 {"no_approval_needed": "no risk gate; environment production does not "
                                        "require approval"}, id="no-risk-gate"),
    pytest.param(req(), rules(ANY_BOT, dry_run=True), BEFORE, "any-bot",
                 ["no_freeze", "allowed", "no_approval_needed", "dry_run"],
                 {"dry_run": "global dry-run"}, id="global-dry-run"),
    pytest.param(req(), rules(PolicyRule("x", dry_run=True)), BEFORE, "x",
                 ["no_freeze", "allowed", "no_approval_needed", "dry_run"],
                 {"dry_run": "rule 'x' is dry-run"}, id="rule-dry-run"),
    pytest.param(req(), rules(PolicyRule("x", dry_run=True), dry_run=True), BEFORE, "x",
                 ["no_freeze", "allowed", "no_approval_needed", "dry_run"],
                 {"dry_run": "global dry-run; rule 'x' is dry-run"}, id="both-dry-run"),
]


@pytest.mark.parametrize(("request_", "policy", "now", "rule", "tail", "details"), ALLOWED)
def test_allowed(request_: Request, policy: Policy, now: float, rule: str, tail: list[str],
                 details: dict[str, str]) -> None:
    verdict = evaluate(request_, CATALOGUE, policy, now)
    assert [c.code for c in verdict.checks] == PASS + tail
    assert all(c.ok and c.stage is Stage.POLICY for c in verdict.checks)
    assert verdict.allowed and verdict.rule == rule and verdict.refusal is None
    assert verdict.approval_required == ("approval_required" in tail)
    assert verdict.dry_run == ("dry_run" in tail)
    got = {c.code: c.detail for c in verdict.checks}
    assert {code: got[code] for code in details} == details


def test_allowed_check_state_names_rule_and_risk_for_the_audit() -> None:
    verdict = evaluate(req(action="failover_region"), CATALOGUE, rules(ANY_BOT), BEFORE)
    allowed = next(c for c in verdict.checks if c.code == "allowed")
    assert allowed.state == {"rule": "any-bot", "risk": "high"}
    approval = next(c for c in verdict.checks if c.code == "approval_required")
    assert approval.state == {"expiry_s": 900.0}


@pytest.mark.parametrize(("request_", "policy", "summary"), [
    pytest.param(req(action="failover_region"), rules(ANY_BOT),
                 "allowed by rule 'any-bot'; approval required: risk high >= high",
                 id="approval"),
    pytest.param(req(), rules(ANY_BOT), "allowed by rule 'any-bot'; no approval needed",
                 id="plain"),
    pytest.param(req(), rules(PolicyRule("x", dry_run=True)),
                 "allowed by rule 'x'; no approval needed; dry-run: rule 'x' is dry-run",
                 id="dry-run"),
])
def test_summary(request_: Request, policy: Policy, summary: str) -> None:
    assert evaluate(request_, CATALOGUE, policy, BEFORE).summary == summary


FAILOVER = req(ALICE, action="failover_region", idempotency_key="alice-1")
RIGHTS = ApprovalPolicy(rights=(
    ApprovalRight(("sre",), actions=("restart_*",)),
    ApprovalRight(("sre", "lead"), environments=("production",)),
    ApprovalRight(("dev",), environments=("staging",)),
))


@pytest.mark.parametrize(("approver", "request_", "ok", "code", "detail"), [
    pytest.param(Actor.parse("human:alice", roles=("sre",)), FAILOVER, False, "self_approval",
                 "human:alice cannot approve their own request", id="self-approval"),
    pytest.param(Actor.parse("agent:copilot", roles=("sre",)), req(COPILOT), False,
                 "self_approval", "agent:copilot cannot approve their own request",
                 id="agent-self-approval"),
    pytest.param(Actor.parse("automation:fixer", roles=("sre",)), FAILOVER, False,
                 "automation_cannot_approve",
                 "automation:fixer cannot approve: automation holds no decision rights",
                 id="automation"),
    pytest.param(BOB_SRE, req(ALICE, action="reboot"), False, "unknown_action",
                 "action 'reboot' is not in the catalogue", id="unknown-action"),
    pytest.param(Actor.parse("human:carol"), FAILOVER, False, "not_authorized",
                 "human:carol (roles: none) may not approve failover_region in production",
                 id="no-roles"),
    pytest.param(Actor.parse("human:dave", roles=("dev", "oncall")), FAILOVER, False,
                 "not_authorized",
                 "human:dave (roles: dev, oncall) may not approve failover_region in production",
                 id="role-right-for-other-environment"),
    pytest.param(Actor.parse("human:dave", roles=("dev",)),
                 req(ALICE, action="failover_region", environment="staging"), True,
                 "authorized", "human:dave may approve failover_region in staging "
                 "(right of roles dev)", id="environment-scoped-right"),
    pytest.param(BOB_SRE, req(ALICE, environment="staging"), True, "authorized",
                 "human:bob may approve restart_pods in staging (right of roles sre)",
                 id="first-matching-right"),
    pytest.param(BOB_SRE, req(ALICE, action="scale_out", environment="staging"), False,
                 "not_authorized", "human:bob (roles: sre) may not approve scale_out in staging",
                 id="action-scoped-right"),
    pytest.param(Actor.parse("human:erin", roles=("lead",)), FAILOVER, True, "authorized",
                 "human:erin may approve failover_region in production "
                 "(right of roles sre, lead)", id="any-role-of-the-right"),
    pytest.param(Actor.parse("human:alice", roles=("sre",)), req(Actor.parse("agent:alice")),
                 True, "authorized", "human:alice may approve restart_pods in production "
                 "(right of roles sre)", id="same-name-other-kind-is-not-self"),
    pytest.param(Actor.parse("agent:reviewer", roles=("sre",)), FAILOVER, True, "authorized",
                 "agent:reviewer may approve failover_region in production "
                 "(right of roles sre, lead)", id="agent-with-rights"),
])
def test_may_approve(approver: Actor, request_: Request, ok: bool, code: str,
                     detail: str) -> None:
    check = may_approve(approver, request_, CATALOGUE, Policy(approval=RIGHTS))
    assert (check.ok, check.stage, check.code, check.detail) == (
        ok, Stage.APPROVAL, code, detail)


def test_approval_deadline() -> None:
    assert approval_deadline(rules(approval=ApprovalPolicy(expiry_s=300.0)), 50.0) == 350.0


@pytest.mark.parametrize(("build", "message"), [
    pytest.param(lambda: PolicyRule("r", actors=("humans:*",)),
                 "rule 'r': actor pattern 'humans:*': expected kind:name-glob with kind one of "
                 "automation, agent, human, or *", id="actor-kind-typo"),
    pytest.param(lambda: PolicyRule("r", actors=("copilot",)),
                 "rule 'r': actor pattern 'copilot': expected kind:name-glob with kind one of "
                 "automation, agent, human, or *", id="actor-without-kind"),
    pytest.param(lambda: PolicyRule("r", actions=()),
                 "rule 'r': actions must not be empty (use ('*',) for any)", id="empty-actions"),
    pytest.param(lambda: FreezeWindow("f", start=10.0, end=10.0),
                 "freeze 'f': end 1970-01-01T00:00:10Z must be after start "
                 "1970-01-01T00:00:10Z", id="empty-freeze"),
    pytest.param(lambda: FreezeWindow("f", 0.0, 1.0, exempt_actors=("root",)),
                 "freeze 'f': actor pattern 'root': expected kind:name-glob with kind one of "
                 "automation, agent, human, or *", id="freeze-exempt-pattern"),
    pytest.param(lambda: ApprovalRight(()),
                 "approval right (): roles must not be empty (use ('*',) for any)",
                 id="right-without-roles"),
    pytest.param(lambda: ApprovalPolicy(expiry_s=0.0), "approval: expiry_s must be > 0, got 0.0",
                 id="zero-expiry"),
    pytest.param(lambda: rules(PolicyRule("r"), PolicyRule("r")),
                 "policy: duplicate rule name 'r'", id="duplicate-rule"),
])
def test_invalid_policy_is_refused_at_load(build: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


def test_actor_patterns_accept_star_and_kind_globs() -> None:
    rule = PolicyRule("r", actors=("*:copilot", "human:*"))
    assert rule.matches(req(COPILOT)) and rule.matches(req(ALICE))
    assert not rule.matches(req(BOT))
    assert PolicyRule("all", actors=("*",)).matches(req(BOT))


def test_policy_problems_name_dead_parts() -> None:
    policy = Policy(
        rules=(PolicyRule("typo", actions=("restrat_*",)), PolicyRule("ok")),
        freezes=(FreezeWindow("f", 0.0, 1.0, actions=("deploy",)),),
        approval=ApprovalPolicy(rights=(ApprovalRight(("sre",), actions=("reboot",)),)))
    assert policy_problems(policy, CATALOGUE) == (
        "rule 'typo': actions ('restrat_*',) match no catalogue action",
        "freeze 'f': actions ('deploy',) match no catalogue action",
        "approval right ('sre',): actions ('reboot',) match no catalogue action",
    )
    assert policy_problems(Policy(), CATALOGUE) == (
        "approval: some requests require approval but no rights are defined, "
        "so nobody can approve them",)
    low_only = Catalogue(actions={"restart_pods": ActionSpec("restart_pods")})
    assert policy_problems(rules(ANY_BOT), low_only) == ()


# --- properties ---------------------------------------------------------------------------

ACTORS = [BOT, COPILOT, ALICE, Actor.parse("agent:claude")]
ACTOR_PATTERNS = ["*", "automation:*", "agent:copilot", "human:*", "agent:*"]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    n = draw(st.integers(0, 4))
    rule_list = tuple(PolicyRule(
        f"r{i}",
        actors=tuple(draw(st.lists(st.sampled_from(ACTOR_PATTERNS), min_size=1, max_size=2))),
        actions=(draw(st.sampled_from(["*", "restart_*", "scale_out", "failover_region"])),),
        services=(draw(st.sampled_from(["*", "checkout", "payments"])),),
        environments=(draw(st.sampled_from(["*", "production", "staging"])),),
        regions=(draw(st.sampled_from(["*", "eu-*", "us-east-1"])),),
        min_severity=draw(st.sampled_from(Severity)),
        approval=draw(st.sampled_from(ApprovalMode)),
        dry_run=draw(st.booleans()),
    ) for i in range(n))
    freezes = tuple(FreezeWindow(
        f"f{i}", start=(start := draw(st.floats(0, 100))),
        end=start + draw(st.floats(1, 50)),
        services=(draw(st.sampled_from(["*", "checkout"])),),
        exempt_actors=tuple(draw(st.lists(st.sampled_from(ACTOR_PATTERNS), max_size=1))),
    ) for i in range(draw(st.integers(0, 2))))
    approval = ApprovalPolicy(risk_at_least=draw(st.sampled_from([None, *Risk])),
                              environments=tuple(draw(st.lists(
                                  st.sampled_from(["production", "stag*"]), max_size=1))))
    return Policy(rule_list, freezes, approval, dry_run=draw(st.booleans()))


requests = st.builds(
    req,
    actor=st.sampled_from(ACTORS),
    action=st.sampled_from(["restart_pods", "scale_out", "failover_region", "drain_node", "x"]),
    service=st.sampled_from(["checkout", "payments"]),
    environment=st.sampled_from(["production", "staging"]),
    region=st.sampled_from(["", "eu-west-1", "us-east-1"]),
    severity=st.sampled_from(Severity),
    params=st.sampled_from([{}, {"replicas": 2}, {"replicas": 0}]),
)


@settings(max_examples=300, deadline=None)
@given(request_=requests, policy=policies(), now=st.floats(0, 160))
def test_verdict_shape_invariants(request_: Request, policy: Policy, now: float) -> None:
    verdict = evaluate(request_, CATALOGUE, policy, now)
    assert verdict == evaluate(request_, CATALOGUE, policy, now)  # deterministic
    failing = [c for c in verdict.checks if not c.ok]
    if verdict.allowed:
        assert failing == []
        chosen = next(r for r in policy.rules if r.name == verdict.rule)
        assert chosen.matches(request_) and request_.severity >= chosen.min_severity
        earlier = policy.rules[:policy.rules.index(chosen)]
        assert not any(r.matches(request_) and request_.severity >= r.min_severity
                       for r in earlier)
        assert verdict.dry_run == (policy.dry_run or chosen.dry_run)
        assert verdict.approval_required == any(
            c.code == "approval_required" for c in verdict.checks)
    else:
        assert failing == [verdict.checks[-1]]
        assert verdict.rule is None and not verdict.dry_run


@settings(max_examples=200, deadline=None)
@given(request_=requests, policy=policies(), now=st.floats(0, 160))
def test_lifting_every_freeze_never_turns_allowed_into_refused(
        request_: Request, policy: Policy, now: float) -> None:
    frozen = evaluate(request_, CATALOGUE, policy, now)
    thawed = evaluate(request_, CATALOGUE, dataclasses.replace(policy, freezes=()), now)
    if frozen.allowed:
        assert thawed.allowed and thawed.rule == frozen.rule
    if thawed.allowed and not frozen.allowed:
        assert frozen.checks[-1].code == "change_freeze"


# --- with a service catalogue, the request must say where the service really runs -------

SERVICES = dataclasses.replace(CATALOGUE, services={
    "checkout": ServiceSpec("checkout", 6, environments=("production", "staging"),
                            regions=("eu-west-1",)),
    "search": ServiceSpec("search", 2),  # production only, any region
})


@pytest.mark.parametrize(("request_", "code", "detail"), [
    pytest.param(req(service="nosuch"), "unknown_service",
                 "service 'nosuch' is not in the catalogue (checkout, search)", id="unknown"),
    pytest.param(req(environment="dr"), "wrong_environment",
                 "service 'checkout' runs in production, staging, not dr", id="environment"),
    pytest.param(req(region="us-east-1"), "wrong_region",
                 "service 'checkout' runs in eu-west-1, not us-east-1", id="region"),
    pytest.param(req(service="search", environment="staging"), "wrong_environment",
                 "service 'search' runs in production, not staging", id="default-env"),
])
def test_a_service_must_be_known_and_asked_for_where_it_runs(request_: Request, code: str,
                                                             detail: str) -> None:
    verdict = evaluate(request_, SERVICES, rules(ANY_BOT), BEFORE)
    last = verdict.checks[-1]
    assert (verdict.allowed, last.code, last.detail) == (False, code, detail)


@pytest.mark.parametrize(("request_", "detail"), [
    pytest.param(req(), "service 'checkout' runs in production", id="production"),
    pytest.param(req(environment="staging", region="eu-west-1"),
                 "service 'checkout' runs in staging (eu-west-1)", id="staging-region"),
    pytest.param(req(service="search", region="anywhere"),
                 "service 'search' runs in production (anywhere)", id="any-region"),
])
def test_a_known_service_where_it_runs_passes(request_: Request, detail: str) -> None:
    verdict = evaluate(request_, SERVICES, rules(ANY_BOT), BEFORE)
    assert verdict.allowed
    (check,) = [c for c in verdict.checks if c.code == "service_known"]
    assert check.detail == detail
