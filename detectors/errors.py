"""Errors raised by the detectors package.

::

    DetectorError
    ├── InputError      bad arguments: parameters out of range, arrays of different lengths,
    │                   a series row outside [0, n_series), a plan made for another batch
    └── StateError      a state dict that does not fit this detector: missing or unexpected
                        key, wrong dtype, wrong shape; the message names the key

Both are raised before any state is touched, so a refused call leaves the detector as it was.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error the detectors package raises."""


class InputError(DetectorError, ValueError):
    """An argument does not fit: the message says which one and why.

    >>> raise InputError("alpha must be in (0, 1], got 0")
    Traceback (most recent call last):
    ...
    detectors.errors.InputError: alpha must be in (0, 1], got 0
    """


class StateError(DetectorError):
    """A state dict handed to ``load_state`` does not fit; ``key`` names the array at fault.

    >>> err = StateError("ewma.mean", "missing")
    >>> str(err), err.key, err.problem
    ("state key 'ewma.mean': missing", 'ewma.mean', 'missing')
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"state key {key!r}: {problem}")
        self.key = key
        self.problem = problem
