"""The error tree: one root, callers can catch bad input as ValueError, state errors name keys."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.errors import DetectorError, InputError, StateError
from detectors.ewma import EwmaZScore


def test_every_error_is_a_detector_error() -> None:
    assert issubclass(InputError, DetectorError) and issubclass(InputError, ValueError)
    assert issubclass(StateError, DetectorError)


def test_a_detector_refuses_state_with_a_missing_key() -> None:
    det = EwmaZScore()
    det.resize(2)
    with pytest.raises(StateError) as err:
        det.load_state({"mean": np.zeros(2), "var": np.zeros(2)})
    assert str(err.value) == "state key 'count': missing"
    assert (err.value.key, err.value.problem) == ("count", "missing")
    assert det.n_series == 2
