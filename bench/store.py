"""The files that hold result rows: where they are, how they are written, how they are read.

Layout: one plain CSV per trial, training version, evaluator version and machine,

    <results>/<grid>/<trial_id>-t<training_version>-e<evaluator_version>-<host>.csv

so a finished trial writes only its own rows, a re-run of a trial by the same code on the same
machine replaces its own file, and the results of two machines merge by copying files: no file
is ever written by two machines (`<host>` is the machine that wrote it: `this_host`). The one file per grid of
older code, `<results>/<grid>.csv`, is still read (an old results directory, or rows a campaign
of older code is still writing); `python -m bench.migrate` converts it.

Writing is atomic and durable: a temporary file in the same directory, flushed and fsynced,
renamed over the old one, then the directory fsynced, so a crash leaves the old file or the new
one, never half of one. Reading is strict: a file that is not a whole CSV of rows (a torn
write, a git merge conflict, a stray file) is a ResultsError naming it and what to do, never a
pandas error later. Which rows win when files disagree is bench.results' business (`merge`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import socket
import tempfile
from pathlib import Path

import pandas as pd

# Hex ids that pandas would read as numbers when one happens to be all digits (and drop its
# leading zeros): always read as text.
TEXT_COLUMNS = ("trial_id", "legacy_trial_id", "subset_hash", "commit", "node_id")
REQUIRED_COLUMNS = ("trial_id", "metric")
# A per-trial file's name; grid files (<grid>.csv) and curve.csv never match it.
TRIAL_FILE = re.compile(r"-t[0-9A-Za-z_.]+-e[0-9A-Za-z_.]+-[^/]+\.csv$")
CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7}|\|{7})", re.M)
UNKNOWN_VERSION = "none"
# Directories beside the grids' that never hold rows: saved trials, Ray's default storage.
NOT_GRIDS = ("artifacts", "ray")


class ResultsError(Exception):
    """A results directory or file that cannot be used as asked; one line that says what to do."""


def unreadable(path: Path, why: str) -> ResultsError:
    return ResultsError(f"{path}: not a readable results file ({why}); restore it from git "
                        f"(git checkout -- {path}) or delete it to run those trials again")


# -- names ------------------------------------------------------------------------------------


def _token(value: object) -> str:
    """A name-safe token of a value (a version, a host): letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^0-9A-Za-z._-]+", "_", str(value)).strip("_") or UNKNOWN_VERSION


def version_token(value: object) -> str:
    """2, 2.0 and "2" are one version (CSV, NaN columns, str); empty is `none`."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return UNKNOWN_VERSION
    try:
        number = float(str(value))
    except ValueError:
        return _token(value).replace("-", "_")
    return str(int(number)) if number.is_integer() else _token(value).replace("-", "_")


def this_host() -> str:
    """The writer's name in the files it writes: AAE_BENCH_HOST, else the host name (machines
    that share a host name, e.g. two VMs called `vm`, set AAE_BENCH_HOST apart)."""
    return _token(os.environ.get("AAE_BENCH_HOST") or socket.gethostname())


def trial_file_name(trial_id: str, training_version: object, evaluator_version: object,
                    host: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z_.]+", str(trial_id)):
        raise ValueError(f"trial id {trial_id!r} cannot name a file")  # ids are hex digits
    return (f"{trial_id}-t{version_token(training_version)}-e{version_token(evaluator_version)}"
            f"-{_token(host)}.csv")


def grid_dir(results_dir: str | os.PathLike, grid: str) -> Path:
    if not re.fullmatch(r"[0-9A-Za-z_][0-9A-Za-z_.-]*", grid) or grid in NOT_GRIDS:
        raise ValueError(f"grid {grid!r} cannot name a results directory")
    return Path(results_dir) / grid


def legacy_file(results_dir: str | os.PathLike, grid: str) -> Path:
    return Path(results_dir) / f"{grid}.csv"


def row_files(results_dir: str | os.PathLike, grid: str | None = None) -> list[Path]:
    """Every file of rows under `results_dir` (of one grid, or all): the grid files of older
    code first, then the per-trial files, each group in name order."""
    directory = Path(results_dir)
    if not directory.is_dir():
        return []
    if grid:
        legacy, dirs = [legacy_file(directory, grid)], [directory / grid]
    else:
        legacy = sorted(directory.glob("*.csv"))
        dirs = sorted(p for p in directory.iterdir() if p.is_dir()
                      and p.name not in NOT_GRIDS and not p.name.startswith("."))
    per_trial = sorted(f for d in dirs if d.is_dir() for f in d.glob("*.csv")
                       if TRIAL_FILE.search(f.name))
    return [f for f in legacy if f.is_file()] + per_trial


# -- reading ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Table:
    """One file's rows as the text of their cells (typed once, for all files together)."""

    path: Path
    header: tuple[str, ...]
    records: tuple[tuple[str, ...], ...]


