"""NAB scoring: each rule on hand-made files, then the README's reference figures.

``σ(x) = 2 / (1 + e^{5x}) - 1 = -tanh(5x / 2)``, so expected values below are written with
``tanh``: a TP at relative position ``p`` is worth ``tanh(-5p/2) / tanh(5/2)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.nab import ScoringError
from benchmarks.nab.data import list_files, read_scores, read_windows
from benchmarks.nab.scoring import (
    PROFILES,
    Corpus,
    FloatArray,
    TimeArray,
    Window,
    file_rows,
    probationary_length,
    score_corpus,
    score_profiles,
    sweep,
)

NAB_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab-dev"
STANDARD, LOW_FP, LOW_FN = (PROFILES[k] for k in
                            ("standard", "reward_low_FP_rate", "reward_low_FN_rate"))
T0 = np.datetime64("2014-04-10T07:15:00", "us")


def minutes(n: int) -> TimeArray:
    return T0 + np.arange(n) * np.timedelta64(60, "s")


def one_file(n: int, hits: dict[int, float], windows: list[tuple[int, int]]
             ) -> tuple[dict[str, tuple[TimeArray, FloatArray]], dict[str, list[Window]]]:
    """A file of ``n`` one-minute rows, score ``hits[i]`` at row i (0 elsewhere)."""
    ts = minutes(n)
    scores = np.zeros(n)
    for i, s in hits.items():
        scores[i] = s
    return {"c/f.csv": (ts, scores)}, {"c/f.csv": [(ts[a], ts[b]) for a, b in windows]}


def tp(p: float) -> float:
    """A detection's value at relative position ``p`` in a window: σ(p) / σ(-1)."""
    return math.tanh(-2.5 * p) / math.tanh(2.5)


def fp(q: float) -> float:
    """A false positive's unit value ``q`` window widths past the previous window."""
    return -1.0 if q > 3 else -math.tanh(2.5 * q)


def test_probationary_length_is_15_percent_capped_at_750() -> None:
    assert [probationary_length(n) for n in (0, 6, 7, 20, 4032, 5000, 5001, 22695)] == [
        0, 0, 1, 3, 604, 750, 750, 750]


def test_a_detection_at_the_window_start_is_worth_tp_weight() -> None:
    files, wins = one_file(20, {10: 0.7}, [(10, 13)])
    r = score_corpus(files, wins, STANDARD)
    assert (r.threshold, r.tp, r.fp, r.fn) == (0.7, 1, 0, 0)
    assert r.raw == pytest.approx(1.0, abs=1e-12)
    assert r.normalised == pytest.approx(100.0, abs=1e-9)


def test_a_later_detection_is_worth_less_and_a_window_counts_its_best_once() -> None:
    # Window rows 10..13 (w = 4): row 13 is at p = -1/4, row 12 at p = -2/4.
    files, wins = one_file(20, {13: 0.7}, [(10, 13)])
    assert score_corpus(files, wins, STANDARD).raw == pytest.approx(tp(-0.25), abs=1e-12)
    assert tp(-0.25) == pytest.approx(0.562124, abs=1e-6)

    files, wins = one_file(20, {12: 0.7, 13: 0.7}, [(10, 13)])
    r = score_corpus(files, wins, STANDARD)
    assert r.raw == pytest.approx(tp(-0.5), abs=1e-12)  # the best of the two, not their sum
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_a_missed_window_costs_fn_weight_and_normalises_to_zero() -> None:
    # Threshold 0 (every row) would catch the window, but 35 rows before it cost more.
    files, wins = one_file(100, {}, [(50, 53)])
    for profile, raw in ((STANDARD, -1.0), (LOW_FP, -1.0), (LOW_FN, -2.0)):
        r = score_corpus(files, wins, profile)
        assert (r.threshold, r.raw, r.normalised, r.tp, r.fp, r.fn) == (
            math.inf, raw, 0.0, 0, 0, 1)


