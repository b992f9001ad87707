"""Verification after acting: did the finding's series recover inside the action's window?

An action that executed is not yet a success. A :class:`Watch` follows the finding's series
from the moment the action succeeded (``started_at``, event time of the series) until
``deadline = started_at + spec.window_s``. The verdict is a :class:`~escalation.verdict.Check`
of stage ``verify``:

* ``recovered`` (ok) once ``spec.for_points`` consecutive points meet the condition before
  the deadline;
* ``no_recovery`` (refused) once event time reaches the deadline first: either the series
  itself shows a point at or past it (:func:`advance`), or the partition's event time does
  while the series is silent (:func:`expire`). The caller then rolls back (``rollback``),
  audits and pages "automation tried X; no recovery".

The window is the half-open interval ``(started_at, deadline)``: a point stamped at the
instant of acting cannot show the action's effect, and a point at the deadline is already
too late, which keeps :func:`advance` and :func:`expire` in agreement at the boundary.

Everything here is pure except :class:`Verifier`, the small in-memory tracker the processor
feeds with each batch's numpy columns; :mod:`escalation.verify_store` persists it.

>>> spec = VerifySpec(window_s=300.0, threshold=0.25, for_points=2)
>>> w = Watch("req_1", "rule:f1", "checkout|lat|", "restart_pods", "checkout", "pod-1",
...           rollback=None, spec=spec, baseline=200.0, started_at=1000.0)
>>> v = Verifier()
>>> v.watch(w)
True
>>> v.feed("checkout|lat|", np.array([1010.0, 1020.0]), np.array([480.0, 210.0]))
[]
>>> [(_, c)] = v.feed("checkout|lat|", np.array([1030.0]), np.array([190.0]))
>>> print(c)  # doctest: +NORMALIZE_WHITESPACE
verify: recovered: 2 points within 25% of baseline 200 by 1970-01-01T00:17:10Z,
30 s after acting
>>> len(v)
0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from escalation.catalogue import Catalogue, Recovery, VerifySpec
from escalation.request import Request
from escalation.verdict import Check, Stage

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# NEAR_BASELINE scales the tolerance by |baseline|; a zero baseline would make it zero and
# only an exact 0.0 could recover, so the scale has a floor (the catalogue documents it).
_NEAR_FLOOR = 1e-9


@dataclass(frozen=True, slots=True)
class Watch:
    """One executed action under verification, keyed by its ``request_id``."""

    request_id: str
    idempotency_key: str
    series_key: str
    action: str
    service: str
    target: str
    rollback: str | None
    spec: VerifySpec
    baseline: float
    started_at: float            # event time (series clock) at which the action succeeded
    finding_id: str | None = None
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        s = self.spec
        if not (math.isfinite(s.window_s) and s.window_s > 0):
            raise ValueError(f"watch {self.request_id}: verify window_s must be a positive "
                             f"finite number of seconds, got {s.window_s!r}")
        if s.for_points < 1:
            raise ValueError(f"watch {self.request_id}: verify for_points must be >= 1, "
                             f"got {s.for_points}")
        if not math.isfinite(s.threshold):
            raise ValueError(f"watch {self.request_id}: verify threshold must be finite, "
                             f"got {s.threshold!r}")
        if not math.isfinite(self.started_at):
            raise ValueError(f"watch {self.request_id}: started_at must be finite, "
                             f"got {self.started_at!r}")
        if s.condition is Recovery.NEAR_BASELINE and not math.isfinite(self.baseline):
            # Nothing could ever be "near" an unknown baseline: the watch would only expire.
            raise ValueError(f"watch {self.request_id}: condition near_baseline needs a "
                             f"finite baseline, got {self.baseline!r}")
        object.__setattr__(self, "deadline", self.started_at + s.window_s)

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "request_id": self.request_id, "idempotency_key": self.idempotency_key,
            "series_key": self.series_key, "action": self.action, "service": self.service,
            "target": self.target, "rollback": self.rollback, "finding_id": self.finding_id,
            "spec": {"window_s": s.window_s, "condition": s.condition.value,
                     "threshold": s.threshold, "for_points": s.for_points},
            "baseline": _num(self.baseline), "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Watch:
        """Inverse of :meth:`to_dict`; raises KeyError/ValueError on a malformed record."""
        s = raw["spec"]
        spec = VerifySpec(window_s=float(s["window_s"]), condition=Recovery(s["condition"]),
                          threshold=float(s["threshold"]), for_points=int(s["for_points"]))
        return cls(
            request_id=str(raw["request_id"]), idempotency_key=str(raw["idempotency_key"]),
            series_key=str(raw["series_key"]), action=str(raw["action"]),
            service=str(raw["service"]), target=str(raw["target"]),
            rollback=None if raw.get("rollback") is None else str(raw["rollback"]),
            spec=spec, baseline=_float(raw["baseline"], math.nan),
            started_at=float(raw["started_at"]),
            finding_id=None if raw.get("finding_id") is None else str(raw["finding_id"]),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a watch got: the run of good points at the end, the last point counted."""

    streak: int = 0
    last_ts: float = -math.inf
    points: int = 0              # points counted inside the window so far
    last_value: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinities or NaN: None stands for "no point yet".
        return {"streak": self.streak, "last_ts": _num(self.last_ts), "points": self.points,
                "last_value": _num(self.last_value)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Progress:
        return cls(streak=int(raw["streak"]), last_ts=_float(raw["last_ts"], -math.inf),
                   points=int(raw["points"]), last_value=_float(raw["last_value"], math.nan))


NO_PROGRESS = Progress()
"""Where every watch starts: no point counted yet."""


def recovered(spec: VerifySpec, baseline: float, values: npt.ArrayLike) -> BoolArray:
    """Whether each value meets the recovery condition; NaN never does. Bounds are inclusive.

    >>> v = np.array([150.0, 250.0, 251.0, np.nan])
    >>> recovered(VerifySpec(60.0, Recovery.NEAR_BASELINE, 0.25), 200.0, v).tolist()
    [True, True, False, False]
    >>> recovered(VerifySpec(60.0, Recovery.BELOW, 250.0), 0.0, v).tolist()
    [True, True, False, False]
    >>> recovered(VerifySpec(60.0, Recovery.ABOVE, 250.0), 0.0, v).tolist()
    [False, True, True, False]
    """
    x = np.asarray(values, dtype=np.float64)
    if spec.condition is Recovery.BELOW:
        return x <= spec.threshold
    if spec.condition is Recovery.ABOVE:
        return x >= spec.threshold
    tolerance = spec.threshold * max(abs(baseline), _NEAR_FLOOR)
    # Comparisons with NaN are False, so a NaN value (or baseline) never recovers.
    return np.abs(x - baseline) <= tolerance


def describe(spec: VerifySpec, baseline: float) -> str:
    """The condition in words, for details and pages.

    >>> describe(VerifySpec(60.0, Recovery.NEAR_BASELINE, 0.125), 200.0)
    'within 12.5% of baseline 200'
    >>> describe(VerifySpec(60.0, Recovery.BELOW, 0.01), 0.0)
    'at or below 0.01'
    """
    if spec.condition is Recovery.BELOW:
        return f"at or below {spec.threshold:g}"
    if spec.condition is Recovery.ABOVE:
        return f"at or above {spec.threshold:g}"
    return f"within {spec.threshold * 100:g}% of baseline {baseline:g}"


def advance(w: Watch, p: Progress, ts: npt.ArrayLike,
            values: npt.ArrayLike) -> tuple[Progress, Check | None]:
    """Apply new points of the watched series; pure, any order, replays harmless.

    Points at or before ``started_at`` or ``p.last_ts`` are ignored (a replayed batch
    counts nothing twice); duplicates of one timestamp count once (the first). Returns the
    new progress and, when the watch is decided, its check: ``recovered`` at the first point
    that completes a run of ``for_points`` inside the window, else ``no_recovery`` if a
    point at or past the deadline arrived.
    """
    t = np.asarray(ts, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    fresh = t > max(w.started_at, p.last_ts)
    if not fresh.any():
        return p, None
    # np.unique sorts and keeps the first occurrence of each timestamp.
    t, first = np.unique(t[fresh], return_index=True)
    x = x[fresh][first]
    n_in = int(np.searchsorted(t, w.deadline, side="left"))
    if n_in:
        t_in, x_in = t[:n_in], x[:n_in]
        ok = recovered(w.spec, w.baseline, x_in)
        i = np.arange(n_in)
        last_bad = np.maximum.accumulate(np.where(ok, -1, i))
        streak = np.where(last_bad < 0, p.streak + i + 1, i - last_bad)
        hits = np.flatnonzero(streak >= w.spec.for_points)
        end = int(hits[0]) if hits.size else n_in - 1
        p = Progress(streak=int(streak[end]), last_ts=float(t_in[end]),
                     points=p.points + end + 1, last_value=float(x_in[end]))
        if hits.size:
            return p, _recovered_check(w, p)
    if n_in < t.size:
        return p, _no_recovery_check(w, p, float(t[n_in]))
    return p, None


def expire(w: Watch, p: Progress, now: float) -> Check | None:
    """``no_recovery`` once ``now`` (event time of the series' partition) reaches the deadline.

    >>> w = Watch("req_1", "k", "api|lat|", "restart", "api", "pod-1", None,
    ...           VerifySpec(60.0), baseline=100.0, started_at=0.0)
    >>> expire(w, Progress(), 59.9) is None
    True
    >>> print(expire(w, Progress(), 60.0))  # doctest: +NORMALIZE_WHITESPACE
    verify: no_recovery: restart on pod-1: no recovery within 60 s of acting; no point of
    api|lat| arrived in the window (needed 3 in a row within 25% of baseline 100)
    """
    if now < w.deadline:
        return None
    return _no_recovery_check(w, p, now)


def _state(w: Watch, p: Progress) -> dict[str, Any]:
    """What verification read, for the audit record (JSON-able)."""
    s = w.spec
    return {"request_id": w.request_id, "series": w.series_key, "action": w.action,
            "target": w.target, "condition": s.condition.value, "threshold": s.threshold,
            "baseline": _num(w.baseline), "for_points": s.for_points, "window_s": s.window_s,
            "started_at": w.started_at, "deadline": w.deadline, "points": p.points,
            "streak": p.streak, "last_ts": _num(p.last_ts), "last_value": _num(p.last_value)}


def _recovered_check(w: Watch, p: Progress) -> Check:
    n = p.streak
    detail = (f"{n} point{'s' if n != 1 else ''} {describe(w.spec, w.baseline)} by "
              f"{_iso(p.last_ts)}, {p.last_ts - w.started_at:g} s after acting")
    return Check.allow(Stage.VERIFY, "recovered", detail, recovered_at=p.last_ts,
                       **_state(w, p))


def _no_recovery_check(w: Watch, p: Progress, at: float) -> Check:
    s = w.spec
    head = f"{w.action} on {w.target}: no recovery within {s.window_s:g} s of acting"
    cond = describe(s, w.baseline)
    if p.points == 0:
        detail = (f"{head}; no point of {w.series_key} arrived in the window "
                  f"(needed {s.for_points} in a row {cond})")
    else:
        detail = (f"{head}; last value {p.last_value:g} at {_iso(p.last_ts)} "
                  f"({p.streak} of {s.for_points} points in a row {cond})")
    return Check.refuse(Stage.VERIFY, "no_recovery", detail, expired_at=at, **_state(w, p))


@dataclass(slots=True)
class _Entry:
    watch: Watch
    progress: Progress


class Verifier:
    """The watches of one partition, fed with its batches; finished watches drop out.

    Keep one per partition: :meth:`expire` takes that partition's event time, and on a
    rebalance the new owner loads the partition's watches from the store
    (``VerifyStore.pending_for`` with the partition's series keys).
    """

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, _Entry]] = {}
        self._ids: dict[str, str] = {}      # request_id -> series key
        self._keys: frozenset[str] = frozenset()
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def watch(self, w: Watch, progress: Progress = NO_PROGRESS) -> bool:
        """Start watching; False (and nothing changes) if ``w.request_id`` is watched already."""
        if w.request_id in self._ids:
            return False
        self._by_key.setdefault(w.series_key, {})[w.request_id] = _Entry(w, progress)
        self._ids[w.request_id] = w.series_key
        self._keys = frozenset(self._by_key)
        return True

    def watched_keys(self) -> frozenset[str]:
        """Series keys with at least one watch (a cached set: cheap to ask per batch)."""
        return self._keys

    def watches(self) -> list[tuple[Watch, Progress]]:
        """Every watch with its progress, oldest action first."""
        out = [(e.watch, e.progress) for group in self._by_key.values() for e in group.values()]
        return sorted(out, key=lambda wp: (wp[0].started_at, wp[0].request_id))

    def drain_changed(self) -> list[tuple[Watch, Progress]]:
        """Watches whose progress moved since the last call, for ``VerifyStore.save_progress``."""
        out = []
        for rid in sorted(self._dirty):
            key = self._ids.get(rid)
            if key is not None:
                e = self._by_key[key][rid]
                out.append((e.watch, e.progress))
        self._dirty.clear()
        return out

    def feed(self, series_key: str, ts: npt.ArrayLike,
             values: npt.ArrayLike) -> list[tuple[Watch, Check]]:
        """Points of one series; returns the watches this decided (and stops watching them)."""
        group = self._by_key.get(series_key)
        if not group:
            return []
        done = []
        for rid, e in list(group.items()):
            p, check = advance(e.watch, e.progress, ts, values)
            if check is not None:
                done.append((e.watch, check))
                self._drop(rid)
            elif p != e.progress:
                e.progress = p
                self._dirty.add(rid)
        return done

    def feed_batch(self, rows: npt.NDArray[np.intp], ts: FloatArray, values: FloatArray,
                   row_of: Callable[[str], int | None]) -> list[tuple[Watch, Check]]:
        """A partition's batch columns (points of many series mixed, any order).

        ``row_of`` maps a series key to its row in the partition's index (None if the
        partition has never seen it). Only watched series are looked at, so the Python work
        is per watched series, and the point columns are scanned vectorised.
        """
        if not self._keys:
            return []
        done = []
        for key in sorted(self._keys):
            row = row_of(key)
            if row is None:
                continue
            sel = rows == row
            if sel.any():
                done.extend(self.feed(key, ts[sel], values[sel]))
        return done

    def expire(self, now: float) -> list[tuple[Watch, Check]]:
        """``no_recovery`` for every watch whose deadline ``now`` has reached.

        Feed the batch first, then expire with the partition's event time, so points that
        arrived in time are counted before the deadline is judged.
        """
        done = []
        for rid, key in list(self._ids.items()):
            e = self._by_key[key][rid]
            check = expire(e.watch, e.progress, now)
            if check is not None:
                done.append((e.watch, check))
                self._drop(rid)
        return done

    def forget(self, request_id: str) -> bool:
        """Stop watching without a verdict (another replica finished it); False if unknown."""
        if request_id not in self._ids:
            return False
        self._drop(request_id)
        return True

    def _drop(self, request_id: str) -> None:
        key = self._ids.pop(request_id)
        group = self._by_key[key]
        del group[request_id]
        if not group:
            del self._by_key[key]
            self._keys = frozenset(self._by_key)
        self._dirty.discard(request_id)


