"""Bring a results directory written by older code up to date: `python -m bench.migrate [DIR]`.

Trial ids: a trial's id used to hash its grid and profile too; it is now its config alone
(bench.config.LABEL_FIELDS). Each row's id is recomputed from the row's own config
(`config_of`), the old id kept in the column `legacy_trial_id`, and each trial's artifact
directory `artifacts/<grid>/<old id>/` renamed to the new id.

Training versions: a row without `training_version` gets the version of the code at its
`commit`, from this repository's git history (bench.versions.training_version_of_commit: 1 before
the seed-batching commit a99f140, 2 from 4310127 on); a row whose commit git does not know, or
that falls between the two, keeps it empty (an unknown version, never pooled with known ones).
Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from bench import results, versions
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
        frame = pd.read_csv(path)
        if frame.empty or "trial_id" not in frame.columns:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"bench.migrate: error: {args.results} is not a directory", file=sys.stderr)
        return 2
    lines = migrate(args.results)
    print("\n".join(lines) if lines else f"{args.results}: nothing to migrate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
