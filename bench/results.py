"""Tidy result rows: one row per (trial, metric), with the trial's config and provenance.

Rows live in plain CSV files, one per trial and code version (bench.store: the layout, atomic
writes, strict reads): a finished trial writes only its own rows, results from two machines merge
by copying files, and pandas alone reads them. Merging keeps the newest row (by `finished_at`)
per (trial_id, metric, training_version, evaluator_version).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bench import store
from bench.config import PROFILES, TrialConfig, config_from_dict
from bench.store import ResultsError
from bench.versions import METRICS_VERSION, TRAINING_VERSION

STATUSES = ("done", "diverged", "error")
# What code made a row (bench.versions): rows of other versions are other measurements, kept.
VERSION_COLUMNS = ["training_version", "evaluator_version"]
KEY = ["trial_id", "metric", *VERSION_COLUMNS]

# Columns every row has, in this order; config fields follow, then provenance.
ROW_COLUMNS = [
    "trial_id", "grid", "profile", "seed", "metric", "value", "stderr", "n", "status", "error",
    "epochs_done", "wall_s", "threads", "workers", "device", "node", "node_id", "node_ip",
    "resumed_from_epoch", "wall_s_from_epoch", "param_digests", "precision_used",
    "training_version", "evaluator_version", "data_source", "data_split", "subset_hash",
    "started_at", "finished_at", "command", "legacy_trial_id",
]
PROVENANCE_COLUMNS = [
    "commit", "dirty", "python", "torch", "ray", "accelerate", "numpy", "platform", "cpu",
    "cpu_features", "cpu_count", "gpu", "hostname", "matmul_precision", "cuda", "cudnn",
]


def _cell(value):
    # Tuples and lists (lr schedules, sigma grids) are stored as JSON so the CSV round-trips.
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return value


def to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([{k: _cell(v) for k, v in row.items()} for row in rows])
    first = [c for c in ROW_COLUMNS if c in frame.columns]
    last = [c for c in PROVENANCE_COLUMNS if c in frame.columns]
    middle = [c for c in frame.columns if c not in first and c not in last]
    return frame[first + middle + last]


def read_rows(results_dir: str | os.PathLike, grid: str | None = None) -> pd.DataFrame:
    """All rows under `results_dir` (of one grid, or of all), merged: the per-trial files and
    the grid files of older code alike. A file that cannot be read is a ResultsError."""
    tables = [store.read_table(f) for f in store.row_files(results_dir, grid)]
    frame = store.tables_frame([t for t in tables if t.header])
    if frame.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return merge(frame)


def require_rows(results_dir: str | os.PathLike) -> pd.DataFrame:
    """read_rows, for a command that needs rows: a missing directory, or one without rows, is a
    ResultsError (before anything is written)."""
    if not Path(results_dir).is_dir():
        raise ResultsError(f"--results {results_dir}: no such directory; pass the directory "
                           f"that `aae-bench run --results` wrote")
    frame = read_rows(results_dir)
    if frame.empty:
        raise ResultsError(f"--results {results_dir}: no result rows there (no <grid>/*.csv "
                           f"files); run `aae-bench run GRID --results {results_dir}` first")
    return frame


def merge(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest row per (trial_id, metric, training_version, evaluator_version): a
    retried trial replaces its failure; a trial re-run by newer code keeps its older rows.
    Newest: the latest `finished_at`; of equal (or missing) times, the later in `frame`. The
    rows come back oldest first, so the order of the files read does not matter."""
    if "finished_at" in frame.columns:
        when = pd.to_datetime(frame["finished_at"], utc=True, errors="coerce", format="ISO8601")
        frame = (frame.assign(_when=when)
                 .sort_values("_when", kind="stable", na_position="first").drop(columns="_when"))
    keys = frame[[c for c in KEY if c in frame.columns]].copy()
    for column in VERSION_COLUMNS:  # 1, 1.0 and "1" are one version (CSV, NaN columns, str)
        if column in keys.columns:
            keys[column] = pd.to_numeric(keys[column], errors="coerce")
    return frame[~keys.duplicated(keep="last")].reset_index(drop=True)


