"""Helpers shared by the detector tests: discovery of every detector, one-series feeding."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, TypeVar

import numpy as np

import detectors
from detectors.base import Detector, DetectorOutput

D = TypeVar("D", bound=Detector)


def discover() -> list[type[Detector]]:
    """Every concrete Detector subclass in the package, sorted by name."""
    found: dict[str, type[Detector]] = {}
    for info in pkgutil.iter_modules(detectors.__path__):
        module = importlib.import_module(f"detectors.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Detector) and not inspect.isabstract(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.values(), key=lambda cls: cls.name)


def new_detector(cls: type[D], n_series: int = 1, **params: Any) -> D:
    """``cls(**params)`` sized for ``n_series`` rows."""
    det = cls(**params)
    det.resize(n_series)
    return det


def feed(det: Detector, values: Any, start: float = 0.0, row: int = 0) -> DetectorOutput:
    """One series' values, one per second from ``start``, in one update."""
    vals = np.asarray(values, dtype=np.float64)
    n = len(vals)
    return det.update(np.full(n, row, np.intp), start + np.arange(n, dtype=np.float64), vals)