def _iso(ts: float) -> str:
    """UTC ISO time; milliseconds only when the timestamp has a fraction."""
    spec = "seconds" if float(ts).is_integer() else "milliseconds"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _float(x: Any, missing: float) -> float:
    return missing if x is None else float(x)


__all__ = ["NO_PROGRESS", "Progress", "Verifier", "Watch", "advance", "describe", "expire",
           "recovered"]


def watch_for(req: Request, catalogue: Catalogue,
              started_at: float | None = None) -> Watch | None:
    """The verification watch for a queued request, or None when there is nothing to watch
    (the action declares no verification, the request names no series, or recovery is
    "near the baseline" and the finding had none).

    The window starts at the finding's point (event time), not when the executor answered:
    the processor opens the watch as it queues the action, so not one point of the series
    is missed while the action runs, and a backlog replay verifies as the live loop did.
    An action that waited for a person starts its window when it was approved
    (``started_at``, in the series' time): nothing before it can show the action's effect.

    >>> from dataclasses import replace
    >>> from escalation.catalogue import ActionSpec, VerifySpec
    >>> from escalation.request import Actor, ActorKind
    >>> cat = Catalogue(actions={"restart_pods": ActionSpec("restart_pods",
    ...                                                      verify=VerifySpec(120.0))})
    >>> req = Request(Actor(ActorKind.AUTOMATION, "r"), "restart_pods", "checkout", "prod",
    ...               "deployment/checkout", "r:f1", 500.0, event_ts=480.0,
    ...               evidence={"series": "checkout|lat|", "baseline": 200.0})
    >>> w = watch_for(req, cat)
    >>> w.series_key, w.started_at, w.deadline, w.baseline
    ('checkout|lat|', 480.0, 600.0, 200.0)
    >>> watch_for(replace(req, evidence={"series": "k", "baseline": None}), cat) is None
    True
    """
    spec = catalogue.action(req.action)
    series = req.evidence.get("series")
    if spec is None or spec.verify is None or not isinstance(series, str):
        return None
    raw = req.evidence.get("baseline")
    baseline = float(raw) if isinstance(raw, (int, float)) else math.nan
    if spec.verify.condition is Recovery.NEAR_BASELINE and not math.isfinite(baseline):
        return None
    return Watch(
        request_id=req.request_id, idempotency_key=req.idempotency_key, series_key=series,
        action=req.action, service=req.service, target=req.target, rollback=spec.rollback,
        spec=spec.verify, baseline=baseline,
        started_at=started_at if started_at is not None else (
            req.event_ts if req.event_ts is not None else req.requested_at),
        finding_id=req.finding_id,
    )
