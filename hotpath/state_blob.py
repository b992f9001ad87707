"""A flat binary container for a partition's detector state: named arrays plus JSON meta.

Checkpoints were ``np.savez`` archives: a zip member, a header and a CRC per array, which
for the ~180 arrays of a partition cost 5 ms per 2,500 series, taken in the consume loop
every commit interval. This layout is one JSON header and the arrays' bytes back to back::

    b"HPST" | header length (8 bytes, little-endian) | header (JSON) | array bytes ...

The header names each array with its dtype, shape and byte length, and carries the
caller's ``meta``. Only plain numeric and boolean dtypes are written or read (never
objects, so nothing is unpickled), and every length is checked against the blob before a
byte is interpreted: a truncated or altered blob is refused with a :class:`BlobError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

MAGIC = b"HPST"
_LEN = struct.Struct("<Q")
_KINDS = frozenset("biuf")  # bool, signed and unsigned integers, floats: no objects, no text


class BlobError(ValueError):
    """The blob is not a state blob, or is truncated or inconsistent: the message says how."""


def pack(arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> bytes:
    """One blob holding ``arrays`` (by name) and the JSON-able ``meta``.

    >>> blob = pack({"a": np.arange(3), "m": np.ones((2, 2), dtype=np.bool_)}, {"v": 1})
    >>> meta, arrays = unpack(blob)
    >>> meta, arrays["a"].tolist(), arrays["m"].shape
    ({'v': 1}, [0, 1, 2], (2, 2))
    """
    entries = []
    parts = []
    for name, a in arrays.items():
        if a.dtype.kind not in _KINDS:
            raise BlobError(f"array {name!r}: dtype {a.dtype} cannot be stored "
                            "(numbers and booleans only)")
        data = np.ascontiguousarray(a).tobytes()
        entries.append([name, a.dtype.str, list(a.shape), len(data)])
        parts.append(data)
    header = orjson.dumps({"meta": meta, "arrays": entries})
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *parts])


def unpack(blob: bytes) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """``(meta, arrays)`` from :func:`pack`; each array is a writable copy.

    >>> unpack(b"PK\\x03\\x04")
    Traceback (most recent call last):
    ...
    hotpath.state_blob.BlobError: not a state blob (starts with b'PK\\x03\\x04')
    >>> unpack(pack({"a": np.arange(4)}, {})[:-1])
    Traceback (most recent call last):
    ...
    hotpath.state_blob.BlobError: array 'a' needs bytes 53..85, the blob has 84
    """
    if blob[:4] != MAGIC:
        raise BlobError(f"not a state blob (starts with {blob[:4]!r})")
    if len(blob) < 12:
        raise BlobError(f"truncated header length: the blob has {len(blob)} bytes")
    (n,) = _LEN.unpack_from(blob, 4)
    pos = 12 + n
    if pos > len(blob):
        raise BlobError(f"header needs bytes 12..{pos}, the blob has {len(blob)}")
    try:
        header = orjson.loads(blob[12:pos])
        meta, entries = header["meta"], header["arrays"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise BlobError(f"unreadable header: {e}") from e
    if type(meta) is not dict or type(entries) is not list:
        raise BlobError("header must hold a meta object and an arrays list")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for entry in entries:
        name, dtype, shape, size = _entry(entry)
        if name in arrays:
            raise BlobError(f"array {name!r} appears twice")
        end = pos + size
        if end > len(blob):
            raise BlobError(f"array {name!r} needs bytes {pos}..{end}, the blob has "
                            f"{len(blob)}")
        # Stored in the writer's byte order; handed back in this machine's.
        arrays[name] = np.frombuffer(blob, dtype=dtype, count=size // dtype.itemsize,
                                     offset=pos).reshape(shape).astype(dtype.newbyteorder("="))
        pos = end
    if pos != len(blob):
        raise BlobError(f"{len(blob) - pos} bytes after the last array")
    return meta, arrays


def _entry(entry: Any) -> tuple[str, np.dtype[Any], tuple[int, ...], int]:
    """One header entry checked: string name, allowed dtype, int shape matching the size."""
    if type(entry) is not list or len(entry) != 4:
        raise BlobError(f"bad array entry {entry!r}: expected [name, dtype, shape, bytes]")
    name, dtype_str, shape, size = entry
    if type(name) is not str or type(dtype_str) is not str or type(size) is not int \
            or type(shape) is not list or any(type(d) is not int for d in shape):
        raise BlobError(f"bad array entry {entry!r}: expected [name, dtype, shape, bytes]")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as e:
        raise BlobError(f"array {name!r}: unknown dtype {dtype_str!r}") from e
    if dtype.kind not in _KINDS:
        raise BlobError(f"array {name!r}: dtype {dtype} is not allowed")
    if any(d < 0 for d in shape) or math.prod(shape) * dtype.itemsize != size:
        raise BlobError(f"array {name!r}: shape {shape} of {dtype} is not {size} bytes")
    return name, dtype, tuple(shape), size
