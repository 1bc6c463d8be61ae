"""The regression gate: a run's seed means against committed expectations (a baseline file).

Baseline (JSON, made by `write_baseline` from a run, committed by hand):

    {"format": "aae-bench-baseline/1", "created": ..., "source": [provenance lines],
     "tolerance_rule": "...", "training_version": 2, "evaluator_version": 1,
     "device": "cpu", "gpus": [],
     "entries": [{"grid": "table1", "metric": "parzen_ll", "filters": {}, "profile": "smoke",
                  "expected": -190.2, "tolerance": 4.1, "std": 1.3, "n": 3, "seeds": [0, 1, 2],
                  "failed_trials": 0}, ...]}

Tolerance of an entry = max(k * std, floor, rel_floor * |expected|): k (default 3) times the
sample std (ddof=1) of the per-seed values in the baseline run (0 with one seed), but never below
an absolute floor per metric (DEFAULT_FLOORS, for runs too few or too alike to show a spread) nor
below a relative floor (default 1 % of the expected value). `check` passes an entry when the
run's mean over its done seeds (same grid, profile, metric and filters) is within the tolerance
of the expected value and the run has no more failed (diverged / error) trials than the baseline.

Devices. A trial's id leaves the device out (a CPU and a GPU run of one config are the same
experiment), but their numbers differ by more than seed noise can hide or show: other kernels,
and on an accelerator other random draws (see aae_core.training.device_generators). A baseline
therefore records the kind of device its rows ran on ("cpu", "cuda": a row's `device` up to
the colon), and `check` compares it only with rows of that kind; rows of another kind are left
out and named in the header, and when no row is of the baseline's kind, `check` says so and
exits 2 instead of failing on that difference or passing on nothing. A baseline that records no
device is a CPU baseline (LEGACY_DEVICE). The GPU model is not part of the kind: a CUDA baseline
gates runs on any GPU, and the header notes when the models differ.

Exit codes of `check`: 0 every entry passes; 1 any entry drifted, is missing from the results
(counted as a failure) or has more failed trials; 2 unusable input (baseline file missing,
unreadable or malformed; no result rows; results of another training or evaluator version than
the baseline's, or only of another kind of device, which the gate never compares).
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.results import (
    CONFIG_FIELDS,
    VERSION_COLUMNS,
    newest_versions,
    read_rows,
    select,
    version_name,
    versions_of,
)

FORMAT = "aae-bench-baseline/1"
PASS, EXIT_DRIFT, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_K = 3.0
DEFAULT_REL_FLOOR = 0.01
# Absolute tolerance floors, in the metric's unit.
DEFAULT_FLOORS = {
    "parzen_ll": 1.0, "parzen_validation_ll": 1.0, "parzen_ll_10m": 1.0,  # nats
    "classification_error": 0.25, "clustering_error": 0.5, "dim_reduction_error": 0.5,  # percent
}
# Not gated by default: the chosen sigma is a discrete pick on a grid, and a different pick at an
# unchanged log-likelihood is not a regression (parzen_ll catches one that matters).
SKIP_BY_DEFAULT = ("parzen_sigma",)
_NOT_FILTERS = {"seed", "grid", "profile"}
UNRECORDED = "unrecorded"
LEGACY_DEVICE = "cpu"
"""The device of a baseline that records none: every baseline made before the field existed was
made on a CPU (no GPU run of this code existed then)."""
_ALWAYS_FILTERS = ("variant", "dataset", "prior")


class BaselineError(ValueError):
    """The baseline file is missing, unreadable or malformed (exit code 2)."""


def tolerance_rule(k: float, rel_floor: float) -> str:
    return (f"tolerance = max({k:g} * std over seeds (ddof=1; 0 with one seed), per-metric floor, "
            f"{rel_floor:g} * |expected|)")


def _varying_fields(rows: pd.DataFrame) -> list[str]:
    """Config fields that differ between the trials of a grid (besides seed): the filters that
    separate its cells (e.g. dataset, labels)."""
    trials = rows.drop_duplicates("trial_id")
    # What a cell is (variant, data set, prior) is always a filter, so that a run holding more
    # cells of the grid than the baseline (e.g. TFD beside MNIST) is compared cell by cell.
    return [c for c in CONFIG_FIELDS if c in trials.columns and c not in _NOT_FILTERS
            and (c in _ALWAYS_FILTERS or trials[c].astype(str).nunique() > 1)]


def device_kind(device) -> str:
    """The kind of device a row ran on: 'cuda:1' -> 'cuda', 'cpu' -> 'cpu'; UNRECORDED for none."""
    if device is None or (isinstance(device, float) and math.isnan(device)) or not str(device).strip():
        return UNRECORDED
    return str(device).split(":", 1)[0].strip().lower()


def device_kinds(frame: pd.DataFrame) -> pd.Series:
    if "device" not in frame.columns:
        return pd.Series(UNRECORDED, index=frame.index, dtype=object)
    return frame["device"].map(device_kind)


def _gpu_names(frame: pd.DataFrame) -> list[str]:
    if "gpu" not in frame.columns:
        return []
    return sorted({str(g) for g in frame["gpu"].dropna() if str(g).strip()})


def _trial_counts(frame: pd.DataFrame, kinds: pd.Series) -> str:
    """'cuda (3 trials), mps (1 trial)'."""
    trials = frame.assign(_kind=kinds).drop_duplicates("trial_id")["_kind"].value_counts()
    return ", ".join(f"{kind} ({n} trial{'s' if n != 1 else ''})" for kind, n in sorted(trials.items()))


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    return value


def write_baseline(results_dir: str | os.PathLike, out_path: str | os.PathLike, *,
                   grids: list[str] | None = None, profile: str | None = None,
                   metrics: list[str] | None = None, k: float = DEFAULT_K,
                   floors: dict[str, float] | None = None,
                   rel_floor: float = DEFAULT_REL_FLOOR, device: str | None = None) -> Path:
    """A baseline from the done rows of a run: one entry per (grid, metric, cell filters).

    `profile` None takes the grid's only profile (ValueError when it has several); `metrics`
    None takes every metric but SKIP_BY_DEFAULT; `device` (a kind: "cpu", "cuda") None takes
    the rows' only kind of device (ValueError when they ran on several).
    """
    frame = read_rows(results_dir)
    if frame.empty:
        raise ValueError(f"no result rows in {results_dir}")
    if grids:
        frame = frame[frame["grid"].astype(str).isin(grids)]
        if frame.empty:
            raise ValueError(f"no rows of grids {', '.join(grids)} in {results_dir}")
    # A baseline is of one training and one evaluator version: the newest rows'.
    frame, (training, evaluator) = newest_versions(frame)
    frame, kind = _one_device(frame, device)
    floors = {**DEFAULT_FLOORS, **(floors or {})}
    entries = []
    for grid in grids or sorted(frame["grid"].astype(str).unique()):
        rows = frame[frame["grid"].astype(str) == grid]
        profiles = sorted(rows["profile"].astype(str).unique())
        chosen = profile or (profiles[0] if len(profiles) == 1 else None)
        if chosen is None:
            raise ValueError(f"grid {grid} has rows of profiles {', '.join(profiles)}; "
                             f"pass profile=")
        rows = rows[rows["profile"].astype(str) == chosen]
        if rows.empty:
            raise ValueError(f"grid {grid} has no rows at profile {chosen}")
        fields = _varying_fields(rows)
        groups = rows.groupby([rows[f].astype(str) for f in fields]) if fields else [((), rows)]
        for _, cell in groups:
            filters = {f: _plain(cell[f].iloc[0]) for f in fields}
            failed = int(cell.drop_duplicates("trial_id")["status"].isin(["diverged", "error"])
                         .sum())
            done = cell[cell["status"] == "done"]
            for metric in sorted(done["metric"].unique()):
                if (metrics is None and metric in SKIP_BY_DEFAULT) or \
                        (metrics is not None and metric not in metrics):
                    continue
                m = done[done["metric"] == metric]
                values = pd.to_numeric(m["value"], errors="coerce").dropna()
                if values.empty:
                    continue
                mean = float(values.mean())
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                tolerance = max(k * std, floors.get(metric, 0.0), rel_floor * abs(mean))
                entries.append({
                    "grid": grid, "metric": metric, "filters": filters, "profile": chosen,
                    "expected": mean, "tolerance": tolerance, "std": std, "n": int(len(values)),
                    "seeds": sorted(int(s) for s in m.loc[values.index, "seed"]),
                    "failed_trials": failed,
                })
    if not entries:
        raise ValueError(f"no done rows to make a baseline from in {results_dir}")
    commits = sorted({str(c)[:12] for c in frame.get("commit", pd.Series(dtype=object)).dropna()})
    baseline = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"results_dir": str(results_dir), "commits": commits},
        "tolerance_rule": tolerance_rule(k, rel_floor),
        "training_version": int(training), "evaluator_version": int(evaluator),
        "device": kind, "gpus": _gpu_names(frame),
        "k": k, "rel_floor": rel_floor, "floors": floors,
        "entries": entries,
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(baseline, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return out


def _one_device(frame: pd.DataFrame, device: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of one kind of device (`device`, or the rows' only kind) and that kind."""
    kinds = device_kinds(frame)
    if device is not None:
        rows = frame[kinds == device]
        if rows.empty:
            raise ValueError(f"no rows ran on device {device}; the rows ran on "
                             f"{_trial_counts(frame, kinds)}")
        return rows, device
    present = sorted(set(kinds))
    if len(present) > 1:
        raise ValueError(f"the rows ran on {_trial_counts(frame, kinds)}: a baseline holds one kind "
                         f"of device; pass device=")
    return frame, present[0]


