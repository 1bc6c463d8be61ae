"""The data sets' files: where they are found, how they are downloaded and checked, how they are read.

Names (keys of FILES) are those of aae_core.datasets.DATASETS, which splits what is read here.

Where files are looked for (first hit wins)
-------------------------------------------
1. `data_dir` (the CLI's --data-dir): the directory itself or its `<name>/` subdirectory must hold
   every file of the dataset; otherwise DataError naming the missing files. Never falls through
   (an explicit directory that lacks files is a mistake, not a reason to download).
2. `$AAE_BENCH_DATA`: the same two directories. When neither holds ANY file of the dataset, the
   search goes on; when some but not all are there, DataError. So one variable pointing at a
   folder with MNIST only still lets Fashion-MNIST be found in its system location.
3. SYSTEM_DIRS (e.g. /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist), used
   only when complete.
4. The download cache `$AAE_BENCH_CACHE/<family>` (default pooch.os_cache("aae-bench")/<family>):
   files missing there are downloaded when `download=True` (every dataset but TFD, which is not
   freely downloadable), else DataError naming the files and the ways to provide them.

`<name>/` also accepts the family's name: svhn-extra looks in `svhn/`, tfd-96 in `tfd/`.
MNIST and Fashion-MNIST share file names, so a directory named after a dataset of another family
(e.g. `.../mnist` while loading fashion-mnist) is not read directly, only its `<name>/` subdirectory.
Each file may be stored plain or gzipped (`name.gz`); when both exist the plain one is used.

A "payload" is a file's content after gunzip: `x` and `x.gz` have the same payload, and checksums
are taken over payloads so that re-compressed copies (Debian's Fashion-MNIST) still verify.

Every file is checked on reading: IDX header and size, then the checksum of its decompressed payload
(CHECKSUMS; for .mat files the file itself); then keys, dtypes and shapes of .mat contents.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pooch
import scipy.io

_CHUNK = 1 << 20

# IDX magic numbers (unsigned bytes): labels have one dimension, images three.
IDX_LABELS = 2049
IDX_IMAGES = 2051


class DataError(Exception):
    """One-line, user-facing message: names the file(s) and how to provide them / which check failed."""

    def __init__(self, message: str) -> None:
        # The CLI prints str(error) as one line, so newlines from wrapped errors are flattened.
        super().__init__(" ".join(str(message).splitlines()))


# Files of each dataset, by payload name (without .gz).
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FILES: dict[str, tuple[str, ...]] = {
    "mnist": MNIST_FILES,
    "fashion-mnist": MNIST_FILES,
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
    "svhn-extra": ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"),
    "tfd": ("TFD_48x48.mat",),
    "tfd-96": ("TFD_96x96.mat",),
}

# Datasets that share files: one cache directory, one checksum table, one subdirectory name.
FAMILY = {"svhn-extra": "svhn", "tfd-96": "tfd"}

# Checksums of the decompressed payloads, "algorithm:hex" (pooch's notation); None = none known.
# MNIST: ../shared/data/mnist/SOURCE.md. Fashion-MNIST: md5 of the gunzipped files of Debian's
# dataset-fashion-mnist (re-compressed, identical payloads to upstream). SVHN: the md5s published
# with the files. Tests patch this table for their small fake SVHN/TFD files.
CHECKSUMS: dict[str, dict[str, str | None]] = {
    "mnist": {
        "train-images-idx3-ubyte": "md5:6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "md5:a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "md5:2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "md5:27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "md5:f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "md5:9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "md5:8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "md5:15d484375f8d13e6eb1aabb0c3f46965",
    },
    "svhn": {
        "train_32x32.mat": "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "md5:eb5a983be6a315427106f1b164d9cef3",
        "extra_32x32.mat": "md5:a93ce644f1a588dc4d68dda5feec44a7",
    },
    # PAPER-GAP: TFD has no official checksum and no copy was available to compute one, so its
    # files get the structural checks only. (One public loader pins md5 9d113650c197719b750ecc6864faf87c
    # for TFD_48x48.mat; unverified, so not used: a wrong pin would reject every genuine copy.)
    "tfd": {"TFD_48x48.mat": None, "TFD_96x96.mat": None},
}

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"

# payload name -> (URL, hash of the downloaded file); None = the file is the payload (CHECKSUMS).
DOWNLOADS: dict[str, dict[str, tuple[str, str | None]]] = {
    "mnist": {
        "train-images-idx3-ubyte": (
            f"{_MNIST_URL}train-images-idx3-ubyte.gz",
            "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte": (
            f"{_MNIST_URL}train-labels-idx1-ubyte.gz",
            "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte": (
            f"{_MNIST_URL}t10k-images-idx3-ubyte.gz",
            "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte": (
            f"{_MNIST_URL}t10k-labels-idx1-ubyte.gz",
            "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            f"{_FASHION_URL}train-images-idx3-ubyte.gz",
            "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        "train-labels-idx1-ubyte": (
            f"{_FASHION_URL}train-labels-idx1-ubyte.gz",
            "md5:25c81989df183df01b3e8a0aad5dffbe",
        ),
        "t10k-images-idx3-ubyte": (
            f"{_FASHION_URL}t10k-images-idx3-ubyte.gz",
            "md5:bef4ecab320f06d8554ea6380940ec79",
        ),
        "t10k-labels-idx1-ubyte": (
            f"{_FASHION_URL}t10k-labels-idx1-ubyte.gz",
            "md5:bb300cfdad3c16e7a12a480ee83cd310",
        ),
    },
    "svhn": {name: (f"{_SVHN_URL}{name}", None) for name in FILES["svhn-extra"]},
}

# Known read-only system locations, searched after data_dir and AAE_BENCH_DATA.
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
}


@dataclass(frozen=True)
class Located:
    """Where a dataset's files are: payload name -> path, plus the source text for Dataset.source."""

    files: dict[str, Path]
    source: str
    downloaded: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# Locations


