"""The checkpoint container: round trips, and every way a blob is refused."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hotpath.state_blob import MAGIC, BlobError, pack, unpack

DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int16, np.uint8, np.bool_,
                          np.intp])


@given(st.dictionaries(st.text(min_size=1, max_size=12),
                       hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3,
                                                           min_side=0, max_side=5)),
                       max_size=6),
       st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=3))
def test_round_trip_keeps_names_dtypes_shapes_and_values(arrays: dict[str, np.ndarray],
                                                         meta: dict[str, int]) -> None:
    got_meta, got = unpack(pack(arrays, meta))
    assert got_meta == meta
    assert list(got) == list(arrays)
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype and got[name].shape == a.shape
        np.testing.assert_array_equal(got[name], a)
        assert got[name].flags.writeable


def test_non_contiguous_arrays_are_stored_as_their_values() -> None:
    a = np.arange(12.0).reshape(3, 4)[:, ::2]
    _, got = unpack(pack({"a": a}, {}))
    np.testing.assert_array_equal(got["a"], a)


def test_objects_and_text_are_never_stored() -> None:
    with pytest.raises(BlobError) as err:
        pack({"o": np.array([{"x": 1}], dtype=object)}, {})
    assert str(err.value) == "array 'o': dtype object cannot be stored (numbers and booleans only)"


def test_big_endian_arrays_come_back_in_native_order() -> None:
    a = np.arange(3, dtype=">f8")
    _, got = unpack(pack({"a": a}, {}))
    assert got["a"].dtype == np.dtype("=f8") and got["a"].tolist() == [0.0, 1.0, 2.0]


def _blob(header: object, body: bytes = b"") -> bytes:
    h = orjson.dumps(header)
    return MAGIC + len(h).to_bytes(8, "little") + h + body


@pytest.mark.parametrize(("blob", "error"), [
    (b"PK\x03\x04rest", "not a state blob (starts with b'PK\\x03\\x04')"),
    (MAGIC + b"\x01", "truncated header length: the blob has 5 bytes"),
    (MAGIC + (100).to_bytes(8, "little") + b"{}", "header needs bytes 12..112, the blob has 14"),
    (_blob({"meta": {}}), "unreadable header: 'arrays'"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [2]]]}),
     "bad array entry ['a', '<f8', [2]]: expected [name, dtype, shape, bytes]"),
    (_blob({"meta": [], "arrays": []}), "header must hold a meta object and an arrays list"),
    (_blob({"meta": {}, "arrays": 3}), "header must hold a meta object and an arrays list"),
    (_blob({"meta": {}, "arrays": [[7, "<f8", [1], 8]]}, b"\0" * 8),
     "bad array entry [7, '<f8', [1], 8]: expected [name, dtype, shape, bytes]"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [1.9], 8]]}, b"\0" * 8),
     "bad array entry ['a', '<f8', [1.9], 8]: expected [name, dtype, shape, bytes]"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [1], 8], ["a", "<f8", [1], 8]]}, b"\0" * 16),
     "array 'a' appears twice"),
    (_blob({"meta": {}, "arrays": [["a", "nope", [1], 8]]}, b"\0" * 8),
     "array 'a': unknown dtype 'nope'"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [2**62, 2**62], 8]]}, b"\0" * 8),
     "array 'a': shape [4611686018427387904, 4611686018427387904] of float64 is not 8 bytes"),
    (_blob({"meta": {}, "arrays": [["a", "|O", [1], 8]]}, b"\0" * 8),
     "array 'a': dtype object is not allowed"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [3], 16]]}, b"\0" * 16),
     "array 'a': shape [3] of float64 is not 16 bytes"),
    (_blob({"meta": {}, "arrays": [["a", "<f8", [2], 16]]}, b"\0" * 17),
     "1 bytes after the last array"),
])
def test_a_bad_blob_is_refused_saying_how(blob: bytes, error: str) -> None:
    with pytest.raises(BlobError) as err:
        unpack(blob)
    assert str(err.value) == error
