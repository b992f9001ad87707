"""NAB's scoring rules (``../shared/data/nab-dev/README.md``) and the corpus-wide threshold.

Per file of ``n`` rows, the first :func:`probationary_length` rows are ignored entirely: they
are never detections and never make a window count (a window only counts through its rows
after the probationary period). Every other row gets a *unit value*, the value a detection
there would have with all weights 1:

- inside a window of ``w`` rows ending at row ``r``: ``σ(-(r - i + 1) / w) / σ(-1)``;
- outside: ``σ(|i - r'| / (w' - 1))`` after the previous window (``w'`` rows ending at
  ``r'``; ``σ = -1`` beyond 3), ``-1`` when no window ended before the row.

A profile then only multiplies: a window is worth ``tp_weight`` times its best detected unit
value, or ``-fn_weight`` when it has no detection; every detection outside windows adds
``fp_weight`` times its unit value. So the files are prepared once (:class:`Corpus`) and the
three profiles are swept over the same arrays.

The sweep (:func:`sweep`) tries every distinct score as the threshold (a row is a detection
when its score is ``>=`` it) and "nothing detected" (threshold ``inf``) in one pass: all rows
are sorted by score once; a false positive adds its value when the threshold reaches it; a
window adds the amount by which a row raises its best value so far. The raw score at a
threshold is a cumulative sum read at the last row of each distinct score.

Normalised: ``100 · (raw - null) / (perfect - null)``, ``perfect = windows · tp_weight`` and
``null`` what detecting nothing scores (``-windows · fn_weight``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from benchmarks.nab import ScoringError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
TimeArray = npt.NDArray[np.datetime64]
Window = tuple[np.datetime64, np.datetime64]  # inclusive (first row, last row) timestamps

# NAB's probationary period: the detector is learning; 15% of the file, at most 750 rows.
PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750
# Past a window, a false positive further than 3 window widths away costs the full weight.
_FP_FAR = 3.0
_TIME_UNIT = "datetime64[us]"  # windows carry fractional seconds; microseconds match exactly


@dataclass(frozen=True, slots=True)
class Profile:
    """NAB application profile: what a detected window, a miss and a false alarm weigh."""

    name: str
    tp_weight: float
    fn_weight: float
    fp_weight: float


PROFILES: Mapping[str, Profile] = MappingProxyType({
    p.name: p for p in (
        Profile("standard", tp_weight=1.0, fn_weight=1.0, fp_weight=0.11),
        Profile("reward_low_FP_rate", tp_weight=1.0, fn_weight=1.0, fp_weight=0.22),
        Profile("reward_low_FN_rate", tp_weight=1.0, fn_weight=2.0, fp_weight=0.11),
    )
})
"""The three NAB profiles, by name, in NAB's order."""


class ProfileResult(NamedTuple):
    """One profile's score at its best corpus-wide threshold.

    ``threshold`` is ``inf`` when detecting nothing scores best. ``tp``/``fn`` count windows
    detected/missed, ``fp`` detections outside windows.
    """

    profile: str
    threshold: float
    raw: float
    normalised: float
    tp: int
    fp: int
    fn: int


class Sweep(NamedTuple):
    """Raw score at each candidate threshold, thresholds descending (``inf`` first)."""

    thresholds: FloatArray
    raw: FloatArray


def probationary_length(n_rows: int) -> int:
    """Rows at the start of a file that are ignored entirely.

    >>> probationary_length(4032), probationary_length(22695), probationary_length(6)
    (604, 750, 0)
    """
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(x: FloatArray) -> FloatArray:
    """``σ(x) = 2 / (1 + e^{5x}) - 1``, and ``-1`` for ``x > 3``.

    >>> scaled_sigmoid(np.array([-1.0, 0.0, 3.5])).round(5).tolist()
    [0.98661, 0.0, -1.0]
    """
    with np.errstate(over="ignore"):  # e^{5x} overflows to inf far past a window: σ -> -1
        s = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > _FP_FAR, -1.0, s)


class FileRows(NamedTuple):
    """A file's scorable rows (after the probationary period), profile-independent."""

    scores: FloatArray
    window: IntArray  # index of the row's window in the file's sorted windows, -1 outside
    unit: FloatArray  # a detection's value with all weights 1
    n_windows: int  # labeled windows, counted for ``perfect`` even if all in probation


