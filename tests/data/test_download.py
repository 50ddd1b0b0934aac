"""sha256_file and download(), through file:// URLs (no network)."""

import hashlib
import re

import pytest

from deepnotes.data.download import download, sha256_file
from deepnotes.errors import DataError

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 example


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src" / "file.bin"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 5000)  # 1.28 MB: more than one read chunk
    return path


def test_sha256_file(tmp_path, src):
    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_file(tmp_path / "abc") == ABC_SHA256
    assert sha256_file(src) == hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_good(tmp_path, src):
    dest = tmp_path / "out" / "sub" / "file.bin"
    got = download(src.as_uri(), dest, sha256_file(src).upper())
    assert got == dest
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no temporary left


def test_download_wrong_hash_leaves_nothing(tmp_path, src):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.bin").write_bytes(b"old")  # an existing file is not clobbered by a bad download
    wrong = "0" * 64
    message = re.escape(src.as_uri()) + ".*" + sha256_file(src) + ".*expected " + wrong
    with pytest.raises(DataError, match=message):
        download(src.as_uri(), out / "keep.bin", wrong)
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin"]
    assert (out / "keep.bin").read_bytes() == b"old"


@pytest.mark.parametrize("url", ["missing", "nosuchscheme://host/x"])
def test_download_failure_raises_data_error(tmp_path, url):
    if url == "missing":
        url = (tmp_path / "does-not-exist.gz").as_uri()
    out = tmp_path / "out"
    with pytest.raises(DataError, match="could not download " + re.escape(url)):
        download(url, out / "f", ABC_SHA256)
    assert list(out.iterdir()) == []
