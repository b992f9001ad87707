"""Static bounds: exact scores and evidence, bound validation, bounds in the state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.errors import InputError
from detectors.static_bounds import StaticBounds

NAN = float("nan")


def make() -> StaticBounds:
    det = StaticBounds()
    det.resize(4)
    # row 0: [0, 10]; row 1: upper 5 only; row 2: lower -1 only; row 3: no bounds
    det.set_bounds([0, 1, 2, 3], [0.0, NAN, -1.0, NAN], [10.0, 5.0, NAN, NAN])
    return det


@pytest.mark.parametrize(
    ("row", "value", "score", "baseline", "deviation"),
    [
        (0, 5.0, 0.0, NAN, 0.0),
        (0, 10.0, 0.0, NAN, 0.0),  # on the bound is inside
        (0, 0.0, 0.0, NAN, 0.0),
        (0, 12.5, 1.0, 10.0, 2.5),
        (0, -0.5, 1.0, 0.0, -0.5),
        (1, 5.5, 1.0, 5.0, 0.5),
        (1, -1e9, 0.0, NAN, 0.0),
        (2, -3.0, 1.0, -1.0, -2.0),
        (2, 1e9, 0.0, NAN, 0.0),
        (3, 1e12, 0.0, NAN, 0.0),
    ],
)
def test_exact_score_baseline_and_deviation(
    row: int, value: float, score: float, baseline: float, deviation: float
) -> None:
    out = make().update([row], [1.0], [value])
    assert out.score.tolist() == [score]
    np.testing.assert_array_equal(out.baseline, [baseline])
    assert out.deviation.tolist() == [deviation]


def test_no_memory_and_no_warm_up() -> None:
    det = make()
    out = det.update([0, 0, 0, 0], [3.0, 1.0, 2.0, 4.0], [11.0, 11.0, 5.0, -2.0])
    assert out.score.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert out.deviation.tolist() == [1.0, 1.0, 0.0, -2.0]


def test_bounds_travel_with_the_state_and_new_rows_are_unbounded() -> None:
    state = make().export_state()
    restored = StaticBounds()
    restored.load_state(state)
    restored.resize(5)
    out = restored.update([0, 4], [1.0, 1.0], [11.0, 1e9])
    assert out.score.tolist() == [1.0, 0.0]


def test_setting_bounds_again_replaces_them() -> None:
    det = make()
    det.set_bounds([0], [NAN], [NAN])
    assert det.update([0], [1.0], [1e6]).score.tolist() == [0.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0], [5.0], [1.0]), "row 0: lower bound 5.0 is above upper bound 1.0"),
        (([0, 1], [1.0], [2.0, 3.0]), "rows, lower and upper differ in length: 2, 1, 2"),
        (([4], [1.0], [2.0]), "rows must be in [0, 4)"),
        (([0], [-np.inf], [2.0]), "bounds must be finite or NaN (no bound)"),
        (([[0]], [[1.0]], [[2.0]]), "rows, lower and upper must be 1-D"),
    ],
)
def test_bad_bounds_are_refused(args: tuple[Any, Any, Any], message: str) -> None:
    det = make()
    with pytest.raises(InputError) as err:
        det.set_bounds(*args)
    assert str(err.value) == message
    assert det.update([0], [1.0], [12.5]).deviation.tolist() == [2.5]
