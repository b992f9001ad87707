"""A Prometheus histogram fed a numpy array at a time.

``prometheus_client.Histogram.observe`` is one Python call per value; the end-to-end lag
is measured for every point, and per-point Python work is the hot loop's ceiling. This
collector bins a whole batch with one ``np.searchsorted`` + ``np.bincount`` and exposes
the same text format as a regular histogram.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> reg = CollectorRegistry()
>>> h = BulkHistogram("lag_seconds", "Lag.", (0.1, 1.0), registry=reg)
>>> h.observe_many(np.array([0.05, 0.5, 0.5, 7.0]))
>>> for line in generate_latest(reg).decode().splitlines():
...     if "bucket" in line:
...         print(line)
lag_seconds_bucket{le="0.1"} 1.0
lag_seconds_bucket{le="1.0"} 3.0
lag_seconds_bucket{le="+Inf"} 4.0
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client.core import CollectorRegistry, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        self._name = name
        self._doc = documentation
        self._edges = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._edges) + 1, dtype=np.int64)  # last = +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # the scrape runs in the HTTP server's thread
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        # side="left": a value equal to an edge belongs to that bucket (le = less or equal).
        idx = np.searchsorted(self._edges, values, side="left")
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cum = np.cumsum(self._counts)
            total_sum = self._sum
        buckets = [(repr(float(e)), float(c)) for e, c in zip(self._edges, cum[:-1], strict=True)]
        buckets.append(("+Inf", float(cum[-1])))
        yield HistogramMetricFamily(self._name, self._doc, buckets=buckets, sum_value=total_sum)