def versions_of(frame: pd.DataFrame, column: str) -> pd.Series:
    """A version column as numbers; -1 where a row has none (written before the column)."""
    if column not in frame.columns:
        return pd.Series(-1.0, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").fillna(-1.0)


def version_name(version: float) -> str:
    return "unknown (a row older than the column)" if version < 0 else str(int(version))


def newest_versions(rows: pd.DataFrame) -> tuple[pd.DataFrame, tuple[float, float] | None]:
    """The rows of the newest training version, and of those the newest evaluator version;
    with that (training, evaluator) pair (None when there are no rows)."""
    if rows.empty:
        return rows, None
    training = versions_of(rows, "training_version")
    rows = rows[training == training.max()]
    evaluator = versions_of(rows, "evaluator_version")
    return rows[evaluator == evaluator.max()], (float(training.max()), float(evaluator.max()))


def trial_file(results_dir: str | os.PathLike, grid: str, row: Mapping,
               host: str | None = None) -> Path:
    """The file that holds `row`: its trial's, at its training and evaluator versions, written
    on `host` (default this machine)."""
    return store.grid_dir(results_dir, grid) / store.trial_file_name(
        row["trial_id"], row.get("training_version"), row.get("evaluator_version"),
        host or store.this_host())


def append_rows(results_dir: str | os.PathLike, grid: str, rows: list[dict]) -> Path:
    """Write the rows of one or more finished trials: each trial's rows (per code version)
    replace its own file, atomically; no other file is read or written, so the cost is the
    rows' own. Returns the file written, or the grid's directory when there were several."""
    files: dict[Path, list[dict]] = {}
    for row in rows:
        files.setdefault(trial_file(results_dir, grid, row), []).append(row)
    directory = store.grid_dir(results_dir, grid)
    store.make_dir(directory)
    written = [write_frame(path, to_frame(group)) for path, group in files.items()]
    return written[0] if len(written) == 1 else directory


def write_frame(path: Path, frame: pd.DataFrame) -> Path:
    """`frame` as the CSV `path`, atomically and durably (bench.store.write_text)."""
    return store.write_text(Path(path), frame.to_csv(index=False, lineterminator="\n"))


def done_trial_ids(results_dir: str | os.PathLike, grid: str | None = None) -> set[str]:
    """Trials whose every row is `done` (in one grid's file, or in all); failed and diverged
    trials are retried, never done."""
    return done_ids(read_rows(results_dir, grid))


def done_ids(frame: pd.DataFrame, training_version: int | None = None) -> set[str]:
    """The trials of `frame` whose every row (of one training version: `training_version`, or
    None for any) is `done`."""
    return {tid for tid, versions in done_versions(frame).items()
            if training_version is None or training_version in versions}


def done_versions(frame: pd.DataFrame) -> dict[str, set[int]]:
    """trial_id -> the training versions at which its every row is `done` (-1: rows without
    a version)."""
    if frame.empty:
        return {}
    version = versions_of(frame, "training_version").astype(int)
    ok = (frame["status"] == "done").groupby([frame["trial_id"], version]).all()
    out: dict[str, set[int]] = {}
    for (tid, v), done in ok.items():
        if done:
            out.setdefault(tid, set()).add(int(v))
    return out


# -- building rows: done, diverged and failed trials alike ------------------------------------


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What is known of how one trial (one seed) ran, beside its config. A trial that failed in
    Ray is known only as far as the driver knows it; what is not known is left out of its rows."""

    finished_at: str
    run: Mapping[str, object] = dataclasses.field(default_factory=dict)
    """How it ran, in column order (threads, workers, device, node, provenance)."""
    subset_hash: str | None = None
    """The hash of its labelled subset ("" when it has none)."""
    wall_s: float | None = None
    epochs_done: int | None = None


def trial_rows(config: TrialConfig, context: RunContext, status: str,
               values: Mapping[str, tuple[float, float, int]], error: str = "") -> list[dict]:
    """The rows of one trial, one per metric of `values` ({metric: (value, stderr, n)}): its id,
    grid and profile, how it ran, its seed and config, how it ended, then the metric."""
    row = {"trial_id": config.trial_id, "grid": config.grid, "profile": config.profile,
           **context.run, "seed": config.seed}
    # What code computed the row: every row, done, diverged or error, carries both versions.
    row["training_version"] = TRAINING_VERSION
    row.setdefault("evaluator_version", METRICS_VERSION)
    if context.subset_hash is not None:
        row["subset_hash"] = context.subset_hash
    row |= config.as_dict()
    ended = {"finished_at": context.finished_at, "wall_s": context.wall_s,
             "epochs_done": context.epochs_done}
    row |= {k: v for k, v in ended.items() if v is not None} | {"status": status, "error": error}
    return [{**row, "metric": name, "value": value, "stderr": stderr, "n": n}
            for name, (value, stderr, n) in values.items()]


# -- reading rows back: a cell's rows, the profile shown, a trial's config --------------------

# Profiles from most to least faithful; a cell shows the most faithful profile that has rows.
PROFILE_RANK = ("paper", "long", "quick", "smoke")
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))


def _equals(column: pd.Series, value) -> pd.Series:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return column.astype(str) == str(value)
    return pd.to_numeric(column, errors="coerce") == value


def wall_from_epoch(row: Mapping) -> int:
    """The first epoch a row's wall_s covers: its `wall_s_from_epoch`, or in rows of older code
    (which counted a resumed trial's last process only) its `resumed_from_epoch`; 0 when neither.
    Above 0, wall_s is a lower bound of the trial's time."""
    for column in ("wall_s_from_epoch", "resumed_from_epoch"):
        value = pd.to_numeric(row.get(column), errors="coerce")
        if value is not None and not pd.isna(value):
            return int(value)
    return 0


def cell_key(config: TrialConfig) -> str:
    """The id of a config's cell: its trial id at seed 0 (what the seeds of a cell share)."""
    return dataclasses.replace(config, seed=0).trial_id


@functools.cache
def grid_cells(grid: str) -> frozenset[str]:
    """The cells `grid` asks for at any profile (bench.grids); empty for a grid it does not
    know (e.g. "train")."""
    from bench.grids import GRIDS  # grids builds configs; results only reads them

    if grid not in GRIDS:
        return frozenset()
    return frozenset(cell_key(c) for profile in PROFILES for c in GRIDS[grid](profile, 1))


def trial_cells(frame: pd.DataFrame) -> pd.Series:
    """trial_id -> its cell key, from each trial's first row (None where the row's config
    cannot be rebuilt, e.g. a value no longer valid)."""
    keys = {}
    for row in frame.drop_duplicates("trial_id").to_dict("records"):
        try:
            keys[row["trial_id"]] = cell_key(config_of(row, check_id=False))
        except (ValueError, TypeError, KeyError):
            keys[row["trial_id"]] = None
    return pd.Series(keys, dtype=object)


def in_grid(frame: pd.DataFrame, grid: str) -> pd.Series:
    """Rows of the trials `grid` asks for: those it ran (their `grid` column, which also holds
    configs changed on the command line, e.g. --epochs) and those another grid ran for a cell
    `grid` has too (a trial's id is its config alone: figure9 reads table3's trials)."""
    mask = frame["grid"].astype(str) == grid
    cells = grid_cells(grid)
    if cells:
        mask |= frame["trial_id"].map(trial_cells(frame)).isin(cells)
    return mask


def select(frame: pd.DataFrame, grid: str, filters: Mapping[str, object] | None = None
           ) -> pd.DataFrame:
    """Rows of the trials of one grid (`in_grid`) whose config fields equal `filters`."""
    if frame.empty or "grid" not in frame.columns:
        return frame.iloc[0:0]
    mask = in_grid(frame, grid)
    for name, value in (filters or {}).items():
        if name not in frame.columns:
            return frame.iloc[0:0]
        mask &= _equals(frame[name], value)
    return frame[mask]


def pick_profile(profiles) -> str | None:
    """The most faithful profile present (PROFILE_RANK order; unknown names last)."""
    present = [str(p) for p in pd.unique(pd.Series(list(profiles), dtype=object)) if pd.notna(p)]
    if not present:
        return None
    return sorted(present, key=lambda p: (PROFILE_RANK.index(p) if p in PROFILE_RANK
                                          else len(PROFILE_RANK), p))[0]


def config_of(row: Mapping, check_id: bool = True) -> TrialConfig:
    """A trial's config from one of its rows (CSV cells: NaN for None, JSON for tuples).
    `check_id`: the row's trial_id must be the config's (False: a row to migrate)."""
    values = {}
    for f in dataclasses.fields(TrialConfig):
        if f.name not in row:
            continue  # a field added after the row was written keeps its default
        value = row[f.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            values[f.name] = None
            continue
        if isinstance(value, str) and value.startswith("["):
            value = tuple(json.loads(value))
        elif isinstance(value, np.generic):
            value = value.item()
        base = str(f.type).split(" |")[0]
        if base in ("int", "float", "str"):
            value = {"int": int, "float": float, "str": str}[base](value)
        values[f.name] = value
    return config_from_dict({**values, "trial_id": row["trial_id"]} if check_id else values)
