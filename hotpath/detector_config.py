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

import inspect
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.absence import Absence
from detectors.base import Detector
from detectors.ensemble import Ensemble
from detectors.errors import DetectorError
from detectors.ewma import EwmaZScore
from detectors.level_shift import LevelShift
from detectors.mad import RobustMad
from detectors.seasonal import SeasonalBaseline
from detectors.slo_burn import SloBurnRate
from detectors.spike import Spike
from detectors.static_bounds import StaticBounds

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


def _default(cls: type[Detector], param: str) -> Any:
    """The constructor's own default, so config and code cannot disagree about it."""
    return inspect.signature(cls).parameters[param].default


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _DetectorModel(_Model):
    """Parameters of one detector class; validated by building it, so the constructor's own
    checks (e.g. LevelShift's ``clip_z > k``) report at this detector's YAML line."""

    detector: ClassVar[type[Detector]]

    def build(self) -> Detector:
        return self.detector(**self.model_dump())

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        try:
            self.build()
        except (DetectorError, ValueError) as e:
            raise ValueError(str(e)) from e
        return self


class EwmaConfig(_DetectorModel):
    """EWMA z-score (``detectors.ewma.EwmaZScore``)."""

    detector: ClassVar[type[Detector]] = EwmaZScore

    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = _default(EwmaZScore, "alpha")
    warmup: Annotated[int, Field(ge=0)] = _default(EwmaZScore, "warmup")
    z_threshold: Positive = _default(EwmaZScore, "z_threshold")
    min_std: Positive = _default(EwmaZScore, "min_std")
    rel_min_std: Annotated[float, Field(ge=0.0)] = _default(EwmaZScore, "rel_min_std")
    clip_z: Positive = _default(EwmaZScore, "clip_z")



class MadConfig(_DetectorModel):
    """Rolling median/MAD robust z (``detectors.mad.RobustMad``)."""

    detector: ClassVar[type[Detector]] = RobustMad

    window: Annotated[int, Field(ge=3)] = _default(RobustMad, "window")
    warmup: Annotated[int, Field(ge=0)] = _default(RobustMad, "warmup")
    z_threshold: Positive = _default(RobustMad, "z_threshold")
    min_scale: Positive = _default(RobustMad, "min_scale")
    rel_min_scale: Annotated[float, Field(ge=0.0)] = _default(RobustMad, "rel_min_scale")



class LevelShiftConfig(_DetectorModel):
    """Two-sided CUSUM against a slow baseline (``detectors.level_shift.LevelShift``)."""

    detector: ClassVar[type[Detector]] = LevelShift

    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = _default(LevelShift, "alpha")
    warmup: Annotated[int, Field(ge=0)] = _default(LevelShift, "warmup")
    k: Annotated[float, Field(ge=0.0)] = _default(LevelShift, "k")
    h: Positive = _default(LevelShift, "h")
    clip_z: Positive = _default(LevelShift, "clip_z")
    min_std: Positive = _default(LevelShift, "min_std")
    rel_min_std: Annotated[float, Field(ge=0.0)] = _default(LevelShift, "rel_min_std")



class SpikeConfig(_DetectorModel):
    """Rate of change against its own scale (``detectors.spike.Spike``)."""

    detector: ClassVar[type[Detector]] = Spike

    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = _default(Spike, "alpha")
    warmup: Annotated[int, Field(ge=0)] = _default(Spike, "warmup")
    z_threshold: Positive = _default(Spike, "z_threshold")
    min_scale: Positive = _default(Spike, "min_scale")
    rel_min_scale: Annotated[float, Field(ge=0.0)] = _default(Spike, "rel_min_scale")
    clip_z: Positive = _default(Spike, "clip_z")



