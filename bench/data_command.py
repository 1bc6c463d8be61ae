"""`aae-bench data info|fetch`: what a dataset holds, where it came from, and getting its files.

Plain functions returning text; bench/cli.py wires them to argparse and prints DataError as one line.
"""

from __future__ import annotations

import json

from aae_core import datasets, files


def info(name: str, data_dir: str | None, as_json: bool) -> str:
    """Per split: n, example shape, counts per label; plus where the files were found.

    Never downloads: a missing dataset gives the DataError that says how to provide it.
    """
    summary = datasets.describe(datasets.load(name, data_dir, download=False))
    if as_json:
        return json.dumps(summary, indent=2)
    return _table(summary)


def fetch(name: str, data_dir: str | None) -> str:
    """Find or download every file of `name`, verify them by loading, and say what happened.

    Without --data-dir the usual search order applies and downloads go to the cache; with it,
    missing files are downloaded into that directory (see aae_core.files.fetch).
    """
    found = files.fetch(name, data_dir)
    dataset = datasets.load(name, data_dir, download=False)
    checksums = files.file_checksums(name)
    n_files = len(checksums)
    known = [f for f, c in checksums.items() if c]
    unknown = [f for f, c in checksums.items() if not c]
    if found.downloaded:
        got = f"downloaded {', '.join(found.downloaded)}; " + (
            f"{n_files - len(found.downloaded)} other file(s) were already there; "
            if len(found.downloaded) < n_files
            else ""
        )
    else:
        got = f"all {n_files} file(s) were already present; "
    checked = [f"{len(known)} file(s) match their known checksums"] if known else []
    if unknown:
        checked.append(
            f"{', '.join(unknown)} passed the format checks only (no published checksum)"
        )
    checked = ", ".join(checked)
    c, h, w = dataset.image_shape
    if dataset.folds is None:
        counts = f"{len(dataset.train_y)} train / {len(dataset.valid_y)} valid / {len(dataset.test_y)} test images"
    else:
        counts = (f"{len(dataset.train_y)} unlabelled (train) images, {len(dataset.folds)} folds of "
                  + ", ".join(f"{len(f.valid_y)}/{len(f.test_y)}" for f in dataset.folds)
                  + " valid/test images")
    return (
        f"{name}: {got}{checked}. Found in: {dataset.source}. "
        f"{counts} of {c}x{h}x{w}, {dataset.n_classes} classes. Split: {dataset.split}"
    )


def _table(summary: dict) -> str:
    """Aligned text: a header, then one row per split with n, shape and per-label counts; for
    TFD also one row per fold with its train / valid / test counts."""
    splits = summary["splits"]
    labels = list(dict.fromkeys(k for s in splits.values() for k in s["label_counts"]))
    header = ["split", "n", "shape", *(f"y={k}" for k in labels)]
    rows = [
        [
            part,
            str(s["n"]),
            "x".join(map(str, s["shape"])),
            *(str(s["label_counts"].get(k, 0)) for k in labels),
        ]
        for part, s in splits.items()
    ]
    folds = summary.get("folds", [])
    if folds:  # TFD: train is the unlabelled part; valid and test alone are fold 0's
        rows[0][0], rows[1][0], rows[2][0] = "train (unlabelled)", "valid (fold 0)", "test (fold 0)"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    c, h, w = summary["image_shape"]
    if folds:
        n_images = f"{splits['train']['n']} unlabelled images (the training set) and {len(folds)} folds"
    else:
        n_images = f"{sum(s['n'] for s in splits.values())} images"
    return "\n".join(
        [
            f"{summary['name']}: {n_images} of {c}x{h}x{w}, {summary['n_classes']} classes",
            f"found in: {summary['source']}",
            f"split: {summary['split']}",
            "",
            line(header),
            *(line(row) for row in rows),
            *_folds_table(folds),
        ]
    )


def _folds_table(folds: list[dict]) -> list[str]:
    """TFD: one line per fold with its train (labelled, not trained on), valid and test counts."""
    if not folds:
        return []
    header = ["fold", "train (not trained on)", "valid", "test"]
    rows = [[str(f["fold"]), str(f["train"]), str(f["valid"]), str(f["test"])] for f in folds]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["", *("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
                  for row in [header, *rows])]
