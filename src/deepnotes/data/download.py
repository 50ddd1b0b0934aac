"""Download a file and check its SHA-256 before it gets its final name.

The bytes go to a temporary file beside the destination (see :mod:`deepnotes.io`); the file is
renamed to its final name only once its SHA-256 matches, so an interrupted or corrupted download
never looks like a good file. ``urllib`` handles ``http://``, ``https://`` and ``file://`` URLs,
so tests exercise this code on local files without a network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from deepnotes.errors import DataError
from deepnotes.io import atomic_path

_CHUNK = 1 << 20  # bytes read at a time (1 MiB)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 of the file at ``path`` as 64 lowercase hex digits.

    Raises:
        OSError: the file cannot be read (a caller that knows the context turns it into a
            :class:`DataError`).
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def download(url: str, dest: str | os.PathLike[str], sha256: str, *, desc: str | None = None,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, verifying its SHA-256; the file appears only when correct.

    A progress bar (tqdm, on stderr) is shown when stderr is a terminal. An existing ``dest`` is
    replaced only after the new download has been verified.

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        dest: final file path; its folder is created.
        sha256: expected SHA-256, 64 hex digits (case ignored).
        desc: label for the progress bar (default: the file name).
        timeout: seconds to wait for the server on connect and on each read (default 60).

    Returns:
        ``Path(dest)``.

    Raises:
        DataError: the download failed (no network, HTTP error, missing file, bad URL, connection
            cut), or the SHA-256 differs; the message names the URL (and both hashes). No
            temporary or partial file is left behind.
    """
    dest = Path(dest)
    expected = sha256.strip().lower()
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=desc or dest.name, file=sys.stderr, disable=None, leave=False,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (OSError, ValueError, http.client.HTTPException) as e:
            # URLError and HTTPError are OSErrors; ValueError: malformed or unknown-scheme URL.
            raise DataError(f"could not download {url}: {_reason(e)}") from e
        actual = h.hexdigest()
        if actual != expected:
            raise DataError(f"download of {url} is corrupt or not the expected file: SHA-256 {actual}, "
                            f"expected {expected}. Nothing was saved; try again or use another mirror.")
    return dest
