"""The paper's datasets: name -> train / valid / test splits, and seeded labelled subsets.

Names (keys of DATASETS)
------------------------
mnist, fashion-mnist   IDX files, train = training images 0..50,000, valid = 50,000..60,000,
                       test = the 10,000 t10k images.
svhn                   train_32x32.mat minus 5,000 held-out images (valid), test_32x32.mat.
svhn-extra             as svhn, plus extra_32x32.mat appended to train (validation still from
                       train_32x32.mat only).
tfd, tfd-96            TFD_48x48.mat / TFD_96x96.mat: train = the unlabelled images (folds == 0
                       in all 5 columns), never a fold's valid or test image; `folds` = the 5
                       folds' valid (2) / test (3) images; valid / test = fold 0's (see load_tfd).
Pixels are float32 in [0, 1] (uint8 / 255), shape (N, C, H, W); labels int64.

Where the files are found, how they are downloaded, checked and read: aae_core.files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from aae_core import files
from aae_core.files import DataError

# PAPER-GAP: the paper gives no SVHN validation set. We hold out 5,000 images of train_32x32.mat,
# the first 5,000 of a PCG64(0) permutation (pinned by a hash test), so no RNG state leaks in.
SVHN_VALID_SIZE = 5000
SVHN_VALID_SEED = 0


@dataclass(frozen=True, eq=False, repr=False)
class Fold:
    """One of TFD's evaluation folds: the images its column of `folds` marks valid (2) and test (3).

    The images it marks train (1) are not trained on (the GAN protocol trains on the unlabelled
    images, the same for every fold); only their number is kept, for `aae-bench data info`.
    """

    index: int
    valid_x: np.ndarray
    valid_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    n_train: int


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One dataset split three ways; arrays are float32 pixels in [0, 1] (N, C, H, W), int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # directory the files came from, or "download cache: <dir>"
    split: str  # one line, goes into result rows
    n_classes: int
    folds: tuple[Fold, ...] | None = None
    """TFD: its evaluation folds (each scored by Parzen on its own test images, sigma chosen on
    its own validation images); None for every other dataset."""

    def __post_init__(self) -> None:
        # Cheap guards so that hand-built datasets (tests, synthetic data) fail early and clearly.
        splits = [(f"{part}_", getattr(self, f"{part}_x"), getattr(self, f"{part}_y"))
                  for part in ("train", "valid", "test")]
        splits += [(f"folds[{fold.index}].{part}_", getattr(fold, f"{part}_x"), getattr(fold, f"{part}_y"))
                   for fold in self.folds or () for part in ("valid", "test")]
        for part, x, y in splits:
            if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != self.train_x.shape[1:]:
                raise ValueError(
                    f"{self.name}: {part}x must be float32 (N, C, H, W) like train_x, got {x.dtype} {x.shape}"
                )
            if y.dtype != np.int64 or y.shape != (len(x),):
                raise ValueError(
                    f"{self.name}: {part}y must be int64 of shape ({len(x)},), got {y.dtype} {y.shape}"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def input_dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def __repr__(self) -> str:
        folds = f", folds={len(self.folds)}" if self.folds is not None else ""
        return (
            f"Dataset({self.name!r}, train={len(self.train_x)}, valid={len(self.valid_x)}, "
            f"test={len(self.test_x)}{folds}, image_shape={self.image_shape}, source={self.source!r})"
        )


# ---------------------------------------------------------------------------------------------
# Public entry points


def load(
    name: str, data_dir: str | os.PathLike | None = None, *, fold: int = 0, download: bool = True
) -> Dataset:
    """Find, verify and split dataset `name` (search order: aae_core.files)."""
    loader = _loader(name)
    # TEMPORARY (#14): bench/cli.py and bench/artifacts.py still pass fold=config.fold or 0. A TFD
    # Dataset now carries every fold (Dataset.folds), so only 0 is accepted; the parameter goes
    # once they stop passing it (/work/sync/REQUESTS.md).
    if fold != 0:
        raise DataError(
            f"{name}: fold {fold}: no fold is chosen at load any more; a TFD dataset carries all "
            f"its folds (Dataset.folds)"
        )
    found = files.locate(name, data_dir, download=download)
    return loader(found.files, found.source)


def labelled_subset(labels: np.ndarray, n_labels: int, seed: int, n_classes: int) -> np.ndarray:
    """Sorted int64 indices of n_labels // n_classes examples of each class, drawn with PCG64(seed).

    Independent of global RNG state, so the same seed picks the same examples on every machine.
    Labels outside 0..n_classes-1 (TFD's -1 "unknown") are never picked.
    """
    if n_labels <= 0 or n_classes <= 0 or n_labels % n_classes:
        raise DataError(
            f"n_labels={n_labels} must be a positive multiple of n_classes={n_classes}"
        )
    per_class = n_labels // n_classes
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = []
    for c in range(n_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise DataError(
                f"class {c} has {len(pool)} examples, fewer than the {per_class} per class asked for"
            )
        chosen.append(rng.permutation(pool)[:per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_hash(indices: np.ndarray) -> str:
    """First 16 hex digits of sha256 over the indices as int64 little-endian, in the given order."""
    data = np.ascontiguousarray(np.asarray(indices).reshape(-1), dtype="<i8").tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def describe(dataset: Dataset) -> dict:
    """JSON-ready summary: per split n, example shape, counts per label (string keys); source, split.

    TFD: "train" is its unlabelled part (what a trial trains on), "valid" / "test" are fold 0's,
    and "folds" lists every fold's train (labelled, not trained on) / valid / test counts.
    """
    labels = range(dataset.n_classes)

    def split(x: np.ndarray, y: np.ndarray) -> dict:
        values, counts = np.unique(y, return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        keys = [k for k in found if k not in labels] + list(labels)  # -1 (unknown) first
        return {
            "n": int(len(x)),
            "shape": list(x.shape[1:]),
            "label_counts": {str(k): int(found.get(k, 0)) for k in keys},
        }

    splits = {part: split(getattr(dataset, f"{part}_x"), getattr(dataset, f"{part}_y"))
              for part in ("train", "valid", "test")}
    folds = {}
    if dataset.folds is not None:
        folds = {"folds": [{"fold": f.index, "train": f.n_train, "valid": len(f.valid_y),
                            "test": len(f.test_y)} for f in dataset.folds]}
    return {
        "name": dataset.name,
        "n_classes": dataset.n_classes,
        "image_shape": list(dataset.image_shape),
        "source": dataset.source,
        "split": dataset.split,
        "splits": splits,
        **folds,
    }


# ---------------------------------------------------------------------------------------------
# Loaders: (files, source) -> Dataset


def load_idx(name: str, paths: Mapping[str, Path], source: str) -> Dataset:
    """MNIST-format datasets: first 50,000 training images train, last 10,000 valid, t10k test."""
    train_x, train_y, test_x, test_y = files.read_mnist(name, paths)
    x = _to_float(train_x[:, None])
    y = train_y.astype(np.int64)
    return Dataset(
        name=name,
        train_x=x[:50000],
        train_y=y[:50000],
        valid_x=x[50000:],
        valid_y=y[50000:],
        test_x=_to_float(test_x[:, None]),
        test_y=test_y.astype(np.int64),
        source=source,
        split=f"{name}: train = training images 0..50000, valid = training images 50000..60000, test = t10k (10000)",
        n_classes=10,
    )


def load_svhn(name: str, paths: Mapping[str, Path], source: str) -> Dataset:
    """SVHN: 5,000 seeded images of train_32x32.mat held out as valid; label 10 means digit 0."""
    train_x, train_y = files.read_svhn(name, "train_32x32.mat", paths)
    test_x, test_y = files.read_svhn(name, "test_32x32.mat", paths)
    n = len(train_y)
    if n <= SVHN_VALID_SIZE:
        raise DataError(
            f"{paths['train_32x32.mat']}: content check failed ({n} images, too few to hold out {SVHN_VALID_SIZE} for validation)"
        )
    valid = svhn_valid_indices(n)
    keep = np.ones(n, dtype=bool)
    keep[valid] = False
    parts_x, parts_y = [train_x[keep]], [train_y[keep]]
    extra = ""
    if "extra_32x32.mat" in files.FILES[name]:
        extra_x, extra_y = files.read_svhn(name, "extra_32x32.mat", paths)
        parts_x.append(extra_x)
        parts_y.append(extra_y)
        extra = f" + extra_32x32.mat ({len(extra_y)})"
    train_y_all = np.concatenate(parts_y)
    return Dataset(
        name=name,
        train_x=_to_float(*parts_x),
        train_y=train_y_all,
        valid_x=_to_float(train_x[valid]),
        valid_y=train_y[valid],
        test_x=_to_float(test_x),
        test_y=test_y,
        source=source,
        split=(
            f"{name}: train = train_32x32.mat without valid ({int(keep.sum())}){extra} = {len(train_y_all)}, "
            f"valid = {len(valid)} images of train_32x32.mat (first {SVHN_VALID_SIZE} of a PCG64({SVHN_VALID_SEED}) "
            f"permutation, hash {subset_hash(valid)}), test = test_32x32.mat ({len(test_y)}); label 10 -> 0"
        ),
        n_classes=10,
    )


def svhn_valid_indices(n: int) -> np.ndarray:
    """Sorted indices of the SVHN validation images among the n images of train_32x32.mat."""
    rng = np.random.Generator(np.random.PCG64(SVHN_VALID_SEED))
    return np.sort(rng.permutation(n)[:SVHN_VALID_SIZE]).astype(np.int64)


# Codes of TFD's `folds` (N, 5): per fold column, what each image is in that fold.
TFD_UNLABELLED, TFD_TRAIN, TFD_VALID, TFD_TEST = 0, 1, 2, 3


def tfd_unlabelled(folds: np.ndarray) -> np.ndarray:
    """Sorted indices of TFD's unlabelled images: code 0 in every fold column."""
    return np.flatnonzero((folds == TFD_UNLABELLED).all(axis=1)).astype(np.int64)


def check_tfd_training_set(train: np.ndarray, folds: np.ndarray) -> None:
    """Raise unless no training image is a validation or test image of any fold.

    A hard check, not only a test: training on a fold's test image would inflate every
    Parzen log-likelihood of that fold, silently.
    """
    held_out = np.flatnonzero(np.isin(folds, (TFD_VALID, TFD_TEST)).any(axis=1))
    leaked = np.intersect1d(train, held_out)
    if leaked.size:
        raise AssertionError(
            f"TFD training set holds {leaked.size} validation / test image(s) of some fold "
            f"(first index {int(leaked[0])})"
        )


def load_tfd(name: str, paths: Mapping[str, Path], source: str) -> Dataset:
    """TFD the GAN protocol's way: train on the unlabelled images, score every fold.

    train = the images with folds == 0 in every column (TFD's unlabelled part, about 98K of 102K),
    the same for every fold, so one model per seed is scored on all 5 folds: `folds[k]` holds the
    images column k marks valid (2) and test (3). valid / test are fold 0's, for what reads one
    split only (figures, saved latents). Labels are labs_ex - 1 (7 expressions), -1 unknown (every
    unlabelled image).
    """
    (fname,) = files.FILES[name]
    x, y, codes = files.read_tfd(name, paths)
    # PAPER-GAP: the AAE paper does not say which TFD images it trained on or how it scored the
    # folds; we follow the GAN paper's protocol, which its Table 1 compares against: train on the
    # unlabelled images, score each fold's test images with sigma chosen on that fold's validation.
    train = tfd_unlabelled(codes)
    check_tfd_training_set(train, codes)
    if not train.size:
        raise DataError(
            f"{paths[fname]}: content check failed (no unlabelled image: none has folds == 0 in every column)"
        )
    folds = []
    for k in range(codes.shape[1]):
        column = codes[:, k]
        valid, test = column == TFD_VALID, column == TFD_TEST
        if not valid.any() or not test.any():
            raise DataError(
                f"{paths[fname]}: content check failed (fold {k} has {int(valid.sum())} valid and "
                f"{int(test.sum())} test images; it needs both)"
            )
        folds.append(Fold(index=k, valid_x=_to_float(x[valid]), valid_y=y[valid],
                          test_x=_to_float(x[test]), test_y=y[test],
                          n_train=int((column == TFD_TRAIN).sum())))
    # Images labelled in some folds but not in all (none in the real file, as far as we know)
    # are neither unlabelled nor held out everywhere: never trained on.
    partly = int(((codes == TFD_UNLABELLED).any(axis=1) & (codes != TFD_UNLABELLED).any(axis=1)).sum())
    per_fold = ", ".join(f"{len(f.valid_y)}/{len(f.test_y)}" for f in folds)
    return Dataset(
        name=name,
        train_x=_to_float(x[train]),
        train_y=y[train],
        valid_x=folds[0].valid_x,
        valid_y=folds[0].valid_y,
        test_x=folds[0].test_x,
        test_y=folds[0].test_y,
        source=source,
        split=(
            f"{name} {fname}: train = the unlabelled images, folds == 0 in all {codes.shape[1]} columns "
            f"({train.size}, no fold's valid or test image); fold k scored on folds[:, k] == 3 (test), "
            f"sigma chosen on folds[:, k] == 2 (valid) (valid/test per fold: {per_fold}); "
            f"valid / test alone = fold 0's; folds[:, k] == 1 (labelled train) unused"
            + (f"; {partly} image(s) labelled in some folds only, unused" if partly else "")
            + "; labels = labs_ex - 1 (7 expressions), -1 unknown"
        ),
        n_classes=7,
        folds=tuple(folds),
    )


DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": partial(load_idx, "mnist"),
    "fashion-mnist": partial(load_idx, "fashion-mnist"),
    "svhn": partial(load_svhn, "svhn"),
    "svhn-extra": partial(load_svhn, "svhn-extra"),
    "tfd": partial(load_tfd, "tfd"),
    "tfd-96": partial(load_tfd, "tfd-96"),
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _loader(name: str) -> Callable[..., Dataset]:
    files.files_of(name)  # an unknown name is a DataError listing the known ones
    return DATASETS[name]


def _to_float(*parts: np.ndarray) -> np.ndarray:
    """uint8 arrays -> one contiguous float32 array of their concatenation / 255.

    Written straight into the result: SVHN with its extra set is 7 GB as float32, no room for copies.
    """
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=np.float32)
    start = 0
    for part in parts:
        np.divide(part, np.float32(255), out=out[start : start + len(part)])
        start += len(part)
    return out
