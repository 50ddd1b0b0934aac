"""IDX reader/writer: round trips, hand-computed bytes, and every corruption raising DataError."""

import gzip
import re

import numpy as np
import pytest

from deepnotes.data.idx import read_idx, write_idx
from deepnotes.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_round_trip(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    else:
        arr = rng.standard_normal(shape).astype(dtype)
    path = write_idx(tmp_path / f"x.idx{suffix}", arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # writable, not a view of the file's bytes


def test_hand_computed_bytes(tmp_path):
    write_idx(tmp_path / "a", np.array([1, 2], dtype=np.uint8))
    assert (tmp_path / "a").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02"
    write_idx(tmp_path / "b", np.array([[258]], dtype=np.int16))
    assert (tmp_path / "b").read_bytes() == b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x01" * 2 + b"\x01\x02"


def test_gzip_detected_by_content_and_deterministic(tmp_path):
    arr = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    p1 = write_idx(tmp_path / "no-suffix", arr, gzip=True)
    p2 = write_idx(tmp_path / "again.gz", arr)
    assert p1.read_bytes() == p2.read_bytes()  # mtime 0, no file name in the header
    assert p1.read_bytes()[4:8] == b"\x00\x00\x00\x00"
    np.testing.assert_array_equal(read_idx(p1), arr)
    raw = write_idx(tmp_path / "raw.gz", arr, gzip=False)  # explicit False wins over the suffix
    np.testing.assert_array_equal(read_idx(raw), arr)


def _good(tmp_path):
    return write_idx(tmp_path / "img-idx3-ubyte", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "too long"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b"\x01" + b[1:], "not an IDX file"),
        (lambda b: b"", "not an IDX file"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX dtype code 0x0A"),
        (lambda b: b[:4] + b"\x00\x00\x00\x03" + b[8:], r"shape \(3, 3, 4\)"),  # dims disagree with size
    ],
)
def test_corrupt_raw_raises(tmp_path, mutate, message):
    path = _good(tmp_path)
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
        read_idx(path)


@pytest.mark.parametrize("how", ["truncated", "corrupt", "truncated-payload"])
def test_corrupt_gzip_raises(tmp_path, how):
    arr = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", arr)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
        message = "truncated gzip"
    elif how == "corrupt":
        data[len(data) // 2] ^= 0xFF
        message = "corrupt or truncated gzip"
    else:  # a valid gzip stream whose IDX payload is short
        data = gzip.compress(gzip.decompress(bytes(data))[:-100], mtime=0)
        message = "truncated"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message) as exc:
        read_idx(path)
    assert "download" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: IDX file not found"):
        read_idx(tmp_path / "nope.gz")


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert not (tmp_path / "x").exists()