def file_rows(name: str, timestamps: TimeArray, scores: FloatArray,
              windows: Sequence[Window]) -> FileRows:
    """Place a file's rows relative to its windows and give each its unit value.

    A window bound must equal a row's timestamp; the first such row is the bound.

    >>> ts = np.arange(np.datetime64("2014-01-01T00:00"), np.datetime64("2014-01-01T00:20"))
    >>> win = [(ts[10], ts[13])]
    >>> rows = file_rows("f", ts, np.zeros(20), win)
    >>> rows.window.tolist()  # 3 probationary rows dropped
    [-1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1]
    >>> rows.unit[7].item(), rows.unit[0].item()  # window start; no window ended before
    (1.0, -1.0)
    """
    n = len(timestamps)
    if len(scores) != n:
        raise ScoringError(f"{name}: {n} timestamps but {len(scores)} scores")
    ts = timestamps.astype(_TIME_UNIT)
    bounds = sorted((_first_row(name, ts, a), _first_row(name, ts, b)) for a, b in windows)
    starts = np.array([a for a, _ in bounds], dtype=np.intp)
    ends = np.array([b for _, b in bounds], dtype=np.intp)
    for k, (a, b) in enumerate(bounds):
        if b < a:
            raise ScoringError(f"{name}: window {_at(ts, a)} .. {_at(ts, b)} ends before it "
                               "starts")
        if k and a <= ends[k - 1]:
            raise ScoringError(f"{name}: window starting {_at(ts, a)} overlaps the one "
                               f"ending {_at(ts, ends[k - 1])}")
    widths = (ends - starts + 1).astype(np.float64)

    idx = np.arange(n, dtype=np.intp)
    window = np.full(n, -1, dtype=np.intp)
    unit = np.empty(n, dtype=np.float64)
    max_tp = scaled_sigmoid(np.array([-1.0]))[0]
    for k, (a, b) in enumerate(bounds):
        inside = idx[a:b + 1]
        window[a:b + 1] = k
        unit[a:b + 1] = scaled_sigmoid(-(b - inside + 1) / widths[k]) / max_tp

    outside = window < 0
    prev = np.searchsorted(ends, idx[outside], side="left") - 1  # last window ended before
    after = prev >= 0
    q = np.full(prev.shape, np.inf)
    with np.errstate(divide="ignore"):  # a one-row window: every later row counts as far
        q[after] = (np.abs(idx[outside][after] - ends[prev[after]])
                    / (widths[prev[after]] - 1.0))
    unit[outside] = np.where(after, scaled_sigmoid(q), -1.0)

    start = probationary_length(n)
    return FileRows(np.asarray(scores[start:], dtype=np.float64), window[start:],
                    unit[start:], len(bounds))


def _first_row(name: str, ts: TimeArray, when: np.datetime64) -> int:
    key = np.asarray(when).astype(_TIME_UNIT)
    hits = np.flatnonzero(ts == key)
    if hits.size == 0:
        raise ScoringError(f"{name}: window bound {key} is no row's timestamp")
    return int(hits[0])


def _at(ts: TimeArray, i: int) -> str:
    return str(ts[i])


@dataclass(frozen=True, slots=True)
class Corpus:
    """Every file's scorable rows side by side, windows numbered across the corpus."""

    scores: FloatArray
    window: IntArray  # corpus-wide window id, -1 outside
    unit: FloatArray
    n_windows: int

    @classmethod
    def build(cls, files: Mapping[str, tuple[TimeArray, FloatArray]],
              windows: Mapping[str, Sequence[Window]]) -> Corpus:
        """Prepare ``files`` (name -> timestamps, scores) against their labeled windows.

        >>> ts = np.arange(np.datetime64("2014-01-01T00:00"), np.datetime64("2014-01-01T00:20"))
        >>> c = Corpus.build({"a.csv": (ts, np.zeros(20))}, {"a.csv": [(ts[10], ts[13])]})
        >>> c.n_windows, c.scores.size
        (1, 17)
        """
        parts: list[FileRows] = []
        offset = 0
        for name, (ts, sc) in files.items():
            if name not in windows:
                raise ScoringError(f"{name}: not in the windows file")
            rows = file_rows(name, ts, sc, windows[name])
            parts.append(rows._replace(window=np.where(rows.window >= 0,
                                                       rows.window + offset, -1)))
            offset += rows.n_windows
        if not parts:
            raise ScoringError("no files to score")
        return cls(np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.window for p in parts]),
                   np.concatenate([p.unit for p in parts]), offset)


