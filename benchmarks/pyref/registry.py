"""Which reference stands for which detector class, built from a configured instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from benchmarks.pyref.absence import PyAbsence
from benchmarks.pyref.common import PyDetector
from benchmarks.pyref.ewma import PyEwmaZScore
from benchmarks.pyref.level_shift import PyLevelShift
from benchmarks.pyref.mad import PyRobustMad
from benchmarks.pyref.seasonal import PySeasonalBaseline
from benchmarks.pyref.slo_burn import PySloBurnRate
from benchmarks.pyref.spike import PySpike
from benchmarks.pyref.static_bounds import PyStaticBounds
from detectors.absence import Absence
from detectors.base import Detector
from detectors.ewma import EwmaZScore
from detectors.level_shift import LevelShift
from detectors.mad import RobustMad
from detectors.seasonal import SeasonalBaseline
from detectors.slo_burn import SloBurnRate
from detectors.spike import Spike
from detectors.static_bounds import StaticBounds

D = TypeVar("D", bound=Detector)


def _like(cls: type[D], like: Callable[[D], PyDetector]) -> Callable[[Detector], PyDetector]:
    def build(det: Detector) -> PyDetector:
        if not isinstance(det, cls):
            raise TypeError(f"{cls.__name__}'s reference got a {type(det).__name__}")
        return like(det)

    return build


REFERENCES: dict[type[Detector], Callable[[Detector], PyDetector]] = {
    EwmaZScore: _like(EwmaZScore, PyEwmaZScore.like),
    StaticBounds: _like(StaticBounds, PyStaticBounds.like),
    RobustMad: _like(RobustMad, PyRobustMad.like),
    LevelShift: _like(LevelShift, PyLevelShift.like),
    Spike: _like(Spike, PySpike.like),
    SeasonalBaseline: _like(SeasonalBaseline, PySeasonalBaseline.like),
    SloBurnRate: _like(SloBurnRate, PySloBurnRate.like),
    Absence: _like(Absence, PyAbsence.like),
}
"""Detector class → builder of its reference from a configured, possibly warm, instance.

Exact classes, so a subclass with different math is never silently covered."""


def reference_for(det: Detector) -> PyDetector | None:
    """The reference of ``det`` with its parameters and state, or None if its class has none.

    >>> reference_for(EwmaZScore()).name, reference_for(RobustMad()).name
    ('ewma', 'mad')
    """
    build = REFERENCES.get(type(det))
    return build(det) if build is not None else None
