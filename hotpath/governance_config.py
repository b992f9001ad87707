"""The governance sections of the YAML: services, the action catalogue, limits, policy,
principals (who may call the action API) and approvals.

Each model turns into the plain frozen values :mod:`escalation` decides with
(:class:`~escalation.catalogue.Catalogue`, :class:`~escalation.limits.Limits`,
:class:`~escalation.policy.Policy`). Secrets never live here: API principals are named by
the SHA-256 of their bearer token, and signing keys are read from the environment variables
the config names.

>>> a = ActionConfig.model_validate({"risk": "high", "verify": {"window_s": 300,
...                                  "condition": "below", "threshold": 250}})
>>> spec = a.spec("restart_pods")
>>> spec.risk.label, spec.verify.condition.value, spec.attempts
('high', 'below', 3)
>>> from pydantic import ValidationError
>>> try:
...     FreezeConfig.model_validate({"name": "bf", "start": "2026-11-27T00:00:00Z",
...                                  "end": "2026-11-26T00:00:00Z"})
... except ValidationError as e:
...     print(e.errors()[0]["msg"])
Value error, a freeze must end after it starts
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from escalation.catalogue import ActionSpec, Catalogue, Recovery, Risk, ServiceSpec, VerifySpec
from escalation.limits import Limits, Window
from escalation.policy import (
    ApprovalMode,
    ApprovalPolicy,
    ApprovalRight,
    FreezeWindow,
    Policy,
    PolicyRule,
)
from escalation.request import ActorKind, Severity

Positive = Annotated[float, Field(gt=0.0)]
Globs = tuple[str, ...]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceConfig(_Model):
    targets: Annotated[int, Field(ge=1)] = 1
    environments: tuple[str, ...] = Field(("production",), min_length=1)
    regions: tuple[str, ...] = ()   # empty: any region
    team: str = ""
    runbook: str = ""

    def spec(self, name: str) -> ServiceSpec:
        return ServiceSpec(name, self.targets, self.environments, self.regions, self.team,
                           self.runbook)


class VerifyConfig(_Model):
    window_s: Positive
    condition: Literal["below", "above", "near_baseline"] = "near_baseline"
    threshold: float = 0.25
    for_points: Annotated[int, Field(ge=1)] = 3

    def spec(self) -> VerifySpec:
        return VerifySpec(self.window_s, Recovery(self.condition), self.threshold,
                          self.for_points)


class ActionConfig(_Model):
    executor: str = Field("webhook", pattern=r"^(webhook|command|plugin:[A-Za-z0-9_.-]+)$")
    risk: Literal["low", "medium", "high", "critical"] = "low"
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"},
                                   description="JSON Schema (2020-12) of the parameters")
    rollback: str | None = None
    verify: VerifyConfig | None = None
    idempotent: bool = True
    timeout_s: Positive = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    command: tuple[str, ...] = ()
    description: str = ""

    @field_validator("params")
    @classmethod
    def _schema_valid(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(v)
        except SchemaError as e:
            raise ValueError(f"not a valid JSON Schema: {e.message}") from None
        return v

    @model_validator(mode="after")
    def _command_template(self) -> ActionConfig:
        if self.executor == "command" and not self.command:
            raise ValueError("a command action needs a command (argv list)")
        if self.command and self.executor != "command":
            raise ValueError("command is only for executor: command")
        return self

    def spec(self, name: str) -> ActionSpec:
        return ActionSpec(
            name=name, executor=self.executor, risk=Risk.parse(self.risk),
            params_schema=self.params, rollback=self.rollback,
            verify=None if self.verify is None else self.verify.spec(),
            idempotent=self.idempotent, timeout_s=self.timeout_s,
            max_attempts=self.max_attempts, command=self.command,
            description=self.description,
        )


class WindowConfig(_Model):
    limit: Annotated[int, Field(ge=0)]
    window_s: Positive = 3600.0

    def window(self) -> Window:
        return Window(self.limit, self.window_s)


class ConcurrencyConfig(_Model):
    per_service: Annotated[int, Field(ge=1)] | None = None
    global_: Annotated[int | None, Field(ge=1, alias="global")] = None
    # A runner that dies mid-action frees its slot after this; the longest action's timeout
    # and retries fit well inside 10 minutes.
    lease_s: Positive = 600.0

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class BlastRadiusConfig(_Model):
    max_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_services: Annotated[int, Field(ge=1)] | None = None
    window_s: Positive = 3600.0


class LimitsConfig(_Model):
    per_action_service: WindowConfig | None = WindowConfig(limit=3)
    per_service: WindowConfig | None = None
    global_: WindowConfig | None = Field(None, alias="global")
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    cooldown_s: Annotated[float, Field(ge=0.0)] = 0.0
    blast_radius: BlastRadiusConfig = BlastRadiusConfig()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def limits(self) -> Limits:
        def w(c: WindowConfig | None) -> Window | None:
            return None if c is None else c.window()

        return Limits(
            per_action_service=w(self.per_action_service), per_service=w(self.per_service),
            global_=w(self.global_), concurrency_per_service=self.concurrency.per_service,
            concurrency_global=self.concurrency.global_, lease_s=self.concurrency.lease_s,
            cooldown_s=self.cooldown_s, blast_fraction=self.blast_radius.max_fraction,
            blast_window_s=self.blast_radius.window_s,
            max_services=self.blast_radius.max_services,
        )


class RuleConfig(_Model):
    name: str
    actors: Globs = ("automation:*",)
    actions: Globs = ("*",)
    services: Globs = ("*",)
    environments: Globs = ("*",)
    regions: Globs = ("*",)
    min_severity: Literal["info", "warning", "error", "critical"] = "info"
    approval: Literal["never", "always", "policy"] = "policy"
    dry_run: bool = False

    def rule(self) -> PolicyRule:
        return PolicyRule(self.name, self.actors, self.actions, self.services,
                          self.environments, self.regions, Severity.parse(self.min_severity),
                          ApprovalMode(self.approval), self.dry_run)


class FreezeConfig(_Model):
    name: str
    start: AwareDatetime
    end: AwareDatetime
    services: Globs = ("*",)
    environments: Globs = ("*",)
    actions: Globs = ("*",)
    exempt_actors: Globs = ()

    @model_validator(mode="after")
    def _ordered(self) -> FreezeConfig:
        if self.end <= self.start:
            raise ValueError("a freeze must end after it starts")
        return self

    def window(self) -> FreezeWindow:
        return FreezeWindow(self.name, _epoch(self.start), _epoch(self.end), self.services,
                            self.environments, self.actions, self.exempt_actors)


class RightConfig(_Model):
    roles: tuple[str, ...] = Field(min_length=1)
    actions: Globs = ("*",)
    environments: Globs = ("*",)

    def right(self) -> ApprovalRight:
        return ApprovalRight(self.roles, self.actions, self.environments)


class ApprovalConfig(_Model):
    risk_at_least: Literal["low", "medium", "high", "critical"] | None = "high"
    environments: Globs = ()
    expiry_s: Positive = 900.0
    rights: tuple[RightConfig, ...] = ()
    # HMAC key of approve/deny tokens: the variable's value, at least 32 bytes.
    secret_env: str = "HOTPATH_APPROVAL_SECRET"

    def approval(self) -> ApprovalPolicy:
        return ApprovalPolicy(
            None if self.risk_at_least is None else Risk.parse(self.risk_at_least),
            self.environments, self.expiry_s, tuple(r.right() for r in self.rights))


class PolicySection(_Model):
    dry_run: bool = False
    rules: tuple[RuleConfig, ...] = ()
    freezes: tuple[FreezeConfig, ...] = ()
    approval: ApprovalConfig = ApprovalConfig()

    @model_validator(mode="after")
    def _unique_rules(self) -> PolicySection:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"policy rule names must be unique: {', '.join(dup)}")
        return self

    def policy(self) -> Policy:
        return Policy(tuple(r.rule() for r in self.rules),
                      tuple(f.window() for f in self.freezes), self.approval.approval(),
                      self.dry_run)


class PrincipalConfig(_Model):
    """Who may call the action API: named by the SHA-256 (hex) of their bearer token."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]+$")
    kind: Literal["agent", "human"]
    roles: tuple[str, ...] = ()
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def actor_kind(self) -> ActorKind:
        return ActorKind(self.kind)


class ApiConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8088
    # Where people reach the API; approve/deny links in pages start with it.
    public_url: str = "http://127.0.0.1:8088/v1"


def catalogue_of(services: dict[str, ServiceConfig],
                 actions: dict[str, ActionConfig]) -> Catalogue:
    return Catalogue(actions={n: a.spec(n) for n, a in actions.items()},
                     services={n: s.spec(n) for n, s in services.items()})


def _epoch(t: datetime) -> float:
    return t.timestamp()
