"""File plumbing for the data layer: payloads, checksums, IDX parsing and safe downloads.

Nothing here knows a particular dataset; `aae_core.datasets` holds the tables (file names,
checksums, URLs) and calls these functions.

A "payload" is a file's content after gunzip: `x` and `x.gz` have the same payload, and checksums
are taken over payloads so that re-compressed copies (Debian's Fashion-MNIST) still verify.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pooch

_CHUNK = 1 << 20

# IDX magic numbers (unsigned bytes): labels have one dimension, images three.
IDX_LABELS = 2049
IDX_IMAGES = 2051


class DataError(Exception):
    """One-line, user-facing message: names the file(s) and how to provide them / which check failed."""

    def __init__(self, message: str) -> None:
        # The CLI prints str(error) as one line, so newlines from wrapped errors are flattened.
        super().__init__(" ".join(str(message).splitlines()))


def read_payload(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in .gz; a damaged gzip stream is a DataError."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except EOFError:
        raise DataError(
            f"{path}: gzip check failed (stream ends early: the file is truncated)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: gzip check failed ({err}): the file is corrupt") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None


def digest(source: bytes | Path, algorithm: str) -> str:
    """Hex digest of bytes, or of a file streamed in chunks (never gunzipped)."""
    h = hashlib.new(algorithm)
    if isinstance(source, bytes | bytearray | memoryview):
        h.update(source)
        return h.hexdigest()
    try:
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError as err:
        raise DataError(f"{source}: cannot read it ({err.strerror or err})") from None
    return h.hexdigest()


def split_hash(known_hash: str) -> tuple[str, str]:
    """'md5:abc...' -> ('md5', 'abc...'), the form pooch uses too."""
    algorithm, _, value = known_hash.partition(":")
    if not value or algorithm not in ("md5", "sha1", "sha256"):
        raise ValueError(f"checksum {known_hash!r} is not 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, value.lower()


def parse_idx(data: bytes, path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Unsigned-byte IDX payload -> uint8 array of `shape`; header and size are checked first.

    Checking the header before the checksum gives a precise message for the common failures
    (a truncated copy, the labels file where the images were expected).
    """
    if len(data) < 4:
        raise DataError(
            f"{path}: size check failed ({len(data)} bytes is shorter than an IDX header)"
        )
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        kind = {IDX_LABELS: "labels", IDX_IMAGES: "images"}[magic]
        raise DataError(
            f"{path}: header check failed (IDX magic {found}, expected {magic} for {kind})"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: size check failed ({len(data)} bytes is shorter than its {header}-byte IDX header)"
        )
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if dims != tuple(shape):
        raise DataError(
            f"{path}: header check failed (IDX dimensions {dims}, expected {tuple(shape)})"
        )
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path}: size check failed ({len(data)} bytes, the IDX header implies {expected}: "
            f"{'truncated' if len(data) < expected else 'trailing bytes'})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def fetch_url(url: str, known_hash: str, dest: Path) -> None:
    """Transport: write `url` to exactly `dest`, checking `known_hash` ('md5:...'/'sha256:...').

    The one network touch point; tests replace it (monkeypatch `aae_core.files.fetch_url`).
    pooch writes to a temporary file and renames it only after the hash matched.
    """
    pooch.retrieve(url, known_hash=known_hash, fname=dest.name, path=dest.parent, progressbar=False)


def download(
    url: str, known_hash: str, dest: Path, check: Callable[[Path], object] | None = None
) -> Path:
    """Download `url` to `dest` so that `dest` either does not exist or is complete and verified.

    The transport writes into a fresh temporary directory next to `dest`; the file moves into place
    (an atomic rename on one filesystem) only after `known_hash` and then `check` (the payload
    checksum) passed. Whatever fails, the temporary directory is removed, so a corrupt or
    half-written download never lands in the cache, also when the transport is not pooch.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        tmp = workdir / dest.name
        try:
            fetch_url(url, known_hash, tmp)
        except DataError:
            raise
        except (
            Exception
        ) as err:  # any transport failure (offline, HTTP error, hash mismatch) is one DataError
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            raise DataError(f"could not download {url} to {dest} ({reason[:300]})") from None
        if not tmp.is_file():
            raise DataError(f"could not download {url} to {dest} (the transport wrote no file)")
        algorithm, expected = split_hash(known_hash)
        found = digest(tmp, algorithm)
        if found != expected:
            raise DataError(
                f"download of {url} failed its checksum check ({algorithm} {found}, expected {expected}); nothing was kept"
            )
        if check is not None:
            try:
                check(tmp)
            except DataError as err:
                raise DataError(f"download of {url} was rejected and not kept: {err}") from None
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return dest