_ENTRY_KEYS = {"grid": str, "metric": str, "profile": str, "expected": (int, float),
               "tolerance": (int, float)}


def load_baseline(path: str | os.PathLike) -> dict:
    """The parsed baseline; BaselineError with one line saying what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(f"baseline file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"baseline file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineError(f"baseline file {path} is not in format {FORMAT}")
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        raise BaselineError(f"baseline file {path} has no entries")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BaselineError(f"baseline entry {i} is not an object")
        for key, kind in _ENTRY_KEYS.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise BaselineError(f"baseline entry {i} lacks a valid {key!r}")
        if not isinstance(entry.get("filters", {}), dict):
            raise BaselineError(f"baseline entry {i}: 'filters' must be an object")
        if not (math.isfinite(entry["expected"]) and entry["tolerance"] >= 0):
            raise BaselineError(f"baseline entry {i}: expected must be finite, tolerance >= 0")
    if not isinstance(data.get("device", LEGACY_DEVICE), str):
        raise BaselineError(f"baseline file {path}: 'device' must be a string (e.g. \"cpu\")")
    return data


def baseline_device(baseline: dict) -> str:
    return baseline.get("device", LEGACY_DEVICE)


def _entry_rows(frame: pd.DataFrame, entry: dict) -> pd.DataFrame:
    """The rows of one baseline entry's cell, profile and metric."""
    cell = select(frame, entry["grid"], entry.get("filters", {}))
    if not cell.empty:
        cell = cell[cell["profile"].astype(str) == entry["profile"]]
    return cell[cell["metric"] == entry["metric"]] if not cell.empty else cell


