"""The one YAML file: typed, frozen, validated, with errors that point at the line.

``load_config(path)`` parses with ruamel.yaml (which keeps line numbers), validates with
pydantic, and on failure raises :class:`hotpath.errors.ConfigError` listing every problem
as ``(yaml path, line, message)``. ``json_schema()`` is what ``hotpath config schema``
prints for editors.

>>> cfg = parse_config_text("kafka: {bootstrap: '127.0.0.1:9092'}\\n")
>>> cfg.kafka.topic, cfg.kafka.dlq_topic, cfg.decide.page_threshold
('telemetry', 'telemetry.dlq', 0.5)
>>> parse_config_text("kafka:\\n  bootstrap: x\\n  commit_interval_s: -1\\n")
Traceback (most recent call last):
...
hotpath.errors.ConfigError: 1 problem in the config:
  kafka.commit_interval_s (line 3): Input should be greater than 0
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from escalation.catalogue import Catalogue
from escalation.decision import RemediationRule
from escalation.executors.command import template_problems
from escalation.limits import Window
from escalation.policy import policy_problems
from hotpath.detector_config import DetectorSetConfig, ProfileConfig
from hotpath.errors import ConfigError
from hotpath.governance_config import (
    ActionConfig,
    ApiConfig,
    LimitsConfig,
    PolicySection,
    PrincipalConfig,
    ServiceConfig,
    WindowConfig,
    catalogue_of,
)
from hotpath.paging_config import (
    AlertmanagerConfig,
    ChangesConfig,
    ConsoleConfig,
    DeliveryConfig,
    IncidentsConfig,
    OnCallConfig,
    OpsgenieConfig,
    PagerDutyConfig,
    Receiver,
    SlackConfig,
)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaConfig(_Model):
    bootstrap: str = Field(description="host:port[,host:port] of the Kafka brokers")
    topic: str = "telemetry"
    group: str = "hotpath"
    dlq_suffix: str = ".dlq"
    # 5000 records is where decode+detect per batch stays in the low milliseconds while
    # amortising the per-batch overhead (commit bookkeeping, Redis round trips).
    max_batch: Annotated[int, Field(gt=0, le=100_000)] = 5000
    # A batch message carries many points: 5000 of them would be 500,000 points, a quarter
    # second of decode+detect during which nothing else in the loop runs. The loop asks for
    # fewer messages when messages are fat (hotpath.consumer.batch_limit), so a batch stays
    # near this many points: tens of milliseconds of work at the measured ~0.5 us/point.
    max_batch_points: Annotated[int, Field(gt=0, le=10_000_000)] = 50_000
    poll_timeout_ms: Annotated[int, Field(ge=0)] = 100
    # Commits are periodic, not per batch: a commit is a broker round trip.
    commit_interval_s: Positive = 2.0
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # aiokafka's defaults; a member that dies is evicted after the session timeout.
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = 3_000

    @property
    def dlq_topic(self) -> str:
        return self.topic + self.dlq_suffix


class RedisConfig(_Model):
    url: str = "redis://127.0.0.1:6379/0"
    # The budget store is on the hot path's decision step: a slow Redis must not stall the
    # loop, and budgets fail closed, so the timeout is short.
    timeout_s: Positive = 0.25
    key_prefix: str = "hotpath"


class BoundConfig(_Model):
    service: str = "*"
    metric: str = "*"
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> BoundConfig:
        if self.lower is None and self.upper is None:
            raise ValueError("a bound needs lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError("lower must not exceed upper")
        return self


class DetectorsConfig(_Model):
    """The default detector set, per-metric profiles (first match wins), static bounds."""

    default: DetectorSetConfig = DetectorSetConfig()
    profiles: tuple[ProfileConfig, ...] = ()
    bounds: tuple[BoundConfig, ...] = ()
    # How often time itself is checked (absence). 5 s: a silent series is noticed within one
    # interval of its deadline without spending the loop's time on ticks.
    tick_interval_s: Positive = 5.0

    @model_validator(mode="after")
    def _unique_profiles(self) -> DetectorsConfig:
        names = [p.name for p in self.profiles]
        dup = sorted({n for n in names if names.count(n) > 1} | ({"default"} & set(names)))
        if dup:
            raise ValueError(f"profile names must be unique and not 'default': {', '.join(dup)}")
        return self


class DecideConfig(_Model):
    page_threshold: Probability = 0.5
    environment: str = "production"


class RemediationConfig(_Model):
    """An automation rule: which findings it covers and which catalogue action it asks for."""

    name: str
    action: str
    service: str = "*"
    metric: str = "*"
    min_confidence: Probability = 0.9
    target: str = "{service}"
    params: dict[str, Any] = Field(default_factory=dict)
    # This rule's own (action, service) budget; unset: limits.per_action_service.
    budget: WindowConfig | None = None

    def rule(self) -> RemediationRule:
        return RemediationRule(
            name=self.name, action=self.action, service=self.service, metric=self.metric,
            min_confidence=self.min_confidence, target=self.target, params=self.params,
        )

    def budget_window(self) -> Window | None:
        return None if self.budget is None else self.budget.window()


class AutomationConfig(_Model):
    paused: bool = False


class WebhookConfig(_Model):
    url: str
    timeout_s: Positive = 5.0


class ExecutorWebhookConfig(WebhookConfig):
    # HMAC-SHA256 signing key of the request body (the variable's value; unset: unsigned).
    secret_env: str | None = "HOTPATH_WEBHOOK_SECRET"


class CommandExecutorConfig(_Model):
    # Programs a command action may run, as absolute paths: a template naming anything
    # else is refused at run time, and at config check here.
    allow: tuple[str, ...] = Field(min_length=1)
    timeout_s: Positive = 30.0


class ConsolePagerConfig(_Model):
    path: Path | None = None
    echo: bool = True


class WebhookPagerConfig(WebhookConfig):
    # HMAC-SHA256 over timestamp and body (the variable's value; unset: unsigned, warned).
    secret_env: str | None = "HOTPATH_PAGE_WEBHOOK_SECRET"


class PagersConfig(_Model):
    webhook: WebhookPagerConfig | None = None
    console: ConsolePagerConfig | None = ConsolePagerConfig()
    pagerduty: PagerDutyConfig | None = None
    slack: SlackConfig | None = None
    opsgenie: OpsgenieConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    # Where a page goes when its receiver refuses it (400) or keeps failing.
    fallback: Receiver | None = None

    def names(self) -> list[str]:
        return [n for n in ("webhook", "console", "pagerduty", "slack", "opsgenie",
                            "alertmanager") if getattr(self, n) is not None]


class ExecutorsConfig(_Model):
    webhook: ExecutorWebhookConfig | None = None
    command: CommandExecutorConfig | None = None
    # plugin name (entry point in group hotpath.executors) → its options
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)


class AuditMirrorConfig(_Model):
    # Each processor's chain needs its own partition: replicas writing one partition would
    # interleave their chains (give each replica its own `partition`).
    topic: str = "hotpath.audit"
    partition: Annotated[int, Field(ge=0)] = 0


class AuditConfig(_Model):
    path: Path = Path("audit.jsonl")
    # A copy of every record on Kafka, for readers who cannot reach this host's disk;
    # null: the local file only.
    mirror: AuditMirrorConfig | None = AuditMirrorConfig()


class MetricsConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class SpoolConfig(_Model):
    dir: Path = Path("spool")


class Config(_Model):
    version: Literal[1] = 1
    kafka: KafkaConfig
    redis: RedisConfig = RedisConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    decide: DecideConfig = DecideConfig()
    automation: AutomationConfig = AutomationConfig()
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    remediations: tuple[RemediationConfig, ...] = ()
    limits: LimitsConfig = LimitsConfig()
    policy: PolicySection = PolicySection()
    principals: tuple[PrincipalConfig, ...] = ()
    api: ApiConfig = ApiConfig()
    executors: ExecutorsConfig = ExecutorsConfig()
    pagers: PagersConfig = PagersConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    oncall: OnCallConfig = OnCallConfig()
    changes: ChangesConfig | None = ChangesConfig()
    console: ConsoleConfig = ConsoleConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    audit: AuditConfig = AuditConfig()
    metrics: MetricsConfig = MetricsConfig()
    spool: SpoolConfig = SpoolConfig()

    def cross_problems(self) -> list[tuple[tuple[int | str, ...], str]]:
        """Mistakes between sections (a rule naming an action the catalogue lacks, ...),
        each with the YAML path it is about, so the error can name the line."""
        out: list[tuple[tuple[int | str, ...], str]] = []
        seen: set[str] = set()
        for i, r in enumerate(self.remediations):
            if r.name in seen:
                out.append((("remediations", i, "name"),
                            f"remediation name {r.name!r} is used twice"))
            seen.add(r.name)
            if r.action not in self.actions:
                out.append((("remediations", i, "action"),
                            f"action {r.action!r} is not in actions"))
        ex = self.executors
        for name, a in self.actions.items():
            if a.rollback is not None and (a.rollback not in self.actions or a.rollback == name):
                out.append((("actions", name, "rollback"),
                            f"rollback {a.rollback!r} must be another action in actions"))
            if a.executor == "webhook" and ex.webhook is None:
                out.append((("actions", name, "executor"),
                            "runs on the webhook executor: set executors.webhook"))
            if a.executor == "command":
                if ex.command is None:
                    out.append((("actions", name, "executor"),
                                "runs a command: set executors.command.allow"))
                elif a.command[0] not in ex.command.allow:
                    out.append((("actions", name, "command", 0),
                                f"program {a.command[0]!r} is not in executors.command.allow"))
                out.extend((("actions", name, "command"), p)
                           for p in template_problems(a.command))
            plugin = a.executor.removeprefix("plugin:")
            if a.executor.startswith("plugin:") and plugin not in ex.plugins:
                out.append((("actions", name, "executor"),
                            f"runs plugin {plugin!r}: add it to executors.plugins"))
        out.extend((("policy",), p) for p in policy_problems(self.policy.policy(),
                                                             self.catalogue()))
        out.extend(self._paging_problems())
        seen = set()
        for i, p in enumerate(self.principals):
            if p.name in seen:
                out.append((("principals", i, "name"), f"principal {p.name!r} is listed twice"))
            seen.add(p.name)
        return out

    def _paging_problems(self) -> list[tuple[tuple[int | str, ...], str]]:
        out: list[tuple[tuple[int | str, ...], str]] = []
        names = self.pagers.names()
        if self.pagers.fallback is not None and self.pagers.fallback not in names:
            out.append((("pagers", "fallback"),
                        f"fallback {self.pagers.fallback!r} is not a configured pager"))
        oc = self.oncall
        for pname, pol in oc.policies.items():
            for i, level in enumerate(pol.levels):
                out.extend((("oncall", "policies", pname, "levels", i, "receivers"),
                            f"receiver {r!r} is not a configured pager ({', '.join(names)})")
                           for r in level.receivers if r not in names)
        if oc.policies and oc.default_policy not in oc.policies:
            out.append((("oncall", "default_policy"),
                        f"default_policy {oc.default_policy!r} is not in oncall.policies"))
        return out

    def catalogue(self) -> Catalogue:
        return catalogue_of(self.services, self.actions)

    def version_hash(self) -> str:
        """Short hash of the effective config; audit records name the config they ran under."""
        blob = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hotpath configuration"
    return schema


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node along ``loc`` that exists."""
    line: int | None = None
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(part, int) and isinstance(node, list):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            elif isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    if line is None and getattr(node, "lc", None) is not None:
        line = node.lc.line + 1
    return line


