"""Making a file's directory entry durable: the step after fsyncing the file itself."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync ``directory``: a new or renamed file's name is durable only once this returns.

    Fsyncing a file makes its bytes durable, not the entry that names it; after a crash a
    created or ``os.replace``-d file could be missing, or be the old one, without this.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "x").write_bytes(b"1")
    1
    >>> fsync_dir(d)
    >>> fsync_dir(d / "missing")
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: ...
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
