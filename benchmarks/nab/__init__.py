"""The Numenta Anomaly Benchmark: replay its files through hotpath and score the result.

``python -m benchmarks.nab --data DIR --out RESULTS --windows FILE`` (see ``__main__``).

Modules, one concern each:

- :mod:`benchmarks.nab.data`: NAB's files (data CSVs, label windows, result CSVs) in and out;
- :mod:`benchmarks.nab.scoring`: NAB's scoring rules and the corpus-wide threshold sweep;
- :mod:`benchmarks.nab.harness`: every file through the live code path
  (``PartitionState.ingest``) and the one function turning its output into a NAB score.

Errors::

    NabError
    ├── DataError      a file or a row of one is unreadable (names the file and line)
    ├── ScoringError   labels that do not fit the scored files (names file and window)
    └── ReplayError    the live path refused a row (names file, line and the reason)
"""

from __future__ import annotations


class NabError(Exception):
    """Base of every error this benchmark raises; the CLI prints it and exits 1."""


class DataError(NabError):
    """A NAB file, or one of its rows, cannot be read.

    >>> str(DataError("realTweets/x.csv: line 3: bad value 'abc'"))
    "realTweets/x.csv: line 3: bad value 'abc'"
    """


class ScoringError(NabError):
    """The labels do not fit the files being scored."""


class ReplayError(NabError):
    """The live path rejected a row, so it would have no score."""
