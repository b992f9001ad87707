"""Cyclic garbage-collector settings for a process that runs the hot loop.

Every batch allocates tens of thousands of short-lived container objects (aiokafka's
records, the decoder's key tuples). With CPython's default first-generation threshold of
700 allocations, the collector ran dozens of times per batch and each older-generation
pass walked every long-lived object (series index, memo, metrics): profiling the point
message benchmark measured 257k points per CPU-second with the defaults and 370k with the
settings below. Almost nothing the loop allocates is part of a reference cycle, so
collecting less often frees the same memory, a little later.

The process entry points (``hotpath run``, ``hotpath demo``, the benchmarks) call
:func:`tune_gc` once; library code never changes interpreter-wide settings on its own.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # why: about ten point messages' worth of batches per young pass
GEN1_THRESHOLD = 20  # why: older passes every ~1M allocations, not every 7,000
# why: a full pass walks every long-lived object (CPython also waits for 25 % growth)
GEN2_THRESHOLD = 100


def tune_gc() -> tuple[int, int, int]:
    """Apply the hot loop's thresholds; returns the previous ones (for a caller to restore).

    >>> old = tune_gc()
    >>> gc.get_threshold()
    (50000, 20, 100)
    >>> gc.set_threshold(*old)
    """
    previous = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return previous