def compare(baseline: dict, frame: pd.DataFrame,
            elsewhere: pd.DataFrame | None = None) -> list[dict]:
    """One result per baseline entry: status pass / DRIFT / MISSING / FAILED-TRIALS. `frame`
    holds the rows to compare (the baseline's kind of device, `same_device`); `elsewhere`, the
    rows of other kinds, only says why an entry found none."""
    out = []
    for entry in baseline["entries"]:
        trials = _entry_rows(frame, entry)
        failed = int(trials.drop_duplicates("trial_id")["status"]
                     .isin(["diverged", "error"]).sum()) if not trials.empty else 0
        done = trials[trials["status"] == "done"] if not trials.empty else trials
        values = pd.to_numeric(done["value"], errors="coerce").dropna() if not done.empty \
            else pd.Series(dtype=float)
        result = {**entry, "got": math.nan, "got_n": int(len(values)), "diff": math.nan,
                  "got_failed": failed, "note": ""}
        if values.empty:
            result["status"] = "MISSING"
            result["note"] = "no done rows for this entry in the results (counts as a failure)"
            other = _entry_rows(elsewhere, entry) if elsewhere is not None and not elsewhere.empty \
                else None
            if other is not None and not other.empty:
                result["note"] = (f"no done rows on {baseline_device(baseline)}, the baseline's "
                                  f"device; its rows ran on {_trial_counts(other, device_kinds(other))}, "
                                  f"not compared (counts as a failure)")
        else:
            result["got"] = float(values.mean())
            result["diff"] = result["got"] - entry["expected"]
            if abs(result["diff"]) > entry["tolerance"]:
                result["status"] = "DRIFT"
            elif failed > int(entry.get("failed_trials", 0)):
                result["status"] = "FAILED-TRIALS"
                result["note"] = f"{failed} diverged/error trials (baseline: " \
                                 f"{entry.get('failed_trials', 0)})"
            else:
                result["status"] = "pass"
            seeds = sorted(int(s) for s in done.loc[values.index, "seed"])
            if entry.get("seeds") is not None and seeds != sorted(entry["seeds"]):
                result["note"] = (result["note"] + "; " if result["note"] else "") + \
                    f"seeds differ (baseline {entry['seeds']}, run {seeds})"
        out.append(result)
    return out