def locate(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> Located:
    """Find the files of `name` in the search order, downloading into the cache if allowed."""
    files_of(name)  # an unknown name is a DataError
    if data_dir is not None:
        return _search_given(name, Path(data_dir), "--data-dir", required=True)
    looked: list[str] = []
    env = os.environ.get("AAE_BENCH_DATA")
    if env:
        base = Path(env)
        found = _search_given(name, base, "AAE_BENCH_DATA", required=False)
        if found is not None:
            return found
        looked += [str(d) for d in _candidates(name, base)]
    for directory in SYSTEM_DIRS.get(name, ()):
        present = _present(name, Path(directory))
        if len(present) == len(FILES[name]):
            return Located(present, directory)
        looked.append(directory)
    cache = cache_dir(name)
    looked.append(str(cache))
    present = _present(name, cache)
    missing = [f for f in FILES[name] if f not in present]
    if not missing:
        return Located(present, f"download cache: {cache}")
    if not download or _family(name) not in DOWNLOADS:
        raise DataError(
            f"{name}: {_show(missing)} not found (looked in {', '.join(looked)}); {_how_to_provide(name)}"
        )
    return _download_missing(name, cache, present, f"download cache: {cache}")


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> Located:
    """Make every file of `name` present: found in the search order, or downloaded.

    With `data_dir`, files missing there go into `data_dir` itself when it is named after the
    dataset, else into `data_dir/<family>/`, so a later `load(name, data_dir)` finds them.
    """
    if data_dir is None:
        return locate(name, None, download=True)
    files_of(name)  # an unknown name is a DataError
    base = Path(data_dir).absolute()
    candidates = _candidates(name, base)
    seen = [(d, _present(name, d)) for d in candidates]
    for directory, present in seen:
        if len(present) == len(FILES[name]):
            return Located(present, str(directory))
    partial_dirs = [(d, p) for d, p in seen if p]
    if partial_dirs:
        target, present = partial_dirs[0]
    else:
        target = base if base.name in _aliases(name) else base / _family(name)
        present = {}
    if _family(name) not in DOWNLOADS:
        missing = [f for f in FILES[name] if f not in present]
        raise DataError(f"{name}: {_show(missing)} not found in {target}; {_how_to_provide(name)}")
    return _download_missing(name, target, present, str(target))


def cache_dir(name: str) -> Path:
    """Download cache of `name`: $AAE_BENCH_CACHE/<family>, default pooch.os_cache('aae-bench')/<family>."""
    return _cache_root() / _family(name)


def _cache_root() -> Path:
    return Path(os.environ.get("AAE_BENCH_CACHE") or pooch.os_cache("aae-bench"))


def file_checksums(name: str) -> dict[str, str | None]:
    """Known payload checksum of each file of `name` (None where none is known)."""
    files_of(name)  # an unknown name is a DataError
    table = CHECKSUMS[_family(name)]
    return {f: table.get(f) for f in FILES[name]}


def files_of(name: str) -> tuple[str, ...]:
    """Payload names of dataset `name`; DataError naming the known datasets if there is none."""
    try:
        return FILES[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(FILES)}") from None


def _family(name: str) -> str:
    return FAMILY.get(name, name)


def _aliases(name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((name, _family(name))))


def _candidates(name: str, base: Path) -> list[Path]:
    """Directories under `base` that may hold `name`: base itself (unless it is named after another
    family: MNIST and Fashion-MNIST share file names), then base/<name>, base/<family>."""
    others = {
        alias for other in FILES if _family(other) != _family(name) for alias in _aliases(other)
    }
    direct = [] if base.name in others and base.name not in _aliases(name) else [base]
    return direct + [base / alias for alias in _aliases(name)]


def _present(name: str, directory: Path) -> dict[str, Path]:
    """Files of `name` present in `directory`, plain preferred over .gz."""
    present = {}
    for fname in FILES[name]:
        for variant in (fname, f"{fname}.gz"):
            if (directory / variant).is_file():
                present[fname] = directory / variant
                break
    return present


def _search_given(name: str, base: Path, how: str, *, required: bool) -> Located | None:
    """A directory given by the user (--data-dir or AAE_BENCH_DATA): complete, absent, or an error."""
    if not base.is_dir():
        raise DataError(f"{how} {base}: no such directory")
    base = base.absolute()
    seen = [(d, _present(name, d)) for d in _candidates(name, base)]
    for directory, present in seen:
        if len(present) == len(FILES[name]):
            return Located(present, str(directory))
    best_dir, best = max(seen, key=lambda s: len(s[1]))  # max keeps the first of equals
    if not best and not required:
        return None
    missing = [f for f in FILES[name] if f not in best]
    where = str(best_dir) if best else " or ".join(str(d) for d, _ in seen)
    raise DataError(
        f"{name}: {how} {base}: {_show(missing)} missing in {where}; {_how_to_provide(name)}"
    )


def _show(fnames: list[str]) -> str:
    return ", ".join(f if f.endswith(".mat") else f"{f}[.gz]" for f in fnames)


def _how_to_provide(name: str) -> str:
    if _family(name) not in DOWNLOADS:
        wanted = " and ".join(FILES[name])
        return (
            f"the Toronto Face Database is not freely downloadable: obtain {wanted} from its authors and put it "
            f"in --data-dir DIR or AAE_BENCH_DATA=DIR (directly or in DIR/{_family(name)}/)"
        )
    return (
        f"provide the files with --data-dir DIR or AAE_BENCH_DATA=DIR (directly or in DIR/{name}/), "
        f"or download them with `aae-bench data fetch {name}`"
    )


# ---------------------------------------------------------------------------------------------
# Downloads


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


def _download_missing(name: str, directory: Path, present: dict[str, Path], source: str) -> Located:
    family = _family(name)
    downloaded = []
    for fname in FILES[name]:
        if fname in present:
            continue
        url, outer = DOWNLOADS[family][fname]
        known = outer or CHECKSUMS[family][fname]
        dest = directory / url.rsplit("/", 1)[-1]
        try:
            present[fname] = download(url, known, dest, check=partial(_verify_payload, name, fname))
        except DataError as err:
            raise DataError(
                f"{name}: {err}; offline? provide the files with --data-dir DIR or "
                f"AAE_BENCH_DATA=DIR (directly or in DIR/{name}/)"
            ) from None
        downloaded.append(fname)
    return Located(present, source, tuple(downloaded))


def _verify_payload(name: str, fname: str, path: Path) -> None:
    _check_checksum(name, fname, path, read_payload(path))


# ---------------------------------------------------------------------------------------------
# Payloads and checksums


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


def _check_checksum(name: str, fname: str, path: Path, payload: bytes | None = None) -> None:
    """Compare the payload (bytes, or the plain file itself) with CHECKSUMS; DataError on mismatch."""
    expected = CHECKSUMS[_family(name)].get(fname)
    if expected is None:
        return
    algorithm, want = split_hash(expected)
    got = digest(payload if payload is not None else path, algorithm)
    if got == want:
        return
    what = "decompressed payload" if path.name.endswith(".gz") else "file"
    owner = [
        f"{family}/{other}"
        for family, table in CHECKSUMS.items()
        for other, known in table.items()
        if known and known.split(":", 1)[1] == got
    ]
    which = f" (it is {owner[0]})" if owner else ""
    fix = (
        f"delete it and run `aae-bench data fetch {name}`"
        if _cache_root() in path.absolute().parents
        else "replace it with a good copy"
    )
    raise DataError(
        f"{path}: checksum check failed ({algorithm} of the {what} is {got}, expected {want} for {name} {fname}){which}; {fix}"
    )


# ---------------------------------------------------------------------------------------------
# Readers: IDX (MNIST, Fashion-MNIST), MATLAB v5 (SVHN, TFD)


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


def read_mnist(
    name: str, paths: Mapping[str, Path]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-format files -> uint8 train_x (60000, 28, 28), train_y (60000,), test_x, test_y (10000)."""
    # Small files first: a wrong or damaged copy is reported before 47 MB are read.
    test_y = _read_idx(name, "t10k-labels-idx1-ubyte", paths, IDX_LABELS, (10000,))
    train_y = _read_idx(name, "train-labels-idx1-ubyte", paths, IDX_LABELS, (60000,))
    test_x = _read_idx(name, "t10k-images-idx3-ubyte", paths, IDX_IMAGES, (10000, 28, 28))
    train_x = _read_idx(name, "train-images-idx3-ubyte", paths, IDX_IMAGES, (60000, 28, 28))
    _check_labels(paths["train-labels-idx1-ubyte"], train_y, range(10))
    _check_labels(paths["t10k-labels-idx1-ubyte"], test_y, range(10))
    return train_x, train_y, test_x, test_y


def _read_idx(
    name: str, fname: str, paths: Mapping[str, Path], magic: int, shape: tuple[int, ...]
) -> np.ndarray:
    path = paths[fname]
    payload = read_payload(path)
    array = parse_idx(payload, path, magic, shape)  # header and size first: precise messages
    _check_checksum(name, fname, path, payload)
    return array


def _read_mat(name: str, fname: str, path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Checksum first (the only check that catches every corruption), then parse MATLAB v5."""
    if path.name.endswith(".gz"):
        payload = read_payload(path)
        _check_checksum(name, fname, path, payload)
        source: Path | io.BytesIO = io.BytesIO(payload)
    else:
        _check_checksum(name, fname, path)  # streamed: SVHN extra is 1.3 GB
        source = path
    try:
        mat = scipy.io.loadmat(source, variable_names=list(keys))
    except NotImplementedError:
        raise DataError(
            f"{path}: format check failed (MATLAB v7.3/HDF5 file; expected MATLAB v5)"
        ) from None
    except Exception as err:  # scipy raises many types on damaged files; all mean "unreadable"
        raise DataError(
            f"{path}: format check failed (not a readable MATLAB v5 file: {type(err).__name__}: {err})"
        ) from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(
            f"{path}: content check failed (no variable {', '.join(missing)}; found {', '.join(k for k in mat if not k.startswith('__')) or 'none'})"
        )
    return mat


def read_svhn(name: str, fname: str, paths: Mapping[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """X (32, 32, 3, N) uint8 as (height, width, channel, index) -> uint8 view (N, 3, 32, 32); y 10 -> 0."""
    path = paths[fname]
    mat = _read_mat(name, fname, path, ("X", "y"))
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(
            f"{path}: content check failed ('X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N))"
        )
    n = x.shape[3]
    labels = _as_int(path, "y", y, n)
    if not np.isin(labels, np.arange(1, 11)).all():
        raise DataError(f"{path}: content check failed ('y' holds values outside 1..10)")
    labels[labels == 10] = 0
    return x.transpose(3, 2, 0, 1), labels


def _as_int(path: Path, key: str, values: np.ndarray, n: int) -> np.ndarray:
    """A numeric MATLAB array of n whole numbers (stored as double or integer) -> int64 vector."""
    flat = np.asarray(values).reshape(-1)
    if flat.size != n or not (
        np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.floating)
    ):
        raise DataError(
            f"{path}: content check failed ('{key}' is {values.dtype} {values.shape}, expected {n} numbers)"
        )
    as_int = flat.astype(np.int64)
    if np.issubdtype(flat.dtype, np.floating) and not np.array_equal(as_int, flat):
        raise DataError(f"{path}: content check failed ('{key}' holds non-integer values)")
    return as_int


def _check_labels(path: Path, labels: np.ndarray, allowed: range) -> None:
    if labels.size and (labels.min() < allowed.start or labels.max() >= allowed.stop):
        raise DataError(
            f"{path}: content check failed (labels outside {allowed.start}..{allowed.stop - 1})"
        )


def read_tfd(name: str, paths: Mapping[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFD_48x48.mat / TFD_96x96.mat -> uint8 images (N, 1, H, W), int64 labels (N,) = labs_ex - 1
    (7 expressions, -1 unknown), int64 folds (N, 5) with 0 unused, 1 train, 2 valid, 3 test."""
    (fname,) = FILES[name]
    path = paths[fname]
    size = 96 if name == "tfd-96" else 48
    mat = _read_mat(name, fname, path, ("images", "labs_ex", "folds"))
    images, labs_ex, folds = mat["images"], mat["labs_ex"], mat["folds"]
    n = len(images)
    if images.dtype != np.uint8 or images.shape != (n, size, size):
        raise DataError(
            f"{path}: content check failed ('images' is {images.dtype} {images.shape}, expected uint8 (N, {size}, {size}))"
        )
    labs = _as_int(path, "labs_ex", labs_ex, n)
    if folds.ndim != 2 or folds.shape != (n, 5):
        raise DataError(
            f"{path}: content check failed ('folds' has shape {folds.shape}, expected ({n}, 5))"
        )
    folds = _as_int(path, "folds", folds, n * 5).reshape(n, 5)
    if not np.isin(labs, [-1, 1, 2, 3, 4, 5, 6, 7]).all():
        raise DataError(f"{path}: content check failed ('labs_ex' holds values outside -1, 1..7)")
    if not np.isin(folds, [0, 1, 2, 3]).all():
        raise DataError(f"{path}: content check failed ('folds' holds values outside 0..3)")
    y = np.where(labs > 0, labs - 1, -1).astype(np.int64)
    return images[:, None], y, folds  # (N, H, W) as stored -> (N, 1, H, W)
