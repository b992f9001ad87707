"""Vectorised anomaly detectors over many series at once: pure numpy, no I/O, no asyncio.

The contract is in :mod:`detectors.base`, the wave planning in :mod:`detectors.waves`.

>>> ens = default_ensemble()
>>> ens.resize(2)
>>> ens.update([0, 1], [0.0, 0.0], [1.0, 2.0]).confidence.tolist()
[0.0, 0.0]
"""

from detectors.base import Detector, DetectorOutput, SeriesArrays, StateField
from detectors.ensemble import Ensemble, EnsembleOutput, default_ensemble
from detectors.errors import DetectorError, InputError, StateError
from detectors.ewma import EwmaZScore
from detectors.static_bounds import StaticBounds
from detectors.waves import Waves, plan_waves

__all__ = [
    "Detector",
    "DetectorError",
    "DetectorOutput",
    "Ensemble",
    "EnsembleOutput",
    "EwmaZScore",
    "InputError",
    "SeriesArrays",
    "StateError",
    "StateField",
    "StaticBounds",
    "Waves",
    "default_ensemble",
    "plan_waves",
]
