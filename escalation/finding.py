"""What a detector saw: the small value type handed from the runtime to escalation.

A :class:`Finding` is built by the runtime from detector output; escalation never
sees numpy arrays. Its id is deterministic (series key + point timestamp), so a
replayed batch produces the same finding id, the same idempotency key and the same
page dedup key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def series_key(service: str, metric: str, labels: dict[str, str]) -> str:
    """Series key = service + metric + sorted labels (DESIGN.md, wire format v1).

    >>> series_key("checkout", "error_ratio", {"region": "eu", "az": "b"})
    'checkout|error_ratio|az=b,region=eu'
    """
    lab = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{service}|{metric}|{lab}"


def finding_id(key: str, ts: float) -> str:
    """Deterministic id of the finding for one series at one point in time.

    >>> finding_id("a|b|", 1.5) == finding_id("a|b|", 1.5)
    True
    >>> len(finding_id("a|b|", 1.5))
    24
    """
    return hashlib.sha256(f"{key}@{ts!r}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomalous (or at least scored) point of one series, with its evidence."""

    finding_id: str
    series_key: str
    service: str
    metric: str
    labels: dict[str, str]
    ts: float                   # event time of the point (producer's clock)
    value: float
    baseline: float             # what the detectors expected (NaN if unknown)
    deviation: float            # value - baseline in the detector's own units (z, etc.)
    confidence: float           # ensemble score in [0, 1]
    detectors: tuple[str, ...]  # the detectors that agreed (score >= their threshold)
    recent: tuple[float, ...] = field(default=())  # last values of the series, oldest first
    environment: str = "production"
    first_seen: float | None = None  # when the series first went anomalous, if known
