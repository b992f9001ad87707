"""The paging sections of the YAML: the pager adapters, incidents (grouping, inhibition,
maintenance windows), on-call escalation policies, change events and the console link.

Secrets (routing keys, API keys, webhook URLs that embed a token, signing secrets) are never
in the YAML: each adapter names the environment variable that holds its secret, and an
adapter whose variable is unset is not started (a warning says so).

>>> inc = IncidentsConfig.model_validate({"group_by": ["service", "region"],
...     "inhibit": [{"name": "down", "source": {"metric": "up"}, "target": {"metric": "*"}}]})
>>> inc.spec().by, inc.rules()[0].equal
(('service', 'region'), ('service',))
>>> pol = OnCallConfig.model_validate({"policies": {"default": {"levels": [
...     {"receivers": ["slack"], "ack_timeout_s": 300}, {"receivers": ["pagerduty"]}]}}})
>>> [lv.receivers for lv in pol.policy("default").levels]
[('slack',), ('pagerduty',)]
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from escalation.incidents import GroupingSpec, InhibitRule
from escalation.oncall import EscalationPolicy, Level
from escalation.silences import Silence, maintenance_window

Positive = Annotated[float, Field(gt=0.0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PagerDutyConfig(_Model):
    routing_key_env: str = "HOTPATH_PAGERDUTY_ROUTING_KEY"
    url: str = "https://events.pagerduty.com/v2/enqueue"
    timeout_s: Positive = 5.0


class SlackConfig(_Model):
    # An incoming-webhook URL embeds its token: a secret, so it comes from the environment.
    webhook_url_env: str = "HOTPATH_SLACK_WEBHOOK_URL"
    timeout_s: Positive = 5.0


class OpsgenieConfig(_Model):
    api_key_env: str = "HOTPATH_OPSGENIE_API_KEY"
    api_url: str = "https://api.opsgenie.com"
    responders: tuple[dict[str, str], ...] = ()
    timeout_s: Positive = 5.0


class AlertmanagerConfig(_Model):
    url: str = Field(description="Alertmanager's base URL; alerts go to <url>/api/v2/alerts")
    timeout_s: Positive = 5.0


class InhibitConfig(_Model):
    name: str
    source: dict[str, str] = Field(min_length=1)
    target: dict[str, str] = Field(min_length=1)
    equal: tuple[str, ...] = ("service",)

    def rule(self) -> InhibitRule:
        return InhibitRule(self.name, self.source, self.target, self.equal)


class MaintenanceConfig(_Model):
    matchers: dict[str, str] = Field(min_length=1)
    start: AwareDatetime
    end: AwareDatetime
    comment: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceConfig:
        if self.end <= self.start:
            raise ValueError("a maintenance window must end after it starts")
        return self

    def silence(self) -> Silence:
        return maintenance_window(self.matchers, self.start.timestamp(), self.end.timestamp(),
                                  self.comment)


class IncidentsConfig(_Model):
    group_by: tuple[str, ...] = ("service", "metric_family", "region")
    # A finding within 5 min of the incident's opening joins it; 10 min of quiet resolves it
    # (long enough that a flapping series is one incident, not a page every few minutes).
    window_s: Positive = 300.0
    resolve_after_s: Positive = 600.0
    families: dict[str, str] = Field(default_factory=dict)
    inhibit: tuple[InhibitConfig, ...] = ()
    maintenance: tuple[MaintenanceConfig, ...] = ()

    def spec(self) -> GroupingSpec:
        return GroupingSpec(self.group_by, self.window_s, self.resolve_after_s, self.families)

    def rules(self) -> tuple[InhibitRule, ...]:
        return tuple(r.rule() for r in self.inhibit)

    def windows(self) -> tuple[Silence, ...]:
        return tuple(m.silence() for m in self.maintenance)


class LevelConfig(_Model):
    receivers: tuple[str, ...] = Field(min_length=1)
    ack_timeout_s: Positive = 300.0


class PolicyConfig(_Model):
    levels: tuple[LevelConfig, ...] = Field(min_length=1)
    repeat: Annotated[int, Field(ge=0, le=10)] = 0


class OnCallConfig(_Model):
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    default_policy: str = "default"
    # Inbound webhooks that ack/resolve: their signing secrets, from the environment.
    pagerduty_webhook_secret_env: str = "HOTPATH_PAGERDUTY_WEBHOOK_SECRET"
    slack_signing_secret_env: str = "HOTPATH_SLACK_SIGNING_SECRET"

    def policy(self, name: str) -> EscalationPolicy:
        p = self.policies[name]
        return EscalationPolicy(name, tuple(Level(lv.receivers, lv.ack_timeout_s)
                                            for lv in p.levels), p.repeat)


class ChangesConfig(_Model):
    topic: str = "changes"
    # How far back a page looks for deploys/config/flag changes of the service.
    horizon_s: Positive = 3600.0


class DeliveryConfig(_Model):
    # More than this many trigger pages a minute to one pager become one storm page listing
    # them: past ~20 a minute nobody reads them one by one anyway.
    storm_max_per_min: Annotated[int, Field(ge=1)] | None = 20
    # The fallback receiver hears of a pager failing this often for one page, or failing
    # for this long, before the retries are spent.
    fallback_after_failures: Annotated[int, Field(ge=1)] = 4
    fallback_after_s: Positive = 60.0
    # Per-pager overrides of the declared rate limits (pages per minute).
    rate_per_min: dict[str, Positive] = Field(default_factory=dict)


class ConsoleConfig(_Model):
    url: str = "http://127.0.0.1:8088"


Receiver = Literal["webhook", "console", "pagerduty", "slack", "opsgenie", "alertmanager"]
