"""Change events (topic ``changes``): what was deployed, reconfigured or flagged, and when.

Wire format (DESIGN.md), one JSON object per Kafka message::

    {"kind": "deploy", "service": "checkout", "ts": 1764132000.0, "actor": "ci",
     "version": "v1.4.2", "description": "bump payment client"}

``kind``, ``service`` and ``ts`` are required; ``actor``, ``version`` and ``description``
are optional strings (``null`` counts as absent); unknown fields are ignored so producers can
add fields before consumers know them. Validation mirrors the telemetry wire format
(``hotpath.wire``): a bad message raises :class:`ChangeError` whose message is an exact,
stable reason reading ``<kind>: <where>``, and :attr:`ChangeError.kind` is the fixed part,
fit for a metric label.

:class:`RecentChanges` keeps the last changes of every service in memory, bounded by count
and by an event-time horizon, so a page can say what changed just before the anomaly.

>>> ev = parse_change(b'{"kind": "deploy", "service": "checkout", "ts": 1764132000, '
...                   b'"actor": "ci", "version": "v1.4.2"}', now=1764132100.0)
>>> ev.summary
'deploy checkout v1.4.2 by ci'
>>> parse_change(b'{"kind": "deploy", "service": "checkout"}', now=1764132100.0)
Traceback (most recent call last):
...
escalation.errors.ChangeError: missing field: ts
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from escalation.approval_tokens import iso_utc
from escalation.errors import ChangeError

# why: a change event is a few hundred bytes; 64 KiB bounds parse time and the memory a
# flood of oversized events could pin, while leaving room for a long release note.
MAX_MESSAGE_BYTES = 65_536
MAX_FUTURE_S = 300.0  # why: the telemetry wire's tolerated producer clock skew, kept equal
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z: catches unset (0) and day/epoch mix-ups
MAX_NAME_CHARS = 256  # why: kind, service, actor and version are names, not prose
# why: a page shows the description in one line; a release note's first 500 characters
# say what it is, and the rest would only be truncated again by every pager adapter.
MAX_DESCRIPTION_CHARS = 500
_NAME_IN_REASON = 64  # why: producer-chosen text inside a reason stays log-sized

REASON_KINDS = frozenset((
    "empty message", "message too large", "not json", "not an object", "missing field",
    "wrong type", "empty field", "too long", "ts in the future", "ts before 2000",
))
"""Every value :attr:`ChangeError.kind` can take, so a counter can start each at zero."""


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change to a service: a deploy, a config change, a feature flag flip, ..."""

    kind: str
    service: str
    ts: float                # when the change took effect (producer's clock, epoch seconds)
    actor: str = ""
    version: str = ""
    description: str = ""

    @property
    def summary(self) -> str:
        """One line: kind, service, version and who.

        >>> ChangeEvent("flag", "search", 0.0, description="ranking_v2 on").summary
        'flag search: ranking_v2 on'
        """
        text = f"{self.kind} {self.service}"
        if self.version:
            text += f" {self.version}"
        if self.description and not self.version:
            text += f": {self.description}"
        if self.actor:
            text += f" by {self.actor}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, stable key order; ``at`` is ``ts`` as ISO 8601 UTC.

        >>> ChangeEvent("deploy", "checkout", 1764132000.0, "ci", "v1.4.2").to_dict()["at"]
        '2025-11-26T04:40:00Z'
        """
        return {"kind": self.kind, "service": self.service, "ts": self.ts,
                "at": iso_utc(self.ts), "actor": self.actor, "version": self.version,
                "description": self.description}


def parse_change(data: bytes | None, now: float) -> ChangeEvent:
    """Validate one message of the ``changes`` topic; ``now`` (epoch seconds) is injected
    so a replay decides "in the future" the same way.

    >>> parse_change(b'{"kind": "deploy", "service": "x", "ts": "soon"}', now=0.0)
    Traceback (most recent call last):
    ...
    escalation.errors.ChangeError: wrong type: ts (expected number)
    """
    if not data:
        raise ChangeError("empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ChangeError(f"message too large: {len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ChangeError("not json") from None
    if type(obj) is not dict:
        raise ChangeError("not an object")
    kind = _name(obj, "kind", required=True)
    service = _name(obj, "service", required=True)
    raw_ts = obj.get("ts")
    # bool is an int subclass, but JSON true/false are not numbers
    if not isinstance(raw_ts, int | float) or isinstance(raw_ts, bool):
        raise ChangeError("missing field: ts" if "ts" not in obj
                          else "wrong type: ts (expected number)")
    ts = float(raw_ts)  # finite: orjson refuses NaN, Infinity and numbers beyond float range
    if ts > now + MAX_FUTURE_S:
        raise ChangeError(f"ts in the future: more than {MAX_FUTURE_S:g}s ahead")
    if ts < MIN_TS:
        raise ChangeError("ts before 2000")
    description = _text(obj, "description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
    return ChangeEvent(kind=kind, service=service, ts=ts,
                       actor=_name(obj, "actor", required=False),
                       version=_name(obj, "version", required=False),
                       description=description)


def _text(obj: dict[str, Any], field: str) -> str:
    v = obj.get(field)
    if v is None:
        return ""
    if type(v) is not str:
        raise ChangeError(f"wrong type: {field} (expected string)")
    return v


def _name(obj: dict[str, Any], field: str, *, required: bool) -> str:
    if required and obj.get(field) is None:
        raise ChangeError(f"missing field: {field}" if field not in obj
                          else f"wrong type: {field} (expected string)")
    v = _text(obj, field)
    if required and not v:
        raise ChangeError(f"empty field: {field}")
    if len(v) > MAX_NAME_CHARS:
        raise ChangeError(f"too long: {field} ({len(v)} chars > {MAX_NAME_CHARS})")
    return v


# why: a busy service deploys a few times an hour and flips flags more often; 20 covers an
# hour or two of such churn, and a page shows at most 5 of them anyway.
DEFAULT_PER_SERVICE = 20
# why: a change older than a day is rarely what broke something now, and a day of changes
# is what an on-call engineer would scroll through by hand.
DEFAULT_HORIZON_S = 86_400.0
# why: bounds memory against a producer inventing service names; far above real fleets.
DEFAULT_MAX_SERVICES = 10_000


class RecentChanges:
    """The last ``per_service`` changes of each service within ``horizon_s`` of event time.

    The horizon is measured back from the newest change seen (event time, no clock), so a
    replay of the topic keeps the same set. Changes may arrive out of order (the topic has
    several partitions); each service's list stays sorted by ``ts``. An identical event
    seen twice (a producer's retry, a consumer's re-read) is kept once.

    >>> rc = RecentChanges(per_service=2, horizon_s=3600.0)
    >>> for ts, v in ((1000.0, "v1"), (2000.0, "v2"), (3000.0, "v3")):
    ...     _ = rc.add(ChangeEvent("deploy", "checkout", 1764130000.0 + ts, "ci", v))
    >>> [e.version for e in rc.for_service("checkout", before_ts=1764133500.0, within_s=3600)]
    ['v3', 'v2']
    >>> len(rc)
    2
    """

    def __init__(self, per_service: int = DEFAULT_PER_SERVICE,
                 horizon_s: float = DEFAULT_HORIZON_S,
                 max_services: int = DEFAULT_MAX_SERVICES) -> None:
        if per_service < 1:
            raise ValueError(f"per_service must be >= 1, got {per_service}")
        if not horizon_s > 0:
            raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
        if max_services < 1:
            raise ValueError(f"max_services must be >= 1, got {max_services}")
        self.per_service = per_service
        self.horizon_s = horizon_s
        self.max_services = max_services
        self._by_service: dict[str, list[ChangeEvent]] = {}
        self.newest_ts = -math.inf  # the newest change seen, the horizon's reference

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_service.values())

    def __iter__(self) -> Iterator[ChangeEvent]:
        """Every kept change, by service then time."""
        for events in self._by_service.values():
            yield from events

    def services(self) -> list[str]:
        return sorted(self._by_service)

    def add(self, ev: ChangeEvent) -> bool:
        """Keep ``ev``; False when it is older than the horizon, already kept, or older
        than the ``per_service`` newer changes its service already has."""
        if ev.ts < self.newest_ts - self.horizon_s:
            return False
        events = self._by_service.get(ev.service)
        if events is None:
            events = self._by_service[ev.service] = []
        if ev in events:
            return False
        bisect.insort(events, ev, key=_ts)
        kept = True
        if len(events) > self.per_service:
            kept = events[0] is not ev
            del events[0]
        if ev.ts > self.newest_ts:
            # A sweep over all services per newer change: changes come a few a minute, so
            # exact expiry costs nothing worth an amortised scheme.
            self.newest_ts = ev.ts
            self._expire()
        if len(self._by_service) > self.max_services:
            self._evict()
        return kept and ev.service in self._by_service

    def for_service(self, service: str, before_ts: float, within_s: float,
                    limit: int | None = None) -> tuple[ChangeEvent, ...]:
        """The service's changes with ``before_ts - within_s <= ts <= before_ts``, newest
        first, at most ``limit``."""
        events = self._by_service.get(service, [])
        lo = bisect.bisect_left(events, before_ts - within_s, key=_ts)
        hi = bisect.bisect_right(events, before_ts, key=_ts)
        picked = events[lo:hi][::-1]
        return tuple(picked if limit is None else picked[:limit])

    def _expire(self) -> None:
        """Drop changes past the horizon, and services left with none."""
        oldest = self.newest_ts - self.horizon_s
        for service in list(self._by_service):
            events = self._by_service[service]
            cut = bisect.bisect_left(events, oldest, key=_ts)
            if cut:
                del events[:cut]
            if not events:
                del self._by_service[service]

    def _evict(self) -> None:
        """Over ``max_services``: drop the service whose newest change is the oldest."""
        stalest = min(self._by_service, key=lambda s: self._by_service[s][-1].ts)
        del self._by_service[stalest]


def _ts(ev: ChangeEvent) -> float:
    return ev.ts
