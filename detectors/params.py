"""Checks of detector parameters, one line each, with the messages the config shows.

A NaN fails every check (``not nan > 0`` is True), so a missing number never slips through.

>>> positive("z_threshold", 4.0)
>>> fraction("alpha", 0.0)
Traceback (most recent call last):
...
detectors.errors.InputError: alpha must be in (0, 1], got 0.0
"""

from __future__ import annotations

from detectors.errors import InputError


def fraction(name: str, value: float) -> None:
    """``value`` in (0, 1] — a smoothing weight."""
    if not 0.0 < value <= 1.0:
        raise InputError(f"{name} must be in (0, 1], got {value}")


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise InputError(f"{name} must be > 0, got {value}")


def non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise InputError(f"{name} must be >= 0, got {value}")