def test_a_false_positive_before_any_window_costs_fp_weight() -> None:
    files, wins = one_file(20, {5: 0.9, 10: 0.9}, [(10, 13)])
    for profile, raw in ((STANDARD, 1 - 0.11), (LOW_FP, 1 - 0.22), (LOW_FN, 1 - 0.11)):
        r = score_corpus(files, wins, profile)
        assert (r.threshold, r.tp, r.fp, r.fn) == (0.9, 1, 1, 0)
        assert r.raw == pytest.approx(raw, abs=1e-12)
    r = score_corpus(files, wins, LOW_FN)  # null -2, perfect 1
    assert r.normalised == pytest.approx(100 * (0.89 + 2) / 3, abs=1e-9)


def test_a_false_positive_after_a_window_is_weighted_by_its_distance() -> None:
    # w' = 4 ending at row 13: row 14 is q = 1/3 past it, row 19 q = 2, row 24 q = 11/3 > 3.
    for row, unit in ((14, fp(1 / 3)), (19, fp(2.0)), (24, fp(11 / 3))):
        files, wins = one_file(40, {10: 0.9, row: 0.9}, [(10, 13)])
        r = score_corpus(files, wins, STANDARD)
        assert r.raw == pytest.approx(1 + 0.11 * unit, abs=1e-12), row
    # Past the first of two windows, before the second: weighted by the first.
    files, wins = one_file(60, {10: 0.9, 15: 0.9, 40: 0.9}, [(10, 13), (40, 45)])
    assert score_corpus(files, wins, STANDARD).raw == pytest.approx(
        2 + 0.11 * fp(2 / 3), abs=1e-12)


def test_probationary_rows_are_ignored_entirely() -> None:
    # n = 100: rows 0..14 are probationary. A top score there is no candidate threshold.
    files, wins = one_file(100, {1: 1.0}, [(50, 53)])
    corpus = Corpus.build(files, wins)
    assert sweep(corpus, STANDARD).thresholds.tolist() == [math.inf, 0.0]
    assert score_corpus(files, wins, STANDARD).raw == -1.0
    # A window inside the probationary period has no scorable row: never a miss.
    ts = minutes(40)
    rows = file_rows("c/f.csv", ts, np.zeros(40), [(ts[1], ts[4]), (ts[20], ts[22])])
    assert rows.n_windows == 2
    assert sorted(set(rows.window.tolist())) == [-1, 1]
    assert rows.scores.size == 34


def test_every_distinct_score_is_a_threshold_and_the_best_one_is_chosen() -> None:
    # Thresholds 0.9 (FP only), 0.8 (+ the window), 0.5 (+ a second FP), 0.0 (everything).
    files, wins = one_file(20, {5: 0.9, 10: 0.8, 17: 0.5}, [(10, 13)])
    s = sweep(Corpus.build(files, wins), STANDARD)
    assert s.thresholds.tolist() == [math.inf, 0.9, 0.8, 0.5, 0.0]
    assert s.raw[:4].tolist() == pytest.approx(
        [-1.0, -1.11, 0.89, 0.89 + 0.11 * fp(4 / 3)], abs=1e-12)
    r = score_corpus(files, wins, STANDARD)
    assert (r.threshold, r.tp, r.fp, r.fn) == (0.8, 1, 1, 0)
    assert r.normalised == pytest.approx(100 * (0.89 + 1) / 2, abs=1e-9)


def test_nothing_detected_wins_when_every_detection_costs_more_than_it_earns() -> None:
    files, wins = one_file(40, {d: 0.6 for d in range(10, 22)} | {30: 0.6}, [(30, 32)])
    r = score_corpus(files, wins, LOW_FP)  # 12 FPs at -0.22 each outweigh the window's +2
    assert (r.threshold, r.raw, r.normalised, r.tp, r.fp, r.fn) == (
        math.inf, -1.0, 0.0, 0, 0, 1)


def test_a_row_scoring_exactly_the_threshold_is_a_detection() -> None:
    files, wins = one_file(20, {10: 0.5, 11: 0.5}, [(10, 13)])
    r = score_corpus(files, wins, STANDARD)
    assert (r.threshold, r.raw) == (0.5, 1.0)


