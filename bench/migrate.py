"""Bring a results directory written by older code up to date: `python -m bench.migrate [DIR]`.

Trial ids: a trial's id used to hash its grid and profile too; it is now its config alone
(bench.config.LABEL_FIELDS). Each row's id is recomputed from the row's own config
(`config_of`), the old id kept in the column `legacy_trial_id`, and each trial's artifact
directory `artifacts/<grid>/<old id>/` renamed to the new id.

Training versions: a row without `training_version` gets the version of the code at its
`commit`, from this repository's git history (bench.versions.training_version_of_commit: 1 before
the seed-batching commit a99f140, 2 from 4310127 on); a row whose commit git does not know, or
that falls between the two, keeps it empty (an unknown version, never pooled with known ones).

Layout: each grid file `<grid>.csv` becomes one file per trial and code version under `<grid>/`
(bench.store), the cells' text unchanged; a per-trial file already there is merged with (the
newest row wins), and the grid file is removed only once every file is written and read back.

Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import pandas as pd

from bench import results, store, versions
from bench.results import config_of


def new_ids(frame: pd.DataFrame) -> dict[str, str]:
    """Old trial id -> the id of the config its rows hold, for the trials whose id changed."""
    changed = {}
    for row in frame.drop_duplicates("trial_id").to_dict("records"):
        new = config_of(row, check_id=False).trial_id
        if new != row["trial_id"]:
            changed[row["trial_id"]] = new
    return changed


def migrate_ids(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows with their new ids (the old one in legacy_trial_id), and old id -> new id."""
    changed = new_ids(frame)
    if not changed:
        return frame, changed
    frame = frame.copy()
    legacy = frame["trial_id"].where(frame["trial_id"].isin(changed.keys()))
    if "legacy_trial_id" in frame.columns:  # migrated before: keep the oldest id
        legacy = frame["legacy_trial_id"].where(frame["legacy_trial_id"].notna(), legacy)
    frame["legacy_trial_id"] = legacy
    frame["trial_id"] = frame["trial_id"].map(lambda t: changed.get(t, t))
    return frame, changed


def add_training_versions(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int | None]]:
    """Rows without a training version get their commit's; commit -> version for those set."""
    if "commit" not in frame.columns:
        return frame, {}
    known = (pd.to_numeric(frame["training_version"], errors="coerce").notna()
             if "training_version" in frame.columns else pd.Series(False, index=frame.index))
    commits = {str(c): versions.training_version_of_commit(str(c))
               for c in frame.loc[~known, "commit"].dropna().unique()}
    if not commits:
        return frame, {}
    frame = frame.copy()
    found = frame["commit"].astype(str).map(commits)
    column = frame["training_version"] if "training_version" in frame.columns else found
    frame["training_version"] = column.where(known, found).astype("Int64")
    return frame, commits


def rename_artifacts(results_dir: Path, grid: str, changed: dict[str, str]) -> list[str]:
    """artifacts/<grid>/<old>/ -> artifacts/<grid>/<new>/ (never over an existing directory)."""
    done = []
    for old, new in changed.items():
        source = results_dir / "artifacts" / grid / old
        target = results_dir / "artifacts" / grid / new
        if source.is_dir() and not target.exists():
            os.replace(source, target)
            done.append(f"artifacts/{grid}/{old} -> {new}")
    return done


def migrate(results_dir: str | os.PathLike) -> list[str]:
    """Migrate every per-grid CSV of `results_dir` in place; the lines say what changed."""
    results_dir = Path(results_dir)
    said = []
    for path in sorted(results_dir.glob("*.csv")):
        frame = store.read_file(path)
        if frame.empty:
            continue
        frame, changed = migrate_ids(frame)
        frame, commits = add_training_versions(frame)
        if changed or commits:
            results.write_frame(path, results.to_frame(frame.to_dict("records")))
        if changed:
            said.append(f"{path.name}: {len(changed)} trial ids recomputed from their configs")
            for grid in frame["grid"].astype(str).unique():
                said += rename_artifacts(results_dir, grid, changed)
        for commit, version in commits.items():
            said.append(f"{path.name}: rows of commit {commit[:12]}: training version "
                        f"{version if version is not None else 'unknown (left empty)'}")
    return said


def _host(record: dict) -> str:
    # The machine the rows came from: the grid file's rows name the machine that ran them.
    return record.get("hostname") or record.get("node") or store.this_host()


def split_grid_file(path: Path) -> str:
    """One grid file -> its per-trial files (merged with those already there); the grid file
    removed once they are written and read back; what was done, in one line."""
    table = store.read_table(path)
    grid = path.stem
    try:
        directory = store.grid_dir(path.parent, grid)
    except ValueError:
        raise store.ResultsError(f"{path}: {grid!r} cannot name a grid directory; rename the "
                                 f"file to <grid>.csv") from None
    groups: dict[str, list[tuple[str, ...]]] = {}
    for record in table.records:
        row = dict(zip(table.header, record, strict=True))
        name = store.trial_file_name(row["trial_id"], row.get("training_version"),
                                     row.get("evaluator_version"), _host(row))
        groups.setdefault(name, []).append(record)
    if groups:
        store.make_dir(directory)
    merged = 0
    for name, records in groups.items():
        target = directory / name
        if target.exists():  # written by newer code meanwhile: one file, the newest rows
            both = store.tables_frame([store.read_table(target),
                                       store.Table(path, table.header, tuple(records))])
            results.write_frame(target, results.merge(both))
            merged += 1
        else:
            store.write_text(target, _csv_text(table.header, records))
    # Read back before the grid file goes: every row of it must be found in its file.
    for name, records in groups.items():
        found = store.read_table(directory / name)
        keys = {_key(found.header, r) for r in found.records}
        if not {_key(table.header, r) for r in records} <= keys:
            raise store.ResultsError(f"{directory / name}: rows of {path} missing after the "
                                     f"write; {path} kept")
    store.remove(path)
    trials = len({dict(zip(table.header, r, strict=True))["trial_id"] for r in table.records})
    also = f", {merged} merged with files already there" if merged else ""
    return (f"{path.name}: {len(table.records)} rows of {trials} trials -> {grid}/ "
            f"({len(groups)} files{also}); {path.name} removed")


def _key(header: tuple[str, ...], record: tuple[str, ...]) -> tuple[str, ...]:
    row = dict(zip(header, record, strict=True))
    return (row["trial_id"], row["metric"], store.version_token(row.get("training_version")),
            store.version_token(row.get("evaluator_version")))


def _csv_text(header: tuple[str, ...], records: list[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue()


def split_grid_files(results_dir: str | os.PathLike) -> list[str]:
    """Every grid file of `results_dir` into the per-trial layout; the lines say what changed."""
    return [split_grid_file(p) for p in sorted(Path(results_dir).glob("*.csv"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"bench.migrate: error: {args.results} is not a directory", file=sys.stderr)
        return 2
    try:
        lines = migrate(args.results) + split_grid_files(args.results)
    except store.ResultsError as exc:
        print(f"bench.migrate: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else f"{args.results}: nothing to migrate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
