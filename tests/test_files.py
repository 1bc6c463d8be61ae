"""aae_core.files: payloads, checksums, IDX parsing, downloads that never leave a bad file behind."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fake_data import write_idx

from aae_core import files
from aae_core.files import DataError


def test_data_error_is_one_line():
    assert str(DataError("a\nb\n c")) == "a b  c"


def test_read_payload_plain_and_gz_agree(tmp_path):
    plain = tmp_path / "x"
    plain.write_bytes(b"payload" * 100)
    gz = tmp_path / "x.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert files.read_payload(plain) == files.read_payload(gz) == b"payload" * 100


def test_read_payload_truncated_gzip_names_file(tmp_path):
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(bytes(range(256)) * 400)[:-200])
    with pytest.raises(DataError, match=r"t\.gz: gzip check failed.*truncated"):
        files.read_payload(gz)


def test_read_payload_corrupt_gzip_names_file(tmp_path):
    data = bytearray(gzip.compress(b"abc" * 1000))
    data[-8] ^= 0xFF  # CRC32 in the trailer
    gz = tmp_path / "c.gz"
    gz.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"c\.gz: gzip check failed"):
        files.read_payload(gz)


def test_digest_bytes_and_streamed_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    want = hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert files.digest(path, "sha256") == files.digest(b"x" * 3_000_000, "sha256") == want


def test_split_hash():
    assert files.split_hash("md5:ABC") == ("md5", "abc")
    with pytest.raises(ValueError):
        files.split_hash("abc")


def test_parse_idx_roundtrip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "img", images)
    out = files.parse_idx(path.read_bytes(), path, files.IDX_IMAGES, (2, 3, 4))
    np.testing.assert_array_equal(out, images)
    labels = write_idx(tmp_path / "lab", np.array([3, 1, 4]))
    np.testing.assert_array_equal(
        files.parse_idx(labels.read_bytes(), labels, files.IDX_LABELS, (3,)), [3, 1, 4]
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:-1], r"size check failed .*truncated"),
        (lambda d: d + b"\0", r"size check failed .*trailing"),
        (lambda d: d[:10], r"size check failed .*header"),
        (lambda d: b"\0\0\x08\x01" + d[4:], r"header check failed \(IDX magic 2049, expected 2051"),
        (
            lambda d: d[:4] + (3).to_bytes(4, "big") + d[8:],
            r"header check failed \(IDX dimensions \(3, 3, 4\)",
        ),
    ],
)
def test_parse_idx_rejects_damage(tmp_path, mutate, message):
    path = write_idx(tmp_path / "img", np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match=message) as err:
        files.parse_idx(mutate(path.read_bytes()), path, files.IDX_IMAGES, (2, 3, 4))
    assert str(path) in str(err.value)


# -- downloads: the transport is replaced by fakes, nothing touches the network ---------------

GOOD = b"good payload"
GOOD_HASH = "sha256:" + hashlib.sha256(GOOD).hexdigest()


def _fetcher(content: bytes | None, calls: list | None = None):
    def fetch(url: str, known_hash: str, dest: Path) -> None:
        if calls is not None:
            calls.append((url, known_hash, dest))
        if content is None:
            raise ConnectionError("network is unreachable")
        dest.write_bytes(content)

    return fetch


def test_download_moves_verified_file_into_place(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(files, "fetch_url", _fetcher(GOOD, calls))
    dest = tmp_path / "cache" / "f.bin"
    assert files.download("http://x/f.bin", GOOD_HASH, dest) == dest
    assert dest.read_bytes() == GOOD
    assert list(dest.parent.iterdir()) == [dest]  # no temporary leftovers
    (url, known, written) = calls[0]
    assert (url, known) == ("http://x/f.bin", GOOD_HASH) and written != dest


def test_download_corrupt_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "fetch_url", _fetcher(b"corrupt"))
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(DataError, match=r"checksum check.*nothing was kept"):
        files.download("http://x/f.bin", GOOD_HASH, dest)
    assert list(dest.parent.iterdir()) == []


def test_download_payload_check_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "fetch_url", _fetcher(GOOD))

    def check(path: Path) -> None:
        raise DataError(f"{path}: checksum check failed (payload)")

    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(DataError, match=r"rejected and not kept.*payload"):
        files.download("http://x/f.bin", GOOD_HASH, dest, check=check)
    assert list(dest.parent.iterdir()) == []


def test_download_transport_error_is_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "fetch_url", _fetcher(None))
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError, match=r"could not download http://x/f.bin .*ConnectionError"):
        files.download("http://x/f.bin", GOOD_HASH, dest)
    assert list(tmp_path.iterdir()) == []


def test_default_transport_is_pooch(tmp_path, monkeypatch):
    """fetch_url hands url, hash and target to pooch.retrieve (which writes temp-then-rename)."""
    seen = {}

    def retrieve(url, known_hash, fname, path, progressbar):
        seen.update(url=url, known_hash=known_hash, fname=fname, path=path)
        (Path(path) / fname).write_bytes(GOOD)

    monkeypatch.setattr(files.pooch, "retrieve", retrieve)
    dest = tmp_path / "f.bin"
    files.download("http://x/f.bin", GOOD_HASH, dest)
    assert dest.read_bytes() == GOOD
    assert (
        seen["url"] == "http://x/f.bin"
        and seen["known_hash"] == GOOD_HASH
        and seen["fname"] == "f.bin"
    )
