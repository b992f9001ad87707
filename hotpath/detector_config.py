"""Detector configuration: which detectors run on which series, with which parameters.

A *detector set* names the detectors of one ensemble and their parameters; every field maps
onto the detector's constructor, and the set is built once at validation time so a bad
combination fails ``hotpath config check`` with the YAML line, not at run time. A *profile*
is a detector set plus a selector (service, metric and label globs); a series gets the first
profile whose selector matches it, else the default set.

>>> s = DetectorSetConfig.model_validate({"ewma": {"alpha": 0.1}})
>>> s.build().detector_names
('ewma', 'static')
>>> Selector.model_validate({"metric": "*_ratio", "labels": {"region": "eu-*"}}).matches(
...     "checkout", "error_ratio", {"region": "eu-west-1"})
True
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector
from detectors.ensemble import Ensemble
from detectors.errors import DetectorError
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EwmaConfig(_Model):
    """EWMA z-score (``detectors.ewma.EwmaZScore``)."""

    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    warmup: Annotated[int, Field(ge=0)] = 30
    z_threshold: Positive = 4.0
    min_std: Positive = 1e-6
    rel_min_std: Annotated[float, Field(ge=0.0)] = 1e-3
    clip_z: Positive = 3.0

    def build(self) -> Detector:
        return EwmaZScore(**self.model_dump())


class StaticConfig(_Model):
    """Static bounds (``detectors.static_bounds.StaticBounds``); limits come from ``bounds``."""

    def build(self) -> Detector:
        return StaticBounds()


class EnsembleConfig(_Model):
    fire_threshold: Probability = 0.5
    clear_threshold: Probability = 0.3
    realert_s: Positive = 300.0

    @model_validator(mode="after")
    def _ordered(self) -> EnsembleConfig:
        if self.clear_threshold > self.fire_threshold:
            raise ValueError("clear_threshold must not exceed fire_threshold")
        return self


class DetectorSetConfig(_Model):
    """One ensemble: each present key adds that detector (``null`` leaves it out).

    The order of the fields is the order of the detectors: on equal scores the earlier one
    supplies the evidence a page shows.
    """

    ewma: EwmaConfig | None = EwmaConfig()
    static: StaticConfig | None = StaticConfig()
    ensemble: EnsembleConfig = EnsembleConfig()

    def detector_configs(self) -> list[EwmaConfig | StaticConfig]:
        return [c for name in type(self).model_fields if name != "ensemble"
                if (c := getattr(self, name)) is not None]

    def build(self) -> Ensemble:
        e = self.ensemble
        return Ensemble([c.build() for c in self.detector_configs()],
                        fire_threshold=e.fire_threshold, clear_threshold=e.clear_threshold,
                        realert_s=e.realert_s)

    @model_validator(mode="after")
    def _buildable(self) -> DetectorSetConfig:
        if not self.detector_configs():
            raise ValueError("a detector set needs at least one detector")
        try:
            self.build()
        except (DetectorError, ValueError) as e:
            raise ValueError(str(e)) from e
        return self


class Selector(_Model):
    """Globs over service, metric and label values; an absent label never matches a glob."""

    service: str = "*"
    metric: str = "*"
    labels: dict[str, str] = {}

    def matches(self, service: str, metric: str, labels: dict[str, str]) -> bool:
        return (fnmatchcase(service, self.service) and fnmatchcase(metric, self.metric)
                and all(k in labels and fnmatchcase(labels[k], g)
                        for k, g in self.labels.items()))


class ProfileConfig(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")]
    match: Selector
    detectors: DetectorSetConfig
