"""Fit page text and JSON inside a receiver's documented limits — truncate, never get a 400.

Every pager API caps its fields (PagerDuty: summary 1024 characters, event 512 KB;
Opsgenie: message 130, description 15000, details 8000 characters). A page that is over a
limit must still arrive, shortened in a way the reader can see and a replay reproduces:

* :func:`truncate_text` cuts a string to N characters ending in ``…``;
* :func:`shorten_key` cuts an over-long dedup key to N characters and keeps it unique with a
  hash of the whole key;
* :func:`shrink_json` fits a JSON object into N bytes by truncating or dropping its largest
  fields first (recursively), leaving a marker where something was cut;
* :func:`page_details` is the structured detail every pager carries (evidence + context),
  for the adapter to shrink into its own budget.

All three are pure and deterministic: the same input gives the same output on every replica.

>>> truncate_text("checkout latency is very high", 16)
'checkout latenc…'
>>> shrink_json({"small": 1, "big": "x" * 100}, 48)
{'small': 1, 'big': 'xxxxxxxxxxxxxxxxxxxxxxxxx…'}
>>> shrink_json({"small": 1, "big": "x" * 100}, 30)
{'small': 1}
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson

from escalation.page import Page

ELLIPSIS = "…"

# Below this many bytes a truncated value says nothing useful ("ab…"): replace it with a
# marker naming how much was cut instead. 24 bytes fits a marker like "[cut 2097152 bytes]".
_MIN_KEEP_BYTES = 24

# Hex digits of SHA-256 kept in a shortened key: 16 (64 bits) makes a collision between two
# live incidents practically impossible while leaving most of a 255-char key readable.
_KEY_HASH_CHARS = 16


def truncate_text(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """``text`` if it has at most ``limit`` characters, else its start ending in ``marker``.

    The result has exactly ``limit`` characters when cut.

    >>> truncate_text("abcdef", 6), truncate_text("abcdefg", 6), len(truncate_text("x" * 99, 9))
    ('abcdef', 'abcde…', 9)
    >>> truncate_text("abc", 0)
    Traceback (most recent call last):
    ...
    ValueError: limit 0 leaves no room for the marker '…'
    """
    if limit <= len(marker):
        raise ValueError(f"limit {limit} leaves no room for the marker {marker!r}")
    if len(text) <= limit:
        return text
    return text[: limit - len(marker)] + marker


def shorten_key(key: str, limit: int) -> str:
    """``key`` if it has at most ``limit`` characters, else its start, ``~`` and a hash.

    Two long keys that share their first ``limit`` characters still shorten differently.

    >>> shorten_key("hotpath-f1", 255)
    'hotpath-f1'
    >>> k = shorten_key("inc-" + "a" * 300, 40)
    >>> len(k), k[:23], k == shorten_key("inc-" + "a" * 300, 40)
    (40, 'inc-aaaaaaaaaaaaaaaaaaa', True)
    """
    if limit <= _KEY_HASH_CHARS + 1:
        raise ValueError(f"limit {limit} leaves no room for the key hash")
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:_KEY_HASH_CHARS]
    return key[: limit - _KEY_HASH_CHARS - 1] + "~" + digest


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (orjson, the encoding the pagers send).

    >>> json_size({"a": "é"})
    10
    """
    return len(orjson.dumps(value))