def parse_config_text(text: str) -> Config:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(io.StringIO(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([("(yaml)", line, f"invalid YAML: {e.problem}")]) from e
    if not isinstance(data, dict):
        raise ConfigError([("(root)", 1, "the config must be a YAML mapping")])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        items = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            path = ".".join(str(p) for p in loc) or "(root)"
            msg = err["msg"].removeprefix("Value error, ")
            items.append((path, _line_of(data, loc), msg))
        raise ConfigError(items) from e
    cross = cfg.cross_problems()
    if cross:
        raise ConfigError([(".".join(str(p) for p in loc), _line_of(data, loc), msg)
                           for loc, msg in cross])
    return cfg


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([(str(path), None, f"cannot read: {e.strerror}")]) from e
    return parse_config_text(text)


def _merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in updates.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def with_overrides(cfg: Config, updates: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with nested ``updates`` merged in and validated again.

    >>> cfg = parse_config_text("kafka: {bootstrap: a}\\n")
    >>> with_overrides(cfg, {"kafka": {"topic": "t2"}}).kafka.topic
    't2'
    """
    try:
        out = Config.model_validate(_merge(cfg.model_dump(by_alias=True), updates))
    except ValidationError as e:
        raise ConfigError([(".".join(str(p) for p in err["loc"]), None, err["msg"])
                           for err in e.errors()]) from e
    cross = out.cross_problems()
    if cross:
        raise ConfigError([(".".join(str(p) for p in loc), None, msg) for loc, msg in cross])
    return out