def sweep(corpus: Corpus, profile: Profile) -> Sweep:
    """Raw score at every candidate threshold: ``inf`` (nothing) and each distinct score.

    >>> ts = np.arange(np.datetime64("2014-01-01T00:00"), np.datetime64("2014-01-01T00:20"))
    >>> scores = np.zeros(20); scores[10] = 0.9; scores[4] = 0.5
    >>> c = Corpus.build({"a.csv": (ts, scores)}, {"a.csv": [(ts[10], ts[13])]})
    >>> s = sweep(c, PROFILES["standard"])
    >>> s.thresholds.tolist(), s.raw.round(4).tolist()
    ([inf, 0.9, 0.5, 0.0], [-1.0, 1.0, 0.89, -0.3857])
    """
    fp = corpus.window < 0
    in_win = ~fp
    # False positives: each adds its weighted value once the threshold reaches its score.
    ev_scores = [corpus.scores[fp]]
    ev_delta = [corpus.unit[fp] * profile.fp_weight]

    # Windows: walking a window's rows from its highest score down, its contribution is the
    # best value seen so far; each row adds the amount by which it raises that best.
    w_ids, w_scores = corpus.window[in_win], corpus.scores[in_win]
    w_vals = corpus.unit[in_win] * profile.tp_weight
    order = np.lexsort((-w_scores, w_ids))
    w_ids, w_scores, w_vals = w_ids[order], w_scores[order], w_vals[order]
    cuts = np.flatnonzero(np.diff(w_ids)) + 1
    scored_windows = 0
    for ids, s, v in zip(np.split(w_ids, cuts), np.split(w_scores, cuts),
                         np.split(w_vals, cuts), strict=True):
        if ids.size == 0:
            continue
        scored_windows += 1
        best = np.maximum.accumulate(v)
        ev_scores.append(s)
        ev_delta.append(np.diff(best, prepend=-profile.fn_weight))

    null = -profile.fn_weight * scored_windows
    scores = np.concatenate(ev_scores)
    delta = np.concatenate(ev_delta)
    by_score = np.argsort(-scores, kind="stable")
    scores, total = scores[by_score], np.cumsum(delta[by_score])
    # A threshold includes every row with a score >= it: read the sum at each group's end.
    ends = np.flatnonzero(np.diff(scores, append=-np.inf) != 0)
    return Sweep(np.concatenate(([np.inf], scores[ends])),
                 np.concatenate(([null], null + total[ends])))


def score_corpus_prepared(corpus: Corpus, profile: Profile) -> ProfileResult:
    """The best threshold of ``profile`` over a prepared corpus (ties: the higher one)."""
    s = sweep(corpus, profile)
    best = int(np.argmax(s.raw))  # first maximum: the highest threshold among equals
    threshold = float(s.thresholds[best])
    raw = float(s.raw[best])
    null = float(s.raw[0])
    perfect = corpus.n_windows * profile.tp_weight
    if perfect == null:
        raise ScoringError("no labeled windows: the normalised score is undefined")
    detected = corpus.scores >= threshold
    fp = int(np.count_nonzero(detected & (corpus.window < 0)))
    scored = np.unique(corpus.window[corpus.window >= 0])
    tp = int(np.unique(corpus.window[detected & (corpus.window >= 0)]).size)
    return ProfileResult(profile.name, threshold, raw, 100.0 * (raw - null) / (perfect - null),
                         tp, fp, int(scored.size) - tp)


def score_corpus(files: Mapping[str, tuple[TimeArray, FloatArray]],
                 windows: Mapping[str, Sequence[Window]], profile: Profile) -> ProfileResult:
    """Score ``files`` (name -> timestamps, anomaly scores) for one profile.

    >>> ts = np.arange(np.datetime64("2014-01-01T00:00"), np.datetime64("2014-01-01T00:20"))
    >>> scores = np.zeros(20); scores[10] = 0.9
    >>> r = score_corpus({"a.csv": (ts, scores)}, {"a.csv": [(ts[10], ts[13])]},
    ...                  PROFILES["standard"])
    >>> r.threshold, r.raw, r.normalised, (r.tp, r.fp, r.fn)
    (0.9, 1.0, 100.0, (1, 0, 0))
    """
    return score_corpus_prepared(Corpus.build(files, windows), profile)


def score_profiles(files: Mapping[str, tuple[TimeArray, FloatArray]],
                   windows: Mapping[str, Sequence[Window]],
                   profiles: Iterable[Profile] = PROFILES.values()) -> dict[str, ProfileResult]:
    """Score ``files`` for each profile, preparing them once."""
    corpus = Corpus.build(files, windows)
    return {p.name: score_corpus_prepared(corpus, p) for p in profiles}