def test_one_threshold_for_the_whole_corpus() -> None:
    # Alone, file a would pick 0.8; together the files share 0.6, which b's window needs.
    ts = minutes(20)
    a, b = np.zeros(20), np.zeros(20)
    a[10], b[4], b[10] = 0.8, 0.9, 0.6
    files = {"c/a.csv": (ts, a), "c/b.csv": (ts, b)}
    wins = {"c/a.csv": [(ts[10], ts[13])], "c/b.csv": [(ts[10], ts[13])]}
    r = score_corpus(files, wins, STANDARD)
    assert (r.threshold, r.tp, r.fp, r.fn) == (0.6, 2, 1, 0)
    assert r.raw == pytest.approx(2 - 0.11, abs=1e-12)
    assert r.normalised == pytest.approx(100 * (1.89 + 2) / 4, abs=1e-9)


def test_labels_that_do_not_fit_the_rows_are_refused_with_file_and_window() -> None:
    ts = minutes(20)
    late = ts[5] + np.timedelta64(1, "s")
    with pytest.raises(ScoringError) as e:
        score_corpus({"c/f.csv": (ts, np.zeros(20))}, {"c/f.csv": [(late, ts[9])]}, STANDARD)
    assert str(e.value) == ("c/f.csv: window bound 2014-04-10T07:20:01.000000 is no row's "
                            "timestamp")
    with pytest.raises(ScoringError) as e:
        score_corpus({"c/f.csv": (ts, np.zeros(20))},
                     {"c/f.csv": [(ts[5], ts[9]), (ts[9], ts[12])]}, STANDARD)
    assert str(e.value) == ("c/f.csv: window starting 2014-04-10T07:24:00.000000 overlaps the "
                            "one ending 2014-04-10T07:24:00.000000")
    with pytest.raises(ScoringError) as e:
        score_corpus({"c/f.csv": (ts, np.zeros(20))}, {"c/f.csv": [(ts[9], ts[5])]}, STANDARD)
    assert str(e.value) == ("c/f.csv: window 2014-04-10T07:24:00.000000 .. "
                            "2014-04-10T07:20:00.000000 ends before it starts")
    with pytest.raises(ScoringError) as e:
        score_corpus({"c/g.csv": (ts, np.zeros(20))}, {"c/f.csv": []}, STANDARD)
    assert str(e.value) == "c/g.csv: not in the windows file"
    with pytest.raises(ScoringError) as e:
        score_corpus({"c/f.csv": (ts, np.zeros(20))}, {"c/f.csv": []}, STANDARD)
    assert str(e.value) == "no labeled windows: the normalised score is undefined"


# The README's table: NAB's own scorer on the shipped results of these 28 files.
REFERENCE = {
    "numenta": {"standard": 65.78, "reward_low_FP_rate": 58.15, "reward_low_FN_rate": 70.29},
    "windowedGaussian": {"standard": 33.89, "reward_low_FP_rate": 11.36,
                         "reward_low_FN_rate": 42.97},
}


@pytest.mark.skipif(not NAB_DEV.is_dir(), reason=f"NAB dev data not found at {NAB_DEV} "
                    "(CI has it at ../shared/data/nab-dev beside the repository)")
@pytest.mark.parametrize("detector", sorted(REFERENCE))
def test_the_reference_figures_are_reproduced(detector: str) -> None:
    windows = read_windows(NAB_DEV / "labels" / "windows.json")
    names = list_files(NAB_DEV / "data")
    assert len(names) == 28
    files = {}
    for n in names:
        s = read_scores(NAB_DEV / "reference" / detector / n, n)
        files[n] = (s.timestamps, s.scores)
    results = score_profiles(files, windows)
    assert list(results) == list(REFERENCE[detector])
    for profile, expected in REFERENCE[detector].items():
        assert results[profile].normalised == pytest.approx(expected, abs=0.1), profile
        assert results[profile].tp + results[profile].fn == 58
