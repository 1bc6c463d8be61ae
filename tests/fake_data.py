"""Small fake dataset files in the exact real formats (keys, dtypes, axis order), for tests.

Pixel values follow `pattern`, distinct along every axis, so a test can tell where each stored
pixel ended up. The real SVHN/TFD checksums cannot match these files: `pin` patches them into
aae_core.files.CHECKSUMS for one test.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from aae_core import files


def pattern(i: np.ndarray, c: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """uint8 pixel value of example i, channel c, row h, column w."""
    return ((i * 7 + c * 50 + h * 3 + w * 11) % 256).astype(np.uint8)


def write_svhn(path: Path, n: int, *, first_label: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN .mat: X uint8 (32, 32, 3, n) as (h, w, c, i), y uint8 (n, 1) in 1..10 (10 = digit 0).

    Returns what the loader must produce: pixels uint8 (n, 3, 32, 32) and labels 0..9.
    """
    i, c, h, w = np.meshgrid(
        np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij"
    )
    expected_x = pattern(i, c, h, w)  # (n, 3, 32, 32)
    y = ((np.arange(n) + first_label - 1) % 10 + 1).astype(np.uint8)  # 1..10
    scipy.io.savemat(path, {"X": expected_x.transpose(2, 3, 1, 0), "y": y[:, None]})
    return expected_x, np.where(y == 10, 0, y).astype(np.int64)


def tfd_unlabelled(n: int) -> int:
    """How many of n fake TFD images are unlabelled: the first half (the real file: ~98K of 102K)."""
    return n // 2


def tfd_folds(n: int) -> np.ndarray:
    """(n, 5) fold codes laid out as in the real file: the unlabelled images 0 in every column,
    each labelled image 1 train, 2 valid or 3 test in every fold, each fold assigning them differently."""
    i, k = np.meshgrid(np.arange(n), np.arange(5), indexing="ij")
    codes = (i + k) % 3 + 1
    codes[: tfd_unlabelled(n)] = 0
    return codes


def tfd_labels(n: int) -> np.ndarray:
    """labs_ex values: -1 (unknown) for the unlabelled images and every 5th labelled one, else 1..7
    (spread over all fold codes)."""
    i = np.arange(n)
    return np.where((i < tfd_unlabelled(n)) | (i % 5 == 0), -1, i % 7 + 1)


def write_tfd(path: Path, n: int, *, size: int = 48, int_dtype: type = np.int32,
              folds: np.ndarray | None = None) -> np.ndarray:
    """A TFD .mat: images uint8 (n, size, size), labs_ex/labs_id (n, 1), folds (n, 5)
    (tfd_folds(n) unless given).

    Returns the images (n, size, size) as stored.
    """
    i, h, w = np.meshgrid(np.arange(n), np.arange(size), np.arange(size), indexing="ij")
    images = pattern(i, np.zeros_like(i), h, w)
    scipy.io.savemat(
        path,
        {
            "images": images,
            "labs_ex": tfd_labels(n)[:, None].astype(int_dtype),
            "labs_id": (np.arange(n) // 3 + 1)[:, None].astype(int_dtype),
            "folds": (tfd_folds(n) if folds is None else folds).astype(int_dtype),
        },
    )
    return images


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An unsigned-byte IDX file (magic 2049 for 1-d labels, 2051 for 3-d images), gzipped if .gz."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">i", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def payload_md5(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return "md5:" + hashlib.md5(data).hexdigest()


def pin(monkeypatch, family: str, *paths: Path) -> None:
    """Make the checksum table accept these (fake) files for this test."""
    for path in paths:
        name = path.name.removesuffix(".gz")
        monkeypatch.setitem(files.CHECKSUMS[family], name, payload_md5(path))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test reaches the network or the user's cache: downloads fail the test unless replaced.
    Import it into a test module to apply it there."""

    def no_network(url, known_hash, dest):
        pytest.fail(f"test tried to download {url}")

    monkeypatch.setattr(files, "fetch_url", no_network)
    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path / "cache"))
