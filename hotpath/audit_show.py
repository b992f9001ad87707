"""``hotpath audit show``: the timeline of one service or region, read from the audit log.

Pure functions over parsed records, so the selection is a plain table test:
:func:`parse_since` turns ``--since`` into epoch seconds, :func:`select` keeps the records of
a service/region after a time (kill-switch changes concern every service and are always
kept; checkpoints are bookkeeping and never shown), :func:`render` makes one line each.

>>> parse_since("2h", now=10_000.0), parse_since("1700000000", now=0.0)
(2800.0, 1700000000.0)
>>> parse_since("2026-11-26T05:00:00Z", now=0.0)
1795669200.0
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float) -> float:
    """Epoch seconds from ``30m``/``2h``/``1d`` ago, epoch seconds, or ISO 8601."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a duration like 30m/2h/1d, epoch seconds "
                         "or an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise ValueError(f"--since {text!r}: an ISO 8601 time needs a zone (e.g. Z)")
    return stamp.timestamp()


def _where(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    where = rec.get("body", {}).get("where", {})
    labels = where.get("labels") or {}
    # Governed records name the region; automation's decisions carry the series' labels.
    return where.get("service"), where.get("region") or labels.get("region")


def select(records: Iterable[dict[str, Any]], *, service: str | None, region: str | None,
           since: float | None) -> Iterator[dict[str, Any]]:
    for rec in records:
        if rec.get("kind") == "checkpoint":
            continue
        if since is not None and float(rec.get("ts", 0.0)) < since:
            continue
        if rec.get("kind") == "automation":  # the kill switch: every service's business
            yield rec
            continue
        svc, reg = _where(rec)
        if service is not None and svc != service:
            continue
        if region is not None and reg != region:
            continue
        yield rec


def render(rec: dict[str, Any]) -> str:
    b = rec.get("body", {})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(rec.get("ts", 0.0))))
    kind = rec.get("kind", "?")
    if kind == "automation":
        what = (f"automation {'PAUSED' if b.get('paused') else 'resumed'} by {b.get('actor')}: "
                f"{b.get('reason')}")
        return f"{when}  #{rec.get('seq')}  {what}"
    svc, reg = _where(rec)
    ev = b.get("evidence", {})
    series = ev.get("series", "")
    metric = series.split("|")[1] if series.count("|") >= 2 else ""
    parts = [f"{when}  #{rec.get('seq')}  {kind:<8} {svc or '-'}"
             + (f"/{reg}" if reg else "") + (f" {metric}" if metric else "")]
    if "decision" in b:
        parts.append(f"{b['decision']}: {'; '.join(b.get('reasons', []))}")
    if b.get("action"):
        parts.append(f"{b.get('rule')} → {b['action']} {b.get('target', '')}".rstrip())
    if "outcome" in b:
        parts.append(f"outcome {b['outcome']}" + (f" ({b['status']})" if b.get("status") else ""))
    if "value" in ev and "baseline" in ev:
        parts.append(f"value {ev['value']:.4g} vs {ev['baseline']:.4g}")
    return "  ".join(parts)
