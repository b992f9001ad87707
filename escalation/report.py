"""The scorecard: how governed remediation performed, computed from the audit log alone.

:func:`scorecard` is a pure function of the parsed audit records (dicts with ``seq``,
``ts``, ``kind``, ``body``, in file order); :func:`escalation.report_text.render` prints it.
What each number means, precisely:

- **actions**: ``outcome`` records that are not rollbacks (no ``rollback_of``), by
  ``result`` (success, failed, not_executed; any other value as it is, ``missing`` when
  absent) and by action.
  *Executed* means result success or failed.
- **automation error rate**: failed / executed, over outcomes whose ``actor`` is of kind
  automation (``"automation:rule"``, ``"automation"`` or ``{"kind": "automation"}``).
- **rollbacks**: outcomes with ``rollback_of`` that executed (success or failed); the
  **rollback rate** is rollbacks / executed actions. A rollback **restored health** when a
  ``verification`` with result recovered, for the rolled-back request or for the rollback's
  own request, comes after the rollback's outcome in the log. A rollback action that merely
  succeeded did not prove anything about health: it is counted apart (``succeeded``); so are
  rollbacks with only a later no_recovery (``not_restored``) or no later verification at
  all (``unverified``).
- **approvals**: ``approval`` records by ``event``; the latency of a decision is
  ``at - requested_at`` of approved and denied events (``requested_at`` falls back to the
  ``at`` of the same approval's requested event); every no — denied or refused — is counted
  by its ``code`` (a plain human denial has none and counts as ``denied``).
- **requests**: ``request`` records by ``result``; a refused one is counted under the stage
  and code of its first failing check.
- **pages**: ``page`` records; one whose ``request_id`` had a verification no_recovery is
  caused by ``no_recovery``, else a failed outcome ``action_failed``, else an expired
  approval ``approval_expired``; those three are the pages automation failing caused, the
  rest ``other``.
- **incident impact**, per finding, from its event time (``evidence.ts`` of its decision,
  else ``event_ts`` of a request for it): time to *detect* is the first decision's
  ``decided_at``, to *act* the first ``intent`` of a request for the finding, to *recover*
  the first verification recovered's ``recovered_at`` (minus its own ``event_ts`` when it
  carries one). Reported as count, p50, p90, max (nearest rank: the smallest value with at
  least p% of the values at or below it).

``since`` keeps records whose ``ts`` (the audit write time) is at or after it. Kinds the
scorecard does not read are counted, never an error.

>>> card = scorecard([])
>>> card.records, card.actions.executed, card.automation_error_rate, card.impact.detect.p50
(0, 0, None, None)
>>> Durations.of([3.0, 1.0, 2.0, 10.0])
Durations(count=4, p50=2.0, p90=10.0, max=10.0)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Kinds the audit log holds; anything else is counted as unknown.
KNOWN_KINDS = frozenset({"decision", "request", "approval", "intent", "outcome",
                         "verification", "page", "automation", "checkpoint", "recovery",
                         "api"})
ACTION_RESULTS = ("success", "failed", "not_executed")
APPROVAL_EVENTS = ("requested", "approved", "denied", "expired", "refused")
FAILURE_CAUSES = ("no_recovery", "action_failed", "approval_expired")


@dataclass(frozen=True, slots=True)
class Durations:
    """Count and nearest-rank p50/p90/max of some durations in seconds (None when empty)."""

    count: int
    p50: float | None
    p90: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Durations:
        v = sorted(values)
        if not v:
            return cls(0, None, None, None)

        def rank(p: float) -> float:
            return v[max(math.ceil(p * len(v)) - 1, 0)]

        return cls(len(v), rank(0.5), rank(0.9), v[-1])


@dataclass(frozen=True, slots=True)
class Actions:
    executed: int
    by_result: Mapping[str, int]
    by_action: Mapping[str, Mapping[str, int]]
    automation_executed: int
    automation_failed: int


@dataclass(frozen=True, slots=True)
class Rollbacks:
    count: int          # executed rollbacks
    succeeded: int      # the rollback action itself reported success
    restored: int       # a later verification recovered
    not_restored: int   # only a later no_recovery
    unverified: int     # no later verification


@dataclass(frozen=True, slots=True)
class Approvals:
    by_event: Mapping[str, int]
    latency: Durations
    denials_by_code: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Requests:
    by_result: Mapping[str, int]
    refused_by_stage: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Pages:
    total: int
    by_cause: Mapping[str, int]

    @property
    def automation_failures(self) -> int:
        return sum(self.by_cause.get(c, 0) for c in FAILURE_CAUSES)


@dataclass(frozen=True, slots=True)
class Impact:
    findings: int
    detect: Durations
    act: Durations
    recover: Durations


@dataclass(frozen=True, slots=True)
class Scorecard:
    since: float | None
    records: int
    by_kind: Mapping[str, int]
    unknown_kinds: Mapping[str, int]
    actions: Actions
    rollbacks: Rollbacks
    approvals: Approvals
    requests: Requests
    pages: Pages
    impact: Impact
    api_calls: Mapping[str, int]   # "accepted" and "refused <code>", from the action API

    @property
    def automation_error_rate(self) -> float | None:
        return rate(self.actions.automation_failed, self.actions.automation_executed)

    @property
    def rollback_rate(self) -> float | None:
        return rate(self.rollbacks.count, self.actions.executed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the fields, the two rates (null for n/a) and the failure-page count."""
        out = asdict(self)
        out["automation_error_rate"] = self.automation_error_rate
        out["rollback_rate"] = self.rollback_rate
        out["pages"]["automation_failures"] = self.pages.automation_failures
        return out


