"""Pure-Python references of the detectors' math: plain floats and lists, one point at a time.

The cost benchmark (:mod:`benchmarks.detectors`) sets the vectorised ensemble against this
loop, so it must do the same arithmetic in the same order, only without numpy:
``tests/detectors/test_pyref_equivalence.py`` checks that it gives the same scores, baselines,
deviations, alerts and end state. Per series state is one Python list per field, indexed by
row, as a straightforward per-point implementation would keep it; a field the detector keeps
in float32 is an ``array('f')`` (see :mod:`benchmarks.pyref.common`).

One module per detector, named as in ``detectors/``. A detector class gets a reference by an
entry in :data:`REFERENCES` (exact class, so a subclass with different math is never silently
covered); :func:`reference_ensemble` says which members of an ensemble had none.
"""

from __future__ import annotations

from benchmarks.pyref.absence import PyAbsence
from benchmarks.pyref.common import PyDetector, Scored
from benchmarks.pyref.ensemble import PyEnsemble, PyPoint, reference_ensemble
from benchmarks.pyref.ewma import PyEwmaZScore
from benchmarks.pyref.level_shift import PyLevelShift
from benchmarks.pyref.mad import PyRobustMad
from benchmarks.pyref.registry import REFERENCES, reference_for
from benchmarks.pyref.seasonal import PySeasonalBaseline
from benchmarks.pyref.slo_burn import PySloBurnRate
from benchmarks.pyref.spike import PySpike
from benchmarks.pyref.static_bounds import PyStaticBounds

__all__ = [
    "REFERENCES",
    "PyAbsence",
    "PyDetector",
    "PyEnsemble",
    "PyEwmaZScore",
    "PyLevelShift",
    "PyPoint",
    "PyRobustMad",
    "PySeasonalBaseline",
    "PySloBurnRate",
    "PySpike",
    "PyStaticBounds",
    "Scored",
    "reference_ensemble",
    "reference_for",
]