class SeasonalConfig(_DetectorModel):
    """Daily/weekly profile baseline (``detectors.seasonal.SeasonalBaseline``)."""

    detector: ClassVar[type[Detector]] = SeasonalBaseline

    period_s: Positive = _default(SeasonalBaseline, "period_s")
    bins: Annotated[int, Field(ge=1)] = _default(SeasonalBaseline, "bins")
    memory_periods: Positive = _default(SeasonalBaseline, "memory_periods")
    warmup: Annotated[int, Field(ge=0)] = _default(SeasonalBaseline, "warmup")
    z_threshold: Positive = _default(SeasonalBaseline, "z_threshold")
    min_std: Positive = _default(SeasonalBaseline, "min_std")
    rel_min_std: Annotated[float, Field(ge=0.0)] = _default(SeasonalBaseline, "rel_min_std")
    clip_z: Positive = _default(SeasonalBaseline, "clip_z")



class SloBurnConfig(_DetectorModel):
    """Multi-window, multi-burn-rate SLO alerting (``detectors.slo_burn.SloBurnRate``)."""

    detector: ClassVar[type[Detector]] = SloBurnRate

    objective: Annotated[float, Field(gt=0.0, lt=1.0)] = _default(SloBurnRate, "objective")
    scale: Positive = _default(SloBurnRate, "scale")



class AbsenceConfig(_DetectorModel):
    """A series that stops reporting (``detectors.absence.Absence``), driven by clock ticks."""

    detector: ClassVar[type[Detector]] = Absence

    k: Positive = _default(Absence, "k")
    min_silence_s: Annotated[float, Field(ge=0.0)] = _default(Absence, "min_silence_s")
    warmup: Annotated[int, Field(ge=1, le=255)] = _default(Absence, "warmup")
    beta: Annotated[float, Field(gt=0.0, le=1.0)] = _default(Absence, "beta")



class StaticConfig(_DetectorModel):
    """Static bounds (``detectors.static_bounds.StaticBounds``); limits come from ``bounds``."""

    detector: ClassVar[type[Detector]] = StaticBounds


DetectorConfig = (EwmaConfig | MadConfig | LevelShiftConfig | SpikeConfig | SeasonalConfig
                  | SloBurnConfig | AbsenceConfig | StaticConfig)


def _ensemble_default(param: str) -> Any:
    return inspect.signature(Ensemble).parameters[param].default


class EnsembleConfig(_Model):
    """Fusion and hysteresis (``detectors.ensemble.Ensemble``)."""

    fire_threshold: Probability = 0.5
    clear_threshold: Probability = 0.3
    realert_s: Positive = 300.0
    holdoff_s: Annotated[float, Field(ge=0.0)] = _ensemble_default("holdoff_s")
    peak_half_life_s: Annotated[float, Field(ge=0.0)] = _ensemble_default("peak_half_life_s")
    peak_growth: Annotated[float, Field(ge=1.0)] = _ensemble_default("peak_growth")
    peak_per_detector: bool = _ensemble_default("peak_per_detector")

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
    mad: MadConfig | None = None
    level_shift: LevelShiftConfig | None = None
    spike: SpikeConfig | None = None
    seasonal: SeasonalConfig | None = None
    slo_burn: SloBurnConfig | None = None
    absence: AbsenceConfig | None = None
    static: StaticConfig | None = StaticConfig()
    ensemble: EnsembleConfig = EnsembleConfig()

    def detector_configs(self) -> list[DetectorConfig]:
        return [c for name in type(self).model_fields if name != "ensemble"
                if (c := getattr(self, name)) is not None]

    def build(self) -> Ensemble:
        e = self.ensemble
        return Ensemble([c.build() for c in self.detector_configs()], **e.model_dump())

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
    """Globs over service, metric and label values; an absent label never matches a glob.

    ``service`` and ``metric`` take one glob or a list of them (any may match).

    >>> Selector(service=["checkout", "pay*"]).matches("payments", "rps", {})
    True
    """

    service: str | tuple[str, ...] = "*"
    metric: str | tuple[str, ...] = "*"
    labels: dict[str, str] = {}

    def matches(self, service: str, metric: str, labels: dict[str, str]) -> bool:
        return (_any_glob(service, self.service) and _any_glob(metric, self.metric)
                and all(k in labels and fnmatchcase(labels[k], g)
                        for k, g in self.labels.items()))


def _any_glob(value: str, globs: str | tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, g) for g in ((globs,) if isinstance(globs, str) else globs))


class ProfileConfig(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")]
    match: Selector
    detectors: DetectorSetConfig
