"""The action catalogue: every action anyone may request, declared once in the config.

An :class:`ActionSpec` says how an action runs (executor, timeout, whether a retry is
safe), how risky it is, which parameters it takes (a JSON Schema), how to tell that it
worked (:class:`VerifySpec`) and what undoes it (``rollback``, another catalogue action).
A :class:`ServiceSpec` says how many targets a service has (blast radius is a fraction of
them), where it runs and who owns it.

>>> spec = ActionSpec("restart_pods", executor="webhook", risk=Risk.LOW,
...                   params_schema={"type": "object",
...                                  "properties": {"replicas": {"type": "integer", "minimum": 1}},
...                                  "additionalProperties": False})
>>> spec.param_errors({"replicas": 2})
()
>>> for problem in spec.param_errors({"replicas": 0, "force": True}):
...     print(problem)
params.replicas: 0 is less than the minimum of 1
params: Additional properties are not allowed ('force' was unexpected)
>>> Risk.parse("high") >= Risk.MEDIUM
True
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator


class Risk(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Risk:
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"risk {text!r}: must be one of {names}") from None


class Recovery(enum.Enum):
    """What "recovered" means for the finding's series after an action."""

    BELOW = "below"                  # value <= threshold
    ABOVE = "above"                  # value >= threshold
    NEAR_BASELINE = "near_baseline"  # |value - baseline| <= threshold * max(|baseline|, 1e-9)


@dataclass(frozen=True, slots=True)
class VerifySpec:
    """Recovered when ``for_points`` consecutive points of the finding's series meet the
    condition within ``window_s`` seconds (event time) after the action succeeded."""

    window_s: float
    condition: Recovery = Recovery.NEAR_BASELINE
    threshold: float = 0.25
    for_points: int = 3


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One catalogue entry. ``executor`` is ``webhook``, ``command`` or ``plugin:NAME``."""

    name: str
    executor: str = "webhook"
    risk: Risk = Risk.LOW
    params_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    rollback: str | None = None          # a catalogue action that undoes this one
    verify: VerifySpec | None = None
    idempotent: bool = True              # only idempotent actions are retried
    timeout_s: float = 10.0
    max_attempts: int = 3                # 1 when not idempotent (see ``attempts``)
    command: tuple[str, ...] = ()        # argv template for the command executor
    description: str = ""

    @property
    def attempts(self) -> int:
        """Retries only for actions declared idempotent."""
        return self.max_attempts if self.idempotent else 1

    def param_errors(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Every way ``params`` breaks the schema, as ``params.path: message``, sorted."""
        validator = Draft202012Validator(dict(self.params_schema))
        out = []
        for err in validator.iter_errors(dict(params)):
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            out.append(f"params{path}: {err.message}")
        return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service as the control plane sees it: its size (for blast radius), where it runs
    (a request naming another environment or region is refused: a caller cannot pick a
    laxer environment than the one it would change) and who owns it."""

    name: str
    targets: int = 1                     # how many instances/deployments an action can hit
    environments: tuple[str, ...] = ("production",)
    regions: tuple[str, ...] = ()        # empty: any region
    team: str = ""
    runbook: str = ""

    @property
    def environment(self) -> str:
        """Where it runs unless a request says otherwise (the first environment)."""
        return self.environments[0] if self.environments else "production"

    @property
    def region(self) -> str:
        return self.regions[0] if len(self.regions) == 1 else ""


@dataclass(frozen=True, slots=True)
class Catalogue:
    actions: Mapping[str, ActionSpec] = field(default_factory=dict)
    services: Mapping[str, ServiceSpec] = field(default_factory=dict)

    def action(self, name: str) -> ActionSpec | None:
        return self.actions.get(name)

    def knows(self, service: str) -> bool:
        return service in self.services

    def service(self, name: str) -> ServiceSpec:
        """Unknown services count as one target: any action on them touches all of it."""
        return self.services.get(name) or ServiceSpec(name)