def same_versions(baseline: dict, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the baseline's training and evaluator versions, or a one-line reason why
    there are none: the gate never compares numbers that different code computed."""
    wanted = {column: baseline.get(column) for column in VERSION_COLUMNS}
    if any(v is None for v in wanted.values()):
        return frame, (f"the baseline records no {' / '.join(k for k, v in wanted.items() if v is None)} "
                       f"(made before versions were recorded): regenerate it with "
                       f"regress.write_baseline from a run of this code")
    mask = pd.Series(True, index=frame.index)
    for column, version in wanted.items():
        mask &= versions_of(frame, column) == float(version)
    if not mask.any():
        found = sorted({f"training {version_name(t)} / evaluator {version_name(e)}" for t, e in zip(
            versions_of(frame, "training_version"), versions_of(frame, "evaluator_version"),
            strict=True)})
        return frame, (f"the baseline is training version {wanted['training_version']} / evaluator "
                       f"version {wanted['evaluator_version']}, the results are {', '.join(found)}: "
                       f"the gate does not compare across versions (re-run, or regenerate the baseline)")
    return frame[mask], ""


def same_device(baseline: dict, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The rows of the baseline's kind of device, the rows of other kinds, and a one-line reason
    when no row is of its kind: trial ids leave the device out, so without this a CPU baseline
    would fail a GPU run on the devices' numeric difference, or pass it on nothing."""
    wanted = baseline_device(baseline)
    kinds = device_kinds(frame)
    mine = kinds == wanted
    if not mine.any():
        return frame.iloc[0:0], frame, (
            f"the baseline was made on {wanted}, the results ran on {_trial_counts(frame, kinds)}: "
            f"the gate compares a baseline only with rows of its own kind of device (trial ids "
            f"leave the device out); to gate these, make a baseline from a run on that device "
            f"(regress.write_baseline)")
    return frame[mine], frame[~mine], ""


def device_lines(baseline: dict, mine: pd.DataFrame, others: pd.DataFrame) -> list[str]:
    """What the header says about devices: the one compared, the rows left out, GPU models."""
    wanted = baseline_device(baseline)
    recorded = "" if "device" in baseline else " (the baseline records none: made before devices were recorded, on a CPU)"
    lines = [f"device: {wanted}{recorded}; only rows that ran on {wanted} are compared"]
    if not others.empty:
        lines.append(f"left out, another kind of device: {_trial_counts(others, device_kinds(others))}")
    theirs, ours = baseline.get("gpus") or [], _gpu_names(mine)
    if wanted != "cpu" and theirs and ours and set(ours) != set(theirs):
        lines.append(f"GPU model differs (baseline: {', '.join(theirs)}; results: {', '.join(ours)}): "
                     f"the tolerances were set by the baseline's seed spread on its own")
    return lines


def format_results(results: list[dict]) -> str:
    """The pass/fail table as fixed-width text, with a summary line."""
    head = ["grid", "metric", "filters", "profile", "expected", "tol", "got", "n", "diff",
            "result"]
    lines = []
    for r in results:
        filters = ",".join(f"{k}={v}" for k, v in r.get("filters", {}).items()) or "-"
        lines.append([r["grid"], r["metric"], filters, r["profile"], f"{r['expected']:.4g}",
                      f"{r['tolerance']:.3g}", "-" if math.isnan(r["got"]) else f"{r['got']:.4g}",
                      str(r["got_n"]), "-" if math.isnan(r["diff"]) else f"{r['diff']:+.3g}",
                      r["status"] + (f"  ({r['note']})" if r["note"] else "")])
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head) - 1)]
    text = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
            for row in [head, *lines]]
    bad = [r for r in results if r["status"] != "pass"]
    if bad:
        counts = pd.Series([r["status"] for r in bad]).value_counts()
        summary = "FAIL: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + \
            f" of {len(results)} entries"
    else:
        summary = f"PASS: all {len(results)} entries within tolerance"
    return "\n".join(text + ["", summary]) + "\n"


def check(baseline_path: str | os.PathLike, results_dir: str | os.PathLike) -> tuple[int, str]:
    """(exit code, printed text): 0 all pass, 1 any drift / missing / new failures, 2 unusable."""
    try:
        baseline = load_baseline(baseline_path)
    except BaselineError as exc:
        return EXIT_UNUSABLE, f"unusable baseline: {exc}\n"
    if not Path(results_dir).is_dir():
        return EXIT_UNUSABLE, f"no results: {results_dir} is not a directory\n"
    try:
        frame = read_rows(results_dir)
    except Exception as exc:  # noqa: BLE001 - any unreadable CSV makes the input unusable
        return EXIT_UNUSABLE, f"unusable results in {results_dir}: {exc}\n"
    if frame.empty:
        return EXIT_UNUSABLE, f"no results: no result rows in {results_dir}\n"
    frame, why = same_versions(baseline, frame)
    if why:
        return EXIT_UNUSABLE, f"not comparable: {why}\n"
    frame, others, why = same_device(baseline, frame)
    if why:
        return EXIT_UNUSABLE, f"not comparable: {why}\n"
    results = compare(baseline, frame, others)
    text = f"baseline {baseline_path} ({baseline.get('tolerance_rule', '')})\n" + \
        "".join(line + "\n" for line in device_lines(baseline, frame, others)) + \
        format_results(results)
    return (PASS if all(r["status"] == "pass" for r in results) else EXIT_DRIFT), text
