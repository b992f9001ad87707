"""The sparkline: exact strings, fixed width, gaps for missing values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.sparkline import BLOCKS, sparkline

NAN = math.nan


@pytest.mark.parametrize(("values", "width", "expected"), [
    ([1, 2, 3, 4, 5, 6, 7, 8], 8, "▁▂▃▄▅▆▇█"),
    ([8, 7, 6, 5, 4, 3, 2, 1], 8, "█▇▆▅▄▃▂▁"),
    ([0.0, 10.0, 0.0], 3, "▁█▁"),
    ([0.0, 10.0, 0.0], 6, "   ▁█▁"),              # short history: padded on the left
    ([0.004, 0.004, 0.005, 0.21], 4, "▁▁▁█"),      # a spike dwarfs the noise
    ([5.0, 5.0, 5.0], 3, "▄▄▄"),                   # flat: mid height
    ([], 4, "    "),
    ([NAN, NAN], 3, " ··"),                        # nothing finite: all gaps
    ([1.0, NAN, 3.0], 3, "▁·█"),
    ([1.0, math.inf, -math.inf, 3.0], 4, "▁··█"),  # infinities are gaps, not the scale
    (list(range(10)), 4, "▁▃▆█"),                  # only the newest 4: 6, 7, 8, 9
    ([0.0, 3.5, 7.0], 3, "▁▅█"),                   # 3.5 is level 3.5: rounds half up to 4
    ([-1e308, 1e308], 2, "▁█"),                    # span overflows float: still scaled
], ids=repr)
def test_exact_strings(values: list[float], width: int, expected: str) -> None:
    assert sparkline(values, width) == expected


def test_default_width_is_the_pages_recent_window() -> None:
    assert sparkline([1.0]) == " " * 29 + "▄"


def test_width_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^width must be >= 1, got -2$"):
        sparkline([1.0], width=-2)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=60),
       st.integers(min_value=1, max_value=40))
def test_always_width_characters_of_the_alphabet(values: list[float], width: int) -> None:
    line = sparkline(values, width)
    assert len(line) == width
    assert set(line) <= set(BLOCKS) | {" ", "·"}
    finite = [v for v in values[-width:] if math.isfinite(v)]
    if finite and max(finite) > min(finite):
        assert "▁" in line and "█" in line  # the window's own min and max reach both ends


def test_subnormal_differences_still_span_the_height() -> None:
    assert sparkline([0.0, 5e-324], 2) == "▁█"