def read_table(path: Path) -> Table:
    """The rows of one results file, checked whole: every line has the header's fields."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise unreadable(path, "not UTF-8 text") from None
    except OSError as exc:
        raise unreadable(path, exc.strerror or type(exc).__name__) from None
    if not text.strip():
        return Table(path, (), ())  # an empty file holds no rows (a write never leaves one)
    if marker := CONFLICT_MARKER.search(text):
        line = text.count("\n", 0, marker.start()) + 1
        raise unreadable(path, f"a git merge conflict marker on line {line}")
    if not text.endswith("\n"):
        raise unreadable(path, "its last line is cut short, as by a torn write")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = tuple(next(reader))
        records = []
        for record in reader:
            if not record:
                continue  # a blank line (pandas skips them too)
            if len(record) != len(header):
                raise unreadable(path, f"line {reader.line_num} has {len(record)} fields, the "
                                       f"header {len(header)}")
            records.append(tuple(record))
    except csv.Error as exc:
        raise unreadable(path, f"line {reader.line_num}: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise unreadable(path, f"no {' or '.join(missing)} column")
    return Table(path, header, tuple(records))


def tables_frame(tables: list[Table]) -> pd.DataFrame:
    """The rows of `tables` as one frame, in their order, columns in order of first appearance:
    exactly what pandas makes of one CSV holding them all (each column typed over every file,
    so a column empty in one trial's file does not change its type)."""
    columns = list(dict.fromkeys(c for t in tables for c in t.header))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for table in tables:
        at = {c: i for i, c in enumerate(table.header)}
        take = [at.get(c) for c in columns]
        writer.writerows([r[i] if i is not None else "" for i in take] for r in table.records)
    buffer.seek(0)
    if not columns:
        return pd.DataFrame()
    return pd.read_csv(buffer, keep_default_na=True,
                       dtype={c: str for c in TEXT_COLUMNS if c in columns})


def read_file(path: str | os.PathLike) -> pd.DataFrame:
    """One results file's rows as they are (no merging)."""
    return tables_frame([read_table(Path(path))])


# -- writing ----------------------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable (POSIX; a no-op where directories
    cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself is atomic
    finally:
        os.close(fd)


def make_dir(directory: Path) -> None:
    """`directory` and its missing parents, each new entry made durable."""
    missing = []
    for d in [directory, *directory.parents]:
        if d.exists():
            break
        missing.append(d)
    directory.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        fsync_dir(d.parent)


def write_text(path: Path, text: str) -> Path:
    """`text` as the file `path`, atomically and durably."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the other users
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def remove(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)


def check_writable(results_dir: str | os.PathLike) -> Path:
    """Create `results_dir` (and its parents) and make sure a file can be written in it."""
    directory = Path(results_dir)
    try:
        make_dir(directory)
        with tempfile.TemporaryFile(dir=directory, prefix=".aae-bench-write-check."):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError) or (directory.exists() and not directory.is_dir()):
            why = "it is a file, not a directory"
        raise ResultsError(f"--results {results_dir}: cannot create or write the directory "
                           f"({why}); pass a directory you can write to") from None
    return directory
