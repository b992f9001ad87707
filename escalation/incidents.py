"""Incidents: pages grouped by service, metric family and region, paged once, resolved once.

The processor decides per finding; a human wants one page per *problem*. An
:class:`IncidentBook` (pure, time injected) turns the batch's pages into incident events:

* a page whose group (:class:`GroupingSpec` ``by``, e.g. service + metric family + region)
  has no open incident **opens** one: the trigger page goes out under the incident's key;
* further pages of an open group **attach**: the incident's count and latest values move,
  nothing is sent;
* a page matched by an active silence, or by an inhibition rule whose source incident is
  open (a service-wide outage mutes its per-metric pages, like Alertmanager's
  ``inhibit_rules``), is **suppressed**: the incident is tracked, nothing is sent, the reason
  is recorded. If a later page of it is no longer muted, that page **triggers** it;
* :meth:`IncidentBook.tick` **resolves** an incident once no page joined it for
  ``resolve_after_s``; a resolve page goes out (same incident key) iff a trigger did;
* a page no newer than the group's last resolved incident is **stale** (a replay): dropped.

Keys are deterministic: :func:`incident_key` hashes the group values and the ``window_s``
bucket of the opening page's *event* time, so two replicas or a replay that open the group
from the same findings name the same incident. Buckets only grow per group (a reopened
group takes at least the next bucket), so a key is never reused. Resolving runs on the
*processing* clock (``now``): a consumer that lags does not resolve an incident whose
findings are still queued.

Pages out (:attr:`IncidentEvent.page`): the trigger is the observed page with
``event="trigger"``, ``incident_key`` and ``dedup_key = "hotpath-<incident key>"``; the
resolve is the incident's latest page with ``event="resolve"`` and
``dedup_key = "hotpath-<incident key>:resolve"`` (each message has its own outbox dedup
key; receivers group on ``incident_key``).

>>> from dataclasses import replace
>>> from escalation.page import _example
>>> p = replace(_example(), service="checkout", metric="http_latency_p99_ms",
...             labels={"region": "eu"}, ts=1000.0, severity="critical")
>>> book = IncidentBook(GroupingSpec())
>>> later = replace(p, ts=1010.0, dedup_key="hotpath-f2")  # another finding of the group
>>> [e.kind.value for e in book.observe([p, later], now=1001.0)]
['trigger', 'attach']
>>> e = book.observe([replace(p, ts=1020.0, dedup_key="hotpath-f3")], now=1020.0)[0]
>>> e.incident.key, e.incident.count, e.page is None
('inc_389bb77f52a05b63', 3, True)
>>> book.tick(now=1619.0)
[]
>>> r = book.tick(now=1620.0)[0]
>>> r.kind.value, r.page.event, r.page.incident_key, r.page.dedup_key
('resolve', 'resolve', 'inc_389bb77f52a05b63', 'hotpath-inc_389bb77f52a05b63:resolve')
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

import orjson

from escalation.page import Page
from escalation.silences import Silence, silenced_by

_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}

# Trailing name parts that say how a metric is measured, not what: dropping them puts
# http_latency_p50_ms and http_latency_p99_ms in one family (Prometheus naming habits).
_MEASURE = frozenset({
    "ms", "us", "ns", "s", "seconds", "milliseconds", "bytes", "ratio", "percent", "pct",
    "total", "count", "sum", "rate", "avg", "mean", "min", "max", "median", "bucket",
})
_PERCENTILE = re.compile(r"p\d+")


def metric_family(metric: str, families: Mapping[str, str] | None = None) -> str:
    """The family a metric belongs to: what it is about, without how it is measured.

    An explicit mapping (metric glob → family, first match wins) takes precedence. Else
    trailing unit/statistic parts (``ms``, ``ratio``, ``total``, ``p99``, ...) are dropped;
    if there were none, the last part is taken to be the measured aspect (``depth``,
    ``size``) and dropped instead. A single-part name is its own family.

    >>> [metric_family(m) for m in ("http_latency_p99_ms", "error_ratio", "queue_depth",
    ...                             "cpu_seconds_total", "up")]
    ['http_latency', 'error', 'queue', 'cpu', 'up']
    >>> metric_family("queue_depth", {"queue_*": "queues"})
    'queues'
    """
    for glob, family in (families or {}).items():
        if fnmatchcase(metric, glob):
            return family
    parts = metric.split("_")
    kept = list(parts)
    while len(kept) > 1 and (kept[-1] in _MEASURE or _PERCENTILE.fullmatch(kept[-1])):
        kept.pop()
    if len(kept) == len(parts) and len(kept) > 1:
        kept.pop()
    return "_".join(kept)


@dataclass(frozen=True, slots=True)
class GroupingSpec:
    """How pages are grouped: which alert labels, the key's time bucket, when to resolve.

    ``window_s`` is the width of the bucket the opening page's event time falls in; it is
    part of the incident key, so replicas that open the same group from different findings
    of one window agree on the key even without the shared store. ``resolve_after_s`` is
    how long an incident must stay clear (no page joins it) before it resolves.
    """

    by: tuple[str, ...] = ("service", "metric_family", "region")
    window_s: float = 300.0
    resolve_after_s: float = 600.0
    families: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.by:
            raise ValueError("grouping: by must name at least one label")
        for name in ("window_s", "resolve_after_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"grouping: {name} must be a positive number, got {v!r}")


def alert_labels(page: Page, spec: GroupingSpec) -> dict[str, str]:
    """The labels grouping, silences and inhibition match on: the page's labels plus
    ``service``, ``metric``, ``metric_family`` and ``severity`` (which win over labels of
    the same name)."""
    return {**page.labels, "service": page.service, "metric": page.metric,
            "metric_family": metric_family(page.metric, spec.families),
            "severity": page.severity}


def _digest(prefix: str, body: Any) -> str:
    return prefix + hashlib.sha256(orjson.dumps(body)).hexdigest()[:16]


def group_of(labels: Mapping[str, str], spec: GroupingSpec) -> tuple[tuple[str, str], ...]:
    """The grouping values, in ``spec.by`` order (a missing label groups as ``""``)."""
    return tuple((k, labels.get(k, "")) for k in spec.by)


def group_id(group: Sequence[tuple[str, str]]) -> str:
    """Stable id of a group across all its incidents (the store's per-group record).

    >>> group_id((("service", "checkout"),))
    'grp_380a086005f97a77'
    """
    return _digest("grp_", [list(kv) for kv in group])


def incident_key(group: Sequence[tuple[str, str]], bucket: int) -> str:
    """``inc_<16 hex>``: sha256 of the grouping values and the window bucket it opened in.

    >>> incident_key((("service", "checkout"),), 5)
    'inc_b4252deb87c4e3ff'
    """
    return _digest("inc_", [[list(kv) for kv in group], bucket])


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """While an open incident matches ``source``, pages matching ``target`` with the same
    values of the ``equal`` labels are not sent (Alertmanager's inhibit rule, glob
    matchers). An incident never inhibits its own group's pages."""

    name: str
    source: Mapping[str, str] = field(hash=False)
    target: Mapping[str, str] = field(hash=False)
    equal: tuple[str, ...] = ("service",)

    def __post_init__(self) -> None:
        if not self.source or not self.target:
            raise ValueError(f"inhibit rule {self.name!r}: source and target must each have "
                             f"at least one matcher")

    def inhibits(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        # As Alertmanager: a page that matches the source side itself is never inhibited
        # (one region's outage must not hold back another region's outage page).
        return (_match(self.source, source) and _match(self.target, target)
                and not _match(self.source, target)
                and all(source.get(k, "") == target.get(k, "") for k in self.equal))


def _match(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(fnmatchcase(labels.get(k, ""), g) for k, g in matchers.items())


@dataclass(frozen=True, slots=True)
class Incident:
    """One open problem: a group's pages since it opened."""

    key: str
    group: tuple[tuple[str, str], ...]
    bucket: int
    opened_at: float          # event time of the opening page
    last_ts: float            # event time of the latest page
    last_seen: float          # processing time the latest page was observed (resolve clock)
    count: int                # pages grouped into it
    labels: dict[str, str]    # alert labels of the opening page, severity = the worst seen
    metrics: tuple[str, ...]  # every metric that joined, sorted
    page: Page                # the latest page, context dropped (source of the resolve page)
    triggered: bool = False   # a trigger page went out
    suppressed: str = ""      # why it was not paged ("" when triggered)
    # The page that triggered it: seen again (a replay after a crash between the commit and
    # the outbox write), the trigger goes out again under the same key — the delivered-set
    # and the receiver fold the copy, and a trigger that never left is not lost.
    trigger_source: str = ""

    @property
    def group_id(self) -> str:
        return group_id(self.group)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "group": [list(kv) for kv in self.group],
                "bucket": self.bucket, "opened_at": self.opened_at, "last_ts": self.last_ts,
                "last_seen": self.last_seen, "count": self.count, "labels": self.labels,
                "metrics": list(self.metrics), "page": self.page.to_dict(),
                "trigger_source": self.trigger_source,
                "triggered": self.triggered, "suppressed": self.suppressed}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Incident:
        return cls(str(raw["key"]), tuple((str(k), str(v)) for k, v in raw["group"]),
                   int(raw["bucket"]), float(raw["opened_at"]), float(raw["last_ts"]),
                   float(raw["last_seen"]), int(raw["count"]),
                   {str(k): str(v) for k, v in raw["labels"].items()},
                   tuple(str(m) for m in raw["metrics"]),
                   Page.from_json(orjson.dumps(raw["page"])), bool(raw["triggered"]),
                   str(raw["suppressed"]), str(raw.get("trigger_source", "")))


@dataclass(frozen=True, slots=True)
class Closed:
    """What a group remembers of its last resolved incident: keys only move forward, and
    pages no newer than ``through`` (a replay) do not reopen it."""

    key: str
    bucket: int
    through: float  # event time of its last page

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "bucket": self.bucket, "through": self.through}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Closed:
        return cls(str(raw["key"]), int(raw["bucket"]), float(raw["through"]))


class EventKind(enum.Enum):
    TRIGGER = "trigger"        # opened (or no longer muted): a trigger page goes out
    ATTACH = "attach"          # grouped into an open incident: nothing sent
    SUPPRESSED = "suppressed"  # silenced or inhibited: tracked, nothing sent
    STALE = "stale"            # no newer than the group's resolved incident: a replay
    RESOLVE = "resolve"        # clear for resolve_after_s: a resolve page iff triggered


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """What happened to an incident, why, and the page to send (None: send nothing)."""

    kind: EventKind
    incident: Incident    # as it is after the event (for STALE: the resolved one's key)
    detail: str
    observed: Page | None  # the page that caused it (None for a resolve)
    page: Page | None      # what goes to the outbox

    @property
    def changes_state(self) -> bool:
        return self.kind is not EventKind.STALE


def _worse(a: str, b: str) -> str:
    return a if _SEVERITY_RANK.get(a, 0) >= _SEVERITY_RANK.get(b, 0) else b


class IncidentBook:
    """The open incidents and each group's last resolved one, and the rules that move them.

    Deterministic: the same pages and clock values give the same events and keys.
    :mod:`escalation.incident_store` loads a book from Redis, runs it and commits the
    groups it changed, so every replica shares one book.
    """

    def __init__(self, spec: GroupingSpec, rules: Sequence[InhibitRule] = (), *,
                 open: Iterable[Incident] = (), closed: Mapping[str, Closed] | None = None
                 ) -> None:
        self.spec = spec
        self.rules = tuple(rules)
        self.open: dict[str, Incident] = {i.group_id: i for i in open}
        self.closed: dict[str, Closed] = dict(closed or {})

    def observe(self, pages: Iterable[Page], now: float,
                silences: Sequence[Silence] = ()) -> list[IncidentEvent]:
        """One event per page. Pages are taken in (inhibition sources first, event time,
        dedup key) order, so a batch's outage page mutes its per-metric pages whatever order
        they came in, and a replica given the batch split differently agrees."""
        labelled = [(p, alert_labels(p, self.spec)) for p in pages]
        labelled.sort(key=lambda pl: (not self._is_source(pl[1]), pl[0].ts, pl[0].dedup_key))
        return [self._observe_one(p, labels, now, silences) for p, labels in labelled]

    def tick(self, now: float) -> list[IncidentEvent]:
        """Resolve every incident clear for ``resolve_after_s`` (by key, for a stable order)."""
        due = sorted((i for i in self.open.values()
                      if now - i.last_seen >= self.spec.resolve_after_s), key=lambda i: i.key)
        return [self._resolve(i, now) for i in due]

    def close(self, key: str, now: float, by: str) -> IncidentEvent | None:
        """Resolve an open incident now, on someone's word (console or API); None if no
        open incident has this key. Its resolve page goes out like a cleared one's."""
        inc = next((i for i in self.open.values() if i.key == key), None)
        return None if inc is None else self._resolve(inc, now, f"resolved by {by}")

    def _is_source(self, labels: Mapping[str, str]) -> bool:
        return any(_match(r.source, labels) for r in self.rules)

    def _observe_one(self, p: Page, labels: dict[str, str], now: float,
                     silences: Sequence[Silence]) -> IncidentEvent:
        group = group_of(labels, self.spec)
        gid = group_id(group)
        closed = self.closed.get(gid)
        current = self.open.get(gid)
        if current is None and closed is not None and p.ts <= closed.through:
            gone = _stub(closed, group, p)
            return IncidentEvent(EventKind.STALE, gone,
                                 f"no newer than resolved incident {closed.key}", p, None)
        if current is None:
            bucket = math.floor(p.ts / self.spec.window_s)
            if closed is not None:
                bucket = max(bucket, closed.bucket + 1)
            inc = Incident(incident_key(group, bucket), group, bucket, p.ts, p.ts, now, 1,
                           labels, (p.metric,), _kept(p))
            detail = "opened"
        else:
            inc = replace(current, last_ts=max(current.last_ts, p.ts), last_seen=now,
                          count=current.count + 1,
                          labels={**current.labels,
                                  "severity": _worse(current.labels["severity"], p.severity)},
                          metrics=tuple(sorted({*current.metrics, p.metric})),
                          page=_kept(p) if p.ts >= current.last_ts else current.page)
            detail = f"grouped into {inc.key} ({inc.count} pages)"
        # Muting is judged only for an incident not yet paged: once a trigger went out, the
        # human owns it and its resolve must follow, silenced or not.
        muted = "" if inc.triggered else self._muted(gid, labels, now, silences)
        if inc.triggered and p.dedup_key == inc.trigger_source:
            event = IncidentEvent(EventKind.TRIGGER, inc, "its trigger page seen again: sent "
                                  "again under the same key", p, _trigger(p, inc.key))
        elif inc.triggered:
            event = IncidentEvent(EventKind.ATTACH, inc, detail, p, None)
        elif muted:
            inc = replace(inc, suppressed=muted)
            event = IncidentEvent(EventKind.SUPPRESSED, inc, muted, p, None)
        else:
            inc = replace(inc, triggered=True, suppressed="", trigger_source=p.dedup_key)
            why = detail if current is None else f"no longer muted ({current.suppressed})"
            event = IncidentEvent(EventKind.TRIGGER, inc, why, p, _trigger(p, inc.key))
        self.open[gid] = inc
        return event

    def _muted(self, gid: str, labels: Mapping[str, str], now: float,
               silences: Sequence[Silence]) -> str:
        s = silenced_by(labels, silences, now)
        if s is not None:
            return f"silenced by {s.id} ({s.created_by}: {s.comment})"
        for src in sorted(self.open.values(), key=lambda i: i.key):
            if src.group_id == gid:
                continue
            for r in self.rules:
                if r.inhibits(src.labels, labels):
                    return f"inhibited by {src.key} (rule {r.name})"
        return ""

    def _resolve(self, inc: Incident, now: float, why: str = "") -> IncidentEvent:
        gid = inc.group_id
        del self.open[gid]
        self.closed[gid] = Closed(inc.key, inc.bucket, inc.last_ts)
        clear = why or f"clear for {now - inc.last_seen:g} s after {inc.count} pages"
        if not inc.triggered:
            return IncidentEvent(EventKind.RESOLVE, inc, f"{clear}; never paged "
                                 f"({inc.suppressed})", None, None)
        names = ", ".join(f"{k}={v}" for k, v in inc.group)
        page = replace(inc.page, event="resolve", incident_key=inc.key,
                       dedup_key=f"hotpath-{inc.key}:resolve", created=now,
                       summary=f"resolved: {names} — {clear}", reasons=("incident cleared",))
        return IncidentEvent(EventKind.RESOLVE, inc, clear, None, page)


def _kept(p: Page) -> Page:
    """The page an incident keeps: its context can be large and the resolve needs none."""
    return replace(p, context={}) if p.context else p


def _trigger(p: Page, key: str) -> Page:
    return replace(p, event="trigger", incident_key=key, dedup_key=f"hotpath-{key}")


def _stub(closed: Closed, group: tuple[tuple[str, str], ...], p: Page) -> Incident:
    return Incident(closed.key, group, closed.bucket, closed.through, closed.through,
                    math.nan, 0, {}, (), _kept(p))
