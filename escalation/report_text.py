"""The scorecard as text: aligned tables that read at 80 columns (``hotpath report``).

>>> from escalation.report import scorecard
>>> print(render(scorecard([])).splitlines()[0])
hotpath scorecard: 0 records
>>> fmt_duration(42.25), fmt_duration(150.0), fmt_duration(7200.0), fmt_duration(None)
('42.2s', '2.5m', '2.0h', '-')
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from escalation.report import ACTION_RESULTS, APPROVAL_EVENTS, Durations, Scorecard

WIDTH = 80
# Action names are free text from the catalogue; past this they are cut so the numbers
# stay in their columns.
_LABEL = 28


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if abs(s) < 60:
        return f"{s:.1f}s"
    if abs(s) < 3600:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def fmt_rate(part: int, whole: int) -> str:
    """``12.5% (1/8)``, or ``n/a (0/0)`` when nothing ran.

    >>> fmt_rate(1, 8), fmt_rate(0, 0)
    ('12.5% (1/8)', 'n/a (0/0)')
    """
    share = f"{100 * part / whole:.1f}%" if whole else "n/a"
    return f"{share} ({part}/{whole})"


def _label(text: str) -> str:
    return text if len(text) <= _LABEL else text[: _LABEL - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """First column left-aligned, the rest right-aligned, each as wide as its widest cell;
    the first column is at least as wide as a :func:`_kv` label, so values line up."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    widths[0] = max(widths[0], _LABEL + 2)
    return ["  ".join([r[0].ljust(widths[0]),
                       *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]).rstrip()
            for r in (header, *rows)]


def _kv(title: str, value: str) -> str:
    return f"  {title:<{_LABEL}}  {value}"


def _pairs(title: str, counts: Mapping[str, int]) -> list[str]:
    """``name n, name n`` after the label, wrapped between pairs, never inside one."""
    items = [f"{k} {n}" for k, n in counts.items()] or ["none"]
    lines, line = [], _kv(title, items[0])
    for item in items[1:]:
        if len(line) + 2 + len(item) + 1 > WIDTH:  # +1: the comma left on this line
            lines.append(line + ",")
            line = " " * (_LABEL + 4) + item
        else:
            line += ", " + item
    return [*lines, line]


def _durations(name: str, d: Durations) -> list[str]:
    return [f"  {name}", str(d.count), fmt_duration(d.p50), fmt_duration(d.p90),
            fmt_duration(d.max)]


def render(card: Scorecard) -> str:
    """The whole scorecard; every count the JSON has, rates as percentages or n/a."""
    head = f"hotpath scorecard: {card.records} records"
    if card.since is not None:
        head += " since " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(card.since))
    lines = [head]
    if card.unknown_kinds:
        lines += _pairs("not read (unknown kinds)", card.unknown_kinds)

    a = card.actions
    lines += ["", *_table(
        ["Actions", "executed", *ACTION_RESULTS],
        [[f"  {_label(name)}", str(c.get("success", 0) + c.get("failed", 0)),
          *(str(c.get(r, 0)) for r in ACTION_RESULTS)]
         for name, c in [("all", a.by_result), *a.by_action.items()]],
    )]
    other = {r: n for r, n in a.by_result.items() if r not in ACTION_RESULTS}
    if other:
        lines += _pairs("other results", other)
    rb = card.rollbacks
    lines += [
        _kv("automation error rate", fmt_rate(a.automation_failed, a.automation_executed)),
        _kv("rollback rate", fmt_rate(rb.count, a.executed)),
        _kv("rollbacks restored health", f"{rb.restored} of {rb.count} (not restored "
            f"{rb.not_restored}, unverified {rb.unverified})"),
        _kv("rollback actions succeeded", f"{rb.succeeded} of {rb.count}"),
    ]

    ap = card.approvals
    lines += ["", *_table(["Approvals", *APPROVAL_EVENTS],
                          [["", *(str(ap.by_event.get(e, 0)) for e in APPROVAL_EVENTS)]])]
    lat = ap.latency
    lines.append(_kv("decision latency", f"n {lat.count}, p50 {fmt_duration(lat.p50)}, "
                     f"p90 {fmt_duration(lat.p90)}, max {fmt_duration(lat.max)}"))
    lines += _pairs("denials by code", ap.denials_by_code)

    rq = card.requests
    refused = {f"{stage}/{code}": n for stage, codes in rq.refused_by_stage.items()
               for code, n in codes.items()}
    lines += ["", "Requests", *_pairs("by result", rq.by_result),
              *_pairs("refused at stage/code", refused)]
    if card.api_calls:
        lines += _pairs("action API calls", card.api_calls)

    pg = card.pages
    lines += ["", "Pages", _kv("total", str(pg.total)),
              _kv("caused by automation failing", str(pg.automation_failures)),
              *_pairs("by cause", pg.by_cause)]

    im = card.impact
    lines += ["", *_table(
        [f"Incident impact ({im.findings} findings)", "n", "p50", "p90", "max"],
        [_durations("time to detect", im.detect), _durations("time to act", im.act),
         _durations("time to recover", im.recover)],
    )]
    return "\n".join(lines)