def rate(part: int, whole: int) -> float | None:
    """part / whole, None when there is nothing to divide by.

    >>> rate(1, 4), rate(0, 0)
    (0.25, None)
    """
    return part / whole if whole else None


def actor_kind(actor: object) -> str | None:
    """``"automation:rule"``, ``"automation"`` or ``{"kind": ...}`` → the kind.

    >>> actor_kind("human:alice"), actor_kind({"kind": "agent"}), actor_kind(None)
    ('human', 'agent', None)
    """
    if isinstance(actor, Mapping):
        kind = actor.get("kind")
        return kind if isinstance(kind, str) else None
    if isinstance(actor, str):
        return actor.partition(":")[0]
    return None


def _obj(v: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (an unverified log may hold junk)."""
    return v if isinstance(v, Mapping) else {}


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _first_refusal(checks: object) -> tuple[str, str]:
    if isinstance(checks, list):
        for c in checks:
            if isinstance(c, Mapping) and c.get("ok") is False:
                return str(c.get("stage", "?")), str(c.get("code", "?"))
    return "?", "?"


def scorecard(records: Iterable[Mapping[str, Any]], *, since: float | None = None) -> Scorecard:
    """Every metric of the module docstring over ``records`` (file order)."""
    tally = _Tally()
    for order, rec in enumerate(records):
        if since is not None and (_num(rec.get("ts")) or 0.0) < since:
            continue
        kind = str(rec.get("kind"))
        tally.by_kind[kind] += 1
        read = _READERS.get(kind)
        if read is not None:
            read(tally, order, _obj(rec.get("body")))
    return tally.finish(since)


def _results() -> Counter[str]:
    return Counter(dict.fromkeys(ACTION_RESULTS, 0))


class _Tally:
    """What one pass over the log collects; :meth:`finish` joins it into the scorecard."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self.results = _results()
        self.by_action: defaultdict[str, Counter[str]] = defaultdict(_results)
        self.auto_exec = self.auto_failed = 0
        self.failed: set[str] = set()
        # (log order, rolled-back request, the rollback's own request, action succeeded)
        self.rollbacks: list[tuple[int, str, str | None, bool]] = []
        self.verified: defaultdict[str, list[tuple[int, bool]]] = defaultdict(list)
        self.recoveries: list[tuple[str, float, float | None]] = []  # rid, at, event ts
        self.events = Counter(dict.fromkeys(APPROVAL_EVENTS, 0))
        self.asked_at: dict[str, float] = {}
        self.decided: list[tuple[str, float | None, float | None]] = []
        self.denials: Counter[str] = Counter()
        self.expired: set[str] = set()
        self.req_results: Counter[str] = Counter()
        self.refused: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.page_requests: list[str | None] = []
        self.finding_pages = 0
        self.api: Counter[str] = Counter()
        self.finding_ts: dict[str, float] = {}
        self.finding_of: dict[str, str] = {}
        self.detected: dict[str, float] = {}
        self.intents: list[tuple[str, float]] = []

    def outcome(self, order: int, b: Mapping[str, Any]) -> None:
        result, rid = str(b.get("result") or "missing"), b.get("request_id")
        executed = result in ("success", "failed")
        if b.get("rollback_of"):
            if executed:
                self.rollbacks.append((order, str(b["rollback_of"]), rid, result == "success"))
            return
        self.results[result] += 1
        self.by_action[str(b.get("action"))][result] += 1
        if result == "failed" and rid:
            self.failed.add(str(rid))
        if executed and actor_kind(b.get("actor")) == "automation":
            self.auto_exec += 1
            self.auto_failed += result == "failed"

    def verification(self, order: int, b: Mapping[str, Any]) -> None:
        rid, recovered = str(b.get("request_id")), b.get("result") == "recovered"
        self.verified[rid].append((order, recovered))
        at = _num(b.get("recovered_at"))
        if recovered and at is not None:
            self.recoveries.append((rid, at, _num(b.get("event_ts"))))

    def approval(self, order: int, b: Mapping[str, Any]) -> None:
        event, aid = str(b.get("event") or "missing"), str(b.get("approval_id"))
        self.events[event] += 1
        if event == "requested" and (at := _num(b.get("at"))) is not None:
            self.asked_at.setdefault(aid, at)
        elif event in ("approved", "denied"):
            self.decided.append((aid, _num(b.get("at")), _num(b.get("requested_at"))))
        elif event == "expired" and b.get("request_id"):
            self.expired.add(str(b["request_id"]))
        if event in ("denied", "refused"):
            self.denials[str(b.get("code") or "denied")] += 1

    def request(self, order: int, b: Mapping[str, Any]) -> None:
        result = str(b.get("result") or "missing")
        self.req_results[result] += 1
        if result == "refused":
            stage, code = _first_refusal(b.get("checks"))
            self.refused[stage][code] += 1
        req = _obj(b.get("request"))
        fid, rid, ets = req.get("finding_id"), req.get("request_id"), _num(req.get("event_ts"))
        if fid and rid:
            self.finding_of[str(rid)] = str(fid)
            if ets is not None:
                self.finding_ts.setdefault(str(fid), ets)

    def intent(self, order: int, b: Mapping[str, Any]) -> None:
        if b.get("request_id") and (at := _num(b.get("at"))) is not None:
            self.intents.append((str(b["request_id"]), at))

    def api_call(self, order: int, b: Mapping[str, Any]) -> None:
        status = _num(b.get("status"))
        self.api["accepted" if status is not None and status < 400 else
                 f"refused {b.get('code', '?')}"] += 1

    def page(self, order: int, b: Mapping[str, Any]) -> None:
        rid = b.get("request_id")
        self.page_requests.append(str(rid) if rid else None)

    def decision(self, order: int, b: Mapping[str, Any]) -> None:
        if b.get("decision") == "page":
            # A finding automation did not (or could not) act on: paged by the processor
            # with its context, recorded in the decision itself rather than a "page" record.
            self.finding_pages += 1
        ev = _obj(b.get("evidence"))
        fid, ets, at = ev.get("finding_id"), _num(ev.get("ts")), _num(b.get("decided_at"))
        if fid and ets is not None:
            self.finding_ts[str(fid)] = ets  # the decision's own evidence wins over a request's
            if at is not None:
                self.detected[str(fid)] = min(self.detected.get(str(fid), at), at)

    def _rollbacks(self) -> Rollbacks:
        restored = not_restored = unverified = 0
        for order, of, own, _ in self.rollbacks:
            later = [ok for rid in {of, own} if rid is not None
                     for o, ok in self.verified.get(rid, ()) if o > order]
            if any(later):
                restored += 1
            elif later:
                not_restored += 1
            else:
                unverified += 1
        return Rollbacks(len(self.rollbacks), sum(ok for *_, ok in self.rollbacks), restored,
                         not_restored, unverified)

    def _approvals(self) -> Approvals:
        latencies = []
        for aid, at, requested_at in self.decided:
            start = requested_at if requested_at is not None else self.asked_at.get(aid)
            if at is not None and start is not None:
                latencies.append(at - start)
        return Approvals(dict(self.events), Durations.of(latencies),
                         dict(sorted(self.denials.items())))

    def _pages(self) -> Pages:
        no_recovery = {rid for rid, seen in self.verified.items() if not all(ok for _, ok in seen)}
        causes = Counter(dict.fromkeys((*FAILURE_CAUSES, "finding", "other"), 0))
        causes["finding"] = self.finding_pages
        for rid in self.page_requests:
            if rid in no_recovery:
                causes["no_recovery"] += 1
            elif rid in self.failed:
                causes["action_failed"] += 1
            elif rid in self.expired:
                causes["approval_expired"] += 1
            else:
                causes["other"] += 1
        return Pages(len(self.page_requests) + self.finding_pages, dict(causes))

    def _impact(self) -> Impact:
        ts = self.finding_ts
        acted: dict[str, float] = {}
        for rid, at in self.intents:
            fid = self.finding_of.get(rid)
            if fid is not None and fid in ts:
                acted[fid] = min(acted.get(fid, at), at)
        recovered: dict[str, float] = {}
        for rid, at, event_ts in self.recoveries:
            fid = self.finding_of.get(rid)
            start = event_ts if event_ts is not None else ts.get(fid) if fid else None
            if start is not None:
                key = fid or rid
                recovered[key] = min(recovered.get(key, at - start), at - start)
        return Impact(
            findings=len(ts),
            detect=Durations.of(at - ts[f] for f, at in self.detected.items()),
            act=Durations.of(at - ts[f] for f, at in acted.items()),
            recover=Durations.of(recovered.values()),
        )

    def finish(self, since: float | None) -> Scorecard:
        kinds = dict(sorted(self.by_kind.items()))
        return Scorecard(
            since=since,
            records=sum(kinds.values()),
            by_kind=kinds,
            unknown_kinds={k: n for k, n in kinds.items() if k not in KNOWN_KINDS},
            actions=Actions(
                executed=self.results["success"] + self.results["failed"],
                by_result=dict(self.results),
                by_action={a: dict(c) for a, c in sorted(self.by_action.items())},
                automation_executed=self.auto_exec, automation_failed=self.auto_failed,
            ),
            rollbacks=self._rollbacks(),
            approvals=self._approvals(),
            requests=Requests(
                dict(sorted(self.req_results.items())),
                {s: dict(sorted(c.items())) for s, c in sorted(self.refused.items())}),
            pages=self._pages(),
            impact=self._impact(),
            api_calls=dict(sorted(self.api.items())),
        )


_READERS: dict[str, Callable[[_Tally, int, Mapping[str, Any]], None]] = {
    "outcome": _Tally.outcome, "verification": _Tally.verification,
    "approval": _Tally.approval, "request": _Tally.request, "intent": _Tally.intent,
    "page": _Tally.page, "decision": _Tally.decision, "api": _Tally.api_call,
}
