"""A one-line picture of a series' recent values, for pages read on a phone at 3 a.m.

Eight unicode block heights scaled between the window's own minimum and maximum, always
``width`` characters wide so it lines up in monospace renderings (Slack code spans, the
console's table): a short history is padded on the left with spaces, so the newest value is
always the rightmost character; a missing value (NaN, ±inf) is drawn as ``·`` rather than
guessed, so a gap in the data reads as a gap.

>>> sparkline([1, 2, 3, 4, 5, 6, 7, 8], width=8)
'▁▂▃▄▅▆▇█'
>>> sparkline([3.0, float("nan"), 9.0], width=5)
'  ▁·█'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
PAD = " "
MISSING = "·"
# The page keeps the last 30 values (escalation.page.RECENT_MAX): one character per value.
DEFAULT_WIDTH = 30
# A flat series is drawn at mid height: neither "all low" nor "all high" is true of it.
_FLAT = BLOCKS[len(BLOCKS) // 2 - 1]


def sparkline(values: Sequence[float], width: int = DEFAULT_WIDTH) -> str:
    """The last ``width`` values as block characters, exactly ``width`` characters long.

    Only the newest values are drawn when there are more than ``width``: the page is about
    what happens now, and averaging buckets would flatten the very spike being paged.

    >>> sparkline([5.0, 5.0, 5.0], width=3)
    '▄▄▄'
    >>> sparkline([], width=4)
    '    '
    >>> sparkline(range(100), width=3)
    '▁▅█'
    >>> sparkline([1.0], width=0)
    Traceback (most recent call last):
    ...
    ValueError: width must be >= 1, got 0
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    window = [float(v) for v in list(values)[-width:]]
    finite = [v for v in window if math.isfinite(v)]
    lo = min(finite, default=0.0)
    hi = max(finite, default=0.0)
    # Two huge floats of opposite sign have a span beyond float range: scale halves then
    # (halving always would flush subnormal spans to zero).
    halve = 0.5 if math.isinf(hi - lo) else 1.0
    span = hi * halve - lo * halve
    top = len(BLOCKS) - 1
    chars = []
    for v in window:
        if not math.isfinite(v):
            chars.append(MISSING)
        elif hi == lo:
            chars.append(_FLAT)
        else:
            frac = (v * halve - lo * halve) / span
            level = math.floor(frac * top + 0.5)  # half up, not to even
            chars.append(BLOCKS[min(max(level, 0), top)])
    return PAD * (width - len(window)) + "".join(chars)