def shrink_json(obj: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """A copy of ``obj`` whose compact JSON is at most ``max_bytes`` bytes.

    The largest fields are cut first, to one common cap (water-filling): fields under the
    cap survive whole, the big ones share what is left equally. A string is cut to its share
    and ends in ``…``; an object is shrunk the same way, recursively; a list keeps its
    leading items and a ``"… N more"`` marker; a value that cannot keep
    :data:`_MIN_KEEP_BYTES` becomes ``"[cut N bytes]"``, or is dropped if even that does not
    fit. Key order is kept.

    >>> shrink_json({"a": list(range(50)), "b": "keep"}, 60)
    {'a': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, '… 38 more'], 'b': 'keep'}
    >>> cut = shrink_json({"x": "x" * 500, "y": "y" * 900, "z": "small"}, 200)
    >>> [len(v) for v in cut.values()], json_size(cut)
    ([85, 84, 5], 200)
    >>> shrink_json({"n": 1.2345678901234567}, 10)
    {}
    """
    if max_bytes < 2:
        raise ValueError(f"max_bytes {max_bytes} cannot hold even an empty object")
    out = dict(obj)
    total = json_size(out)
    if total <= max_bytes:
        return out
    sizes = {k: json_size(v) for k, v in out.items()}
    overhead = total - sum(sizes.values())  # braces, keys, colons, commas
    for key in sorted(sizes, key=lambda k: -sizes[k]):  # stable: ties keep key order
        cap = _common_cap(list(sizes.values()), max_bytes - overhead)
        if sizes[key] <= cap:
            break
        _fit_field(out, key, sizes[key], cap)
        if key in out:
            sizes[key] = json_size(out[key])
        else:  # dropped: its key's bytes are free too, so the others' cap grows
            del sizes[key]
            overhead = json_size(out) - sum(sizes.values())
    # Only keys themselves can still overflow (a cap below the smallest share): drop the
    # largest fields whole until the rest fits.
    while (total := json_size(out)) > max_bytes:
        key = max(out, key=lambda k: json_size(k) + json_size(out[k]))
        del out[key]
    return out


def _common_cap(sizes: list[int], room: int) -> int:
    """The largest cap c with sum(min(s, c)) <= room (room: bytes left for values)."""
    remaining = room
    ordered = sorted(sizes)
    for i, size in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        if size > share:
            return max(share, 0)
        remaining -= size
    return ordered[-1] if ordered else 0


def _fit_field(out: dict[str, Any], key: str, size: int, target: int) -> None:
    """Cut ``out[key]`` to at most ``target`` bytes, or mark it cut, or drop it."""
    shrunk = _shrink_value(out[key], target) if target >= _MIN_KEEP_BYTES else None
    marker = f"[cut {size} bytes]"
    if shrunk is not None:
        out[key] = shrunk
    elif json_size(marker) <= target:
        out[key] = marker
    else:
        del out[key]


def _shrink_value(value: Any, target: int) -> Any | None:
    """``value`` cut to serialise in at most ``target`` bytes, or None if it cannot be."""
    if isinstance(value, str):
        return _cut_string(value, target)
    if isinstance(value, dict):
        return shrink_json(value, target)
    if isinstance(value, list):
        return _cut_list(value, target)
    return None  # numbers, booleans, null: nothing meaningful to cut


def _cut_string(text: str, target: int) -> str | None:
    # The JSON size grows with the prefix length (escapes make it uneven): binary search for
    # the longest prefix whose quoted form, plus the ellipsis, fits.
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_size(text[:mid] + ELLIPSIS) <= target:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo] + ELLIPSIS
    return cut if json_size(cut) <= target else None


def _cut_list(items: list[Any], target: int) -> list[Any] | None:
    # Keep the longest prefix that fits with a marker saying how many items were left out.
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_size([*items[:mid], f"{ELLIPSIS} {len(items) - mid} more"]) <= target:
            lo = mid
        else:
            hi = mid - 1
    cut = [*items[:lo], f"{ELLIPSIS} {len(items) - lo} more"]
    return cut if json_size(cut) <= target else None


def page_details(page: Page) -> dict[str, Any]:
    """The page's evidence and packed context as one JSON object (not yet shrunk).

    Evidence first (value, baseline, deviation, confidence, detectors, reasons, action; NaN
    as null), then the context's keys; on a clash the context wins, being the richer
    rendering of the same numbers (e.g. ``baseline`` with its window).

    >>> from escalation.page import _example
    >>> page_details(_example())
    {'value': 1.0, 'baseline': 0.5, 'deviation': 2.0, 'confidence': 0.5, \
'detectors': ['ewma'], 'reasons': ['no remediation rule'], 'action': None}
    """
    evidence: dict[str, Any] = {
        "value": _finite(page.value),
        "baseline": _finite(page.baseline),
        "deviation": _finite(page.deviation),
        "confidence": _finite(page.confidence),
        "detectors": list(page.detectors),
        "reasons": list(page.reasons),
        "action": page.action,
    }
    return {**evidence, **page.context}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
