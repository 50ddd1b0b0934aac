"""Read and write IDX files, the binary format of MNIST and Fashion-MNIST.

Format (Y. LeCun, C. Cortes, C. Burges, "THE MNIST DATABASE of handwritten digits",
http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS FOR THE MNIST DATABASE")::

    bytes 0-1   0x00 0x00
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions, ndim
    then        ndim sizes, each a big-endian uint32
    then        the data, big-endian, C order (last index changes fastest)

Files may be gzip-compressed (``*.gz``, as distributed); :func:`read_idx` recognises gzip by
its magic bytes, whatever the name. Every check failure raises :class:`DataError` naming the
file and the fix, so a truncated download never becomes a confusing reshape error later on.
"""

from __future__ import annotations

import gzip as _gzip
import os
import zlib
from pathlib import Path

import numpy as np

from deepnotes.errors import DataError
from deepnotes.io import write_bytes_atomic

#: IDX dtype code -> numpy dtype (big-endian as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
                                   0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODE_OF = {dt.newbyteorder("=").str if dt.itemsize > 1 else dt.str: code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_REFETCH = "Delete it and download or build it again."


def _raw_bytes(path: Path) -> bytes:
    """File contents, gunzipped if the file starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: IDX file not found.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e.strerror or e}).") from e
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return _gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({e}). {_REFETCH}") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a numpy array.

    Args:
        path: the ``.idx*`` / ``*-ubyte`` file, optionally gzip-compressed (detected from the
            content, not the name).

    Returns:
        A new, writable, native-endian array with the file's shape and dtype (``uint8`` for
        MNIST images ``(N, 28, 28)`` and labels ``(N,)``).

    Raises:
        DataError: the file is missing or unreadable; the gzip stream is corrupt or truncated;
            the magic bytes or dtype code are wrong; the header is cut short; or the payload is
            not exactly ``prod(dims) * itemsize`` bytes (a truncated or extended file). The
            message names the file and says to delete it and fetch it again.

    Example::

        >>> x = read_idx("t10k-images-idx3-ubyte.gz")   # doctest: +SKIP
        >>> x.shape, x.dtype
        ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (the first two bytes must be 0x00 0x00, got "
                        f"{data[:4].hex(' ') or 'an empty file'}). {_REFETCH}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X} (expected one of "
                        f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}). {_REFETCH}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header}). {_REFETCH}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "too long"
        raise DataError(f"{path}: IDX file is {what}: its header says shape {dims} of {dtype.name}, i.e. "
                        f"{expected} bytes of data, but it holds {actual}. {_REFETCH}")
    flat = np.frombuffer(data, dtype=dtype, offset=header)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, gzip: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically.

    Args:
        path: destination file; its folder is created.
        array: any shape with 1 to 255 dimensions, each below 2**32; dtype uint8, int8, int16,
            int32, float32 or float64 (others raise ``ValueError``; convert first).
        gzip: compress with gzip. Default ``None``: compress iff ``path`` ends in ``.gz``. The
            gzip header has mtime 0 and no file name, so the same array gives the same bytes.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: unsupported dtype or shape.
    """
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str if array.dtype.itemsize > 1 else array.dtype.str
    if key not in _CODE_OF:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX code; use one of "
                         f"uint8, int8, int16, int32, float32, float64")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: shape {array.shape} cannot be stored in IDX")
    code = _CODE_OF[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if gzip is None:
        gzip = path.suffix == ".gz"
    if gzip:
        payload = _gzip.compress(payload, compresslevel=6, mtime=0)
    write_bytes_atomic(path, payload)
    return path
