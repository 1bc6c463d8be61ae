"""Rows -> the paper's tables: mean ± std over seeds, the paper's number beside ours, a verdict.

A table is DATA (`TABLES`): its columns, and for each column the cell spec that fills our row
(grid, metric and config filters). A new grid or metric plugs in by editing a spec; the logic
below never names a grid. A table becomes a `TableView`, a grid of display strings, with its
protocol card (the protocol values of its rows, its rules and the caveats tagged in the code that
bear on it); bench.render writes a view as Markdown, LaTeX or HTML, so the three formats always
say the same thing.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import curves, paper, stats, tags
from bench.results import (
    CONFIG_FIELDS,
    newest_versions,
    pick_profile,
    select,
    version_name,
    versions_of,
    wall_from_epoch,
)

VERDICT_PROFILE = "paper"
MIN_SEEDS = 3
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NOT_RUN = "not run"
NO_CELL = "—"

VERDICT_RULE = (
    "Verdict rule: a cell is 'inconclusive' when it has fewer than 3 seeds (trials with status "
    "done), when its profile is not 'paper', when the paper gives no number for it, or when it "
    "pools trials of more than one configuration; otherwise it is 'reproduced' if "
    "gap = |our mean − paper value| ≤ bound = 2·sqrt(paper_pm² + (our_std/√n)²), else "
    "'not reproduced'. "
    "paper_pm is the paper's ± (0 where the paper gives none); our_std is the sample standard "
    "deviation (ddof=1) of the per-seed values over the n seeds. "
    "The bound uses these two terms only: paper_pm as printed (in Table 1, following the GAN "
    "paper, a standard error of one model's mean over test points on MNIST and across folds on "
    "TFD; not a spread over seeds) and our_std/√n (the standard error over seeds of our mean). "
    "Our own standard errors over test points and across TFD folds are shown in the cells but "
    "do not enter the bound."
)
CELL_NOTE = (
    "Our cells: mean ± std over seeds (status done only; std with ddof=1) and n seeds; in "
    "Table 1 written 'mean ± std (seed std, n=...)' and followed by the kind of ± the paper prints, "
    "averaged over the seeds: on MNIST 's.e. over test points', each seed's standard error of its "
    "mean log-likelihood over the test images (std/√N, the stderr of its row); on TFD 's.e. across "
    "folds', each seed's standard error across the 5 folds of its per-fold means (the stderr of "
    "its parzen_ll row, whose value is the mean over the folds); the profile (the most faithful one "
    "with done trials: paper, long, quick, smoke); the devices of the pooled trials (a trial id "
    "names no device: a CPU and a GPU trial of one config are one experiment, pooled); compute "
    "= core-h, the sum over the cell's trials (every status, each trial once) of wall-clock "
    "hours x threads x workers, a pack of S seeds trained as one model sharing its wall time "
    "(wall_s / seeds_per_trial per seed; a resumed trial counts each of its processes up to its "
    "last checkpoint, '≥' where rows of older code recorded only the last one), and GPU-h, "
    "wall-clock hours x workers of the trials "
    "on a CUDA device (a worker's share of a GPU is not recorded); diverged / error trial "
    "counts; the trend at the end of the validation curve (see the trend rule); the verdict. "
    "'not run': the study has this cell but no rows yet. '—': not part of the study / no number."
)


# --------------------------------------------------------------------------------------------
# Table layouts (data)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellSpec:
    """Which rows fill one of our cells: one grid, one metric, config fields equal to filters."""

    grid: str
    metric: str
    filters: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    key: str
    """Column key, shared with bench.paper (e.g. "mnist_10k")."""
    label: str
    ours: CellSpec | None
    """None: we do not run this cell (it holds another method's number only)."""
    stderr: str = "s.e. over test points"
    """What the stderr column of the cell's metric is (shown where the table has test_stderr)."""


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    caption: str
    columns: tuple[Column, ...]
    decimals: int
    """Decimals of our mean and std."""
    method: str = "AAE"
    """The paper's row that our row is compared with."""
    rules: tuple[tuple[str, str], ...] = ()
    """Protocol-card text: (name, rule) for model selection, cluster labelling, ..."""
    protocol_fields: tuple[str, ...] = ("data_split", "subset_hash", "epochs")
    """Row columns the protocol card lists per cell (their distinct values)."""
    per_seed: tuple[tuple[str, str], ...] = ()
    """(label, metric): a choice made per trial (the Parzen sigma, the selected epoch), listed
    per seed on the card."""
    test_stderr: bool = False
    """The metric's stderr column is a standard error over test points (Parzen): each cell
    shows its mean over seeds beside our spread over seeds."""
    note_keywords: tuple[str, ...] = ()
    """A source note bears on this table when its text or enclosing name has one of these."""
    higher_is_better: bool = False
    """The metric's direction (a log-likelihood: up; an error: down), for the gap's words."""

    @property
    def grids(self) -> list[str]:
        return sorted({c.ours.grid for c in self.columns if c.ours})


TFD_STDERR = "s.e. across folds"
_PARZEN_FIELDS = ("data_split", "epochs", "parzen_samples", "parzen_validation", "parzen_test",
                  "parzen_sigmas", "parzen_samples_large", "parzen_sigmas_large")
_LABEL_FIELDS = ("data_split", "subset_hash", "epochs")
# The rules as bench.trial applies them (train / _select_models / evaluate_seed): only the
# classification evaluation (labels given) selects a model; every other keeps the last epoch's.
_SELECT_ON_VALIDATION = (
    "per seed, the model after the epoch with the lowest classification error on the whole "
    "validation split (measured after every epoch; a tie keeps the earlier epoch); the test "
    "split is never read for the choice and is scored once, with the chosen model. The chosen "
    "epoch is the row selected_epoch, its validation error (%) the row "
    "classification_error_validation (both listed per seed above).")
_LAST_EPOCH = ("the model after the last epoch (no selection: no epoch is chosen, on any "
               "split).")
_SELECTION_ROWS = (("selected epoch", "selected_epoch"),
                   ("validation error of the selected model", "classification_error_validation"))

TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(
        key="table1",
        title="Table 1: Parzen-window log-likelihood of test data (nats, higher is better)",
        caption="Rows: methods; columns: data set and number of generated samples in the window.",
        columns=(
            Column("mnist_10k", "MNIST, 10K samples",
                   CellSpec("table1", "parzen_ll", {"dataset": "mnist"})),
            Column("tfd_10k", "TFD, 10K samples",
                   CellSpec("table1", "parzen_ll", {"dataset": "tfd"}), TFD_STDERR),
            Column("mnist_10m", "MNIST, 10M samples",
                   CellSpec("table1", "parzen_ll_10m", {"dataset": "mnist"})),
            Column("tfd_10m", "TFD, 10M samples",
                   CellSpec("table1", "parzen_ll_10m", {"dataset": "tfd"}), TFD_STDERR),
        ),
        decimals=1,
        rules=(
            ("Model selection", "none: the model after the last training epoch is evaluated "
             "(no early stopping, nothing chosen on the test split)."),
            ("Parzen protocol", "the GAN paper's (parzen_ll.py): sigma chosen on the first "
             "parzen_validation validation images as the grid value with the best mean "
             "log-likelihood; the test split (parzen_test images, 0 = all) scored once with it; "
             "± of a single trial is std/sqrt(N) over test images."),
            ("TFD", "the GAN protocol: one model per seed, trained on TFD's unlabelled images "
             "(never on a fold's validation or test image), scored on each of the 5 folds: sigma "
             "chosen on the fold's whole validation split (parzen_validation 0), the fold's test "
             "split scored once with it (rows parzen_ll_fold0..4); a trial's value is the mean over "
             "its folds and its ± the standard error across folds."),
        ),
        protocol_fields=_PARZEN_FIELDS,
        per_seed=(("chosen sigma", "parzen_sigma"),),
        test_stderr=True,
        note_keywords=("table 1", "table1", "parzen", "sigma", "log-likelihood", "tfd"),
        higher_is_better=True,
    ),
    "table2": TableSpec(
        key="table2",
        title="Table 2: semi-supervised classification error (%, lower is better)",
        caption="Rows: methods; columns: data set and number of labelled training examples.",
        columns=(
            Column("mnist_100", "MNIST, 100 labels",
                   CellSpec("table2", "classification_error", {"dataset": "mnist", "labels": 100})),
            Column("mnist_1000", "MNIST, 1000 labels",
                   CellSpec("table2", "classification_error",
                            {"dataset": "mnist", "labels": 1000})),
            Column("mnist_all", "MNIST, all labels",
                   CellSpec("table2", "classification_error", {"dataset": "mnist", "labels": 0})),
            Column("svhn_1000", "SVHN, 1000 labels",
                   CellSpec("table2", "classification_error",
                            {"dataset": "svhn", "labels": 1000})),
        ),
        decimals=2,
        rules=(("Model selection", _SELECT_ON_VALIDATION),
               ("Labelled subset", "seeded, class-balanced, drawn from the training split; "
                "its hash is listed per cell below")),
        protocol_fields=_LABEL_FIELDS,
        per_seed=_SELECTION_ROWS,
        note_keywords=("table 2", "table2", "classification", "semi-supervised", "labelled",
                       "labeled", "svhn"),
    ),
    "table3": TableSpec(
        key="table3",
        title="Table 3: unsupervised clustering error on MNIST (%, lower is better)",
        caption="Rows: methods; columns: number of clusters.",
        columns=(
            Column("clusters_16", "16 clusters",
                   CellSpec("table3", "clustering_error", {"dataset": "mnist", "clusters": 16})),
            Column("clusters_20", "20 clusters", None),
            Column("clusters_30", "30 clusters",
                   CellSpec("table3", "clustering_error", {"dataset": "mnist", "clusters": 30})),
        ),
        decimals=2,
        rules=(("Model selection", _LAST_EPOCH),
               ("Cluster labelling", "Section 5's rule (bench.metrics.clustering_error): each "
                "cluster takes the label of the validation example with the largest q(y_i|x); "
                "each test point takes the label of its argmax cluster.")),
        protocol_fields=_LABEL_FIELDS,
        note_keywords=("table 3", "table3", "clusters", "clustering"),
    ),
    "dim_reduction": TableSpec(
        key="dim_reduction",
        title="Dimensionality reduction (Section 7): test error (%, lower is better)",
        caption="Rows: methods; columns: the cells of the dim_reduction grid (2-D codes "
                "W_C y + z): semi-supervised with 100 and 1000 labels (classification error), "
                "unsupervised with 20 clusters (clustering error). The paper's error rates are "
                "unknown to us.",
        columns=(
            Column("mnist_100", "MNIST, 100 labels",
                   CellSpec("dim_reduction", "dim_reduction_error",
                            {"dataset": "mnist", "labels": 100})),
            Column("mnist_1000", "MNIST, 1000 labels",
                   CellSpec("dim_reduction", "dim_reduction_error",
                            {"dataset": "mnist", "labels": 1000})),
            Column("clusters_20", "MNIST, 20 clusters",
                   CellSpec("dim_reduction", "dim_reduction_error",
                            {"dataset": "mnist", "clusters": 20})),
        ),
        decimals=2,
        rules=(("Model selection", "100 and 1000 labels: as Table 2, " + _SELECT_ON_VALIDATION
                + " 20 clusters: as Table 3, " + _LAST_EPOCH),
               ("Cluster labelling", "20 clusters: as Table 3 (bench.metrics.dim_reduction_error "
                "is clustering_error); with labels, classification_error.")),
        protocol_fields=_LABEL_FIELDS,
        per_seed=_SELECTION_ROWS,
        note_keywords=("dimensionality", "dim_reduction", "dim-reduction", "dimreduction",
                       "section 7", "head_"),
    ),
}


def table_spec(name: str) -> TableSpec:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
    return TABLES[name]


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


def judge(mean: float, std: float, n: int, profile: str | None, paper_value: float | None,
          paper_pm: float | None = None) -> tuple[str, str]:
    """(verdict, reason) by VERDICT_RULE (the mixed-configuration case is the caller's)."""
    if paper_value is None:
        return INCONCLUSIVE, "no paper number"
    if n < MIN_SEEDS:
        return INCONCLUSIVE, f"n={n} < {MIN_SEEDS} seeds"
    if profile != VERDICT_PROFILE:
        return INCONCLUSIVE, f"profile {profile}, not {VERDICT_PROFILE}"
    if not math.isfinite(mean):
        return INCONCLUSIVE, "no finite mean"
    spread = 0.0 if not math.isfinite(std) else std / math.sqrt(n)
    bound = 2.0 * math.sqrt((paper_pm or 0.0) ** 2 + spread**2)
    gap = abs(mean - paper_value)
    if gap <= bound:
        return REPRODUCED, f"gap {gap:.3g} ≤ bound {bound:.3g}"
    return NOT_REPRODUCED, f"gap {gap:.3g} > bound {bound:.3g}"


def verdict(mean: float, std: float, n: int, profile: str | None, paper_value: float | None,
            paper_pm: float | None = None) -> str:
    return judge(mean, std, n, profile, paper_value, paper_pm)[0]


# --------------------------------------------------------------------------------------------
# Rows -> one cell
# --------------------------------------------------------------------------------------------

_POOL_IGNORE = {"seed", "grid", "profile", "fold"}


def _is_gpu(device, gpu) -> bool:
    return str(device).startswith("cuda") or (
        str(device) not in ("cpu", "nan", "") and bool(gpu) and str(gpu) != "nan")


@dataclass(frozen=True)
class Compute:
    """What a cell's trials cost (see CELL_NOTE)."""

    core_hours: float
    gpu_hours: float
    trials: int
    unknown: int
    """Trials left out: no wall_s, threads or workers recorded."""
    partial: int = 0
    """Trials whose wall_s misses the time before a resume (rows of older code,
    bench.results.wall_from_epoch): the hours are then a lower bound."""

    @property
    def text(self) -> str:
        if self.trials == self.unknown:
            return "compute unknown"
        out = f"{'≥ ' if self.partial else ''}{self.core_hours:.3g} core-h"
        if self.gpu_hours:
            out += f", {self.gpu_hours:.3g} GPU-h"
        if self.partial:
            out += (f" ({self.partial} of {self.trials} trials resumed by older code, which recorded "
                    "only the last process's time)")
        if self.unknown:
            out += f" ({self.unknown} of {self.trials} trials without wall_s / threads left out)"
        return out


def _number(row: Mapping, column: str, default: float | None = None) -> float | None:
    value = pd.to_numeric(row.get(column, default), errors="coerce")
    return default if pd.isna(value) else float(value)


def compute_hours(trials: pd.DataFrame) -> Compute:
    """core-h = sum over trials (each trial_id once) of wall_s / seeds_per_trial x threads x
    workers / 3600; GPU-h the same without threads, over the trials on a CUDA device."""
    per_trial = trials.drop_duplicates("trial_id").to_dict("records") if len(trials) else []
    core = gpu = 0.0
    unknown = partial = 0
    for row in per_trial:
        wall, threads = _number(row, "wall_s"), _number(row, "threads")
        workers, pack = _number(row, "workers", 1.0), _number(row, "seeds_per_trial", 1.0)
        if wall is None or threads is None:
            unknown += 1
            continue
        partial += wall_from_epoch(row) > 0
        share = wall / max(pack, 1.0) * workers / 3600.0  # a pack's seeds share its wall time
        core += share * threads
        if _is_gpu(row.get("device", ""), row.get("gpu", "")):
            gpu += share
    return Compute(core, gpu, len(per_trial), unknown, partial)


def device_mix(trials: pd.DataFrame) -> str:
    """The devices of a cell's trials (each trial once), by kind ("cuda:0" is "cuda"): "cpu x3"
    when one kind, else "cuda 2 + cpu 1" (most trials first); "" when there are none."""
    if trials.empty:
        return ""
    devices = (trials.drop_duplicates("trial_id")["device"] if "device" in trials.columns
               else pd.Series("", index=trials.drop_duplicates("trial_id").index))
    kinds = Counter(str(d).split(":")[0] if pd.notna(d) and str(d) else "unknown"
                    for d in devices)
    if len(kinds) == 1:
        (kind, n), = kinds.items()
        return f"{kind} x{n}"
    return " + ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class CellResult(stats.PerSeedValues):
    """Our numbers for one cell at one profile (the most faithful one present)."""

    spec: CellSpec
    profile: str | None
    seeds: list[int]
    values: list[float]
    failed: dict[str, int]
    compute: Compute
    other_profiles: dict[str, int]
    configs: int
    trials: pd.DataFrame
    """Every row (all metrics, all statuses) of the cell's trials at `profile`."""
    stderrs: list[float] = field(default_factory=list)
    """Per seed (as `values`): the metric's stderr column (over test points; across folds for
    TFD, whose value is already the mean over its folds)."""
    versions: tuple[float, float] | None = None
    """(training, evaluator) version of the pooled rows (bench.versions; -1: not recorded)."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Rows of the metric at `profile` made by other code versions, left out: {versions: n}."""
    rerun: str = ""
    """The command that re-runs the left-out trials with the current code."""
    devices: str = ""
    """The device mix of the done trials pooled (device_mix)."""

    @property
    def test_stderr(self) -> float:
        """The mean over seeds of the per-seed stderr (NaN when no seed has one)."""
        finite = [s for s in self.stderrs if math.isfinite(s)]
        return float(np.mean(finite)) if finite else math.nan


def summarize(frame: pd.DataFrame, spec: CellSpec) -> CellResult | None:
    """Our cell from the rows, or None ("not run") when no row of its grid, filters and metric
    exists. The cell's trials are those with a row of the metric (any status: diverged and error
    rows carry the primary metric) at the most faithful profile present."""
    rows = select(frame, spec.grid, spec.filters)
    if rows.empty or not (rows["metric"] == spec.metric).any():
        return None
    rows = rows[rows["trial_id"].isin(rows.loc[rows["metric"] == spec.metric, "trial_id"])]
    profiles = rows["profile"].astype(str)
    # The most faithful profile with a done value; a profile whose trials all failed shows
    # only where no profile has one.
    valued = (rows["metric"] == spec.metric) & (rows["status"] == "done") \
        & pd.to_numeric(rows["value"], errors="coerce").notna()
    profile = pick_profile(profiles[valued]) or pick_profile(profiles)
    at = rows[profiles == profile]
    others = {p: int(g["trial_id"].nunique()) for p, g in rows.groupby(profiles) if p != profile}
    # One training and one evaluator version per cell (bench.versions): the newest's rows.
    metric_rows = at[at["metric"] == spec.metric]
    at, versions = newest_versions(at)
    older = metric_rows.drop(index=at.index.intersection(metric_rows.index))
    left_out = {
        f"training version {version_name(t)}, evaluator version {version_name(e)}": int(n)
        for (t, e), n in older.groupby([versions_of(older, "training_version"),
                                        versions_of(older, "evaluator_version")]).size().items()}
    dataset = spec.filters.get("dataset")
    rerun = (f"aae-bench run {spec.grid} --profile {profile} --seeds "
             f"{int(pd.to_numeric(rows['seed']).max()) + 1}"
             + (f" --dataset {dataset}" if dataset else "")) if left_out else ""
    done = at[(at["metric"] == spec.metric) & (at["status"] == "done")]
    done = done[pd.to_numeric(done["value"], errors="coerce").notna()].sort_values("seed")
    per_trial_status = at.drop_duplicates("trial_id")["status"].value_counts()
    failed = {s: int(per_trial_status.get(s, 0)) for s in ("diverged", "error")
              if per_trial_status.get(s, 0)}
    cols = [c for c in CONFIG_FIELDS if c in done.columns and c not in _POOL_IGNORE]
    configs = int(done[cols].astype(str).drop_duplicates().shape[0]) if cols and len(done) else 0
    # One trial per seed (a TFD trial scores every fold itself: its value is their mean).
    values = pd.to_numeric(done["value"]).groupby(done["seed"].astype(int)).mean()
    stderrs = (pd.to_numeric(done["stderr"], errors="coerce").groupby(done["seed"].astype(int))
               .mean().reindex(values.index) if "stderr" in done.columns else None)
    return CellResult(
        spec=spec, profile=profile, seeds=[int(s) for s in values.index],
        values=[float(v) for v in values],
        failed=failed, compute=compute_hours(at), other_profiles=others, configs=configs,
        trials=at,
        stderrs=[] if stderrs is None else [float(s) for s in stderrs],
        versions=versions, left_out=left_out, rerun=rerun,
        devices=device_mix(done) or device_mix(at),
    )


# --------------------------------------------------------------------------------------------
# A table as display strings
# --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    lines: list[str]
    verdict: str = ""
    kind: str = "paper"
    """"paper", "ours", "empty" or "not_run" (for styling)."""


@dataclass
class TableView:
    spec: TableSpec
    header: list[str]
    rows: list[tuple[str, list[Cell]]]
    results: dict[str, CellResult | None]
    sources: list[str]
    marks: list[str]
    curves: dict[str, curves.CellCurve] = field(default_factory=dict)
    """Per column key with results: the cell's validation curves (build_view's results_dir)."""


def _fmt(x: float, decimals: int) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{decimals}f}"


def paper_cell(number: paper.PaperNumber | None) -> Cell:
    if number is None:
        return Cell([NO_CELL], kind="empty")
    if number.value is None:
        return Cell(["unknown to us" + number.mark], kind="paper")
    return Cell([number.printed + number.mark], kind="paper")


def cell_verdict(spec: TableSpec, column: Column, result: CellResult) -> tuple[str, str]:
    """(verdict, reason) of our cell by VERDICT_RULE, pooled configurations included."""
    number = paper.paper_number(spec.key, spec.method, column.key)
    value = number.value if number else None
    pm = number.pm if number else None
    if result.configs > 1:
        return INCONCLUSIVE, f"{result.configs} configurations pooled"
    return judge(result.mean, result.std, result.n, result.profile, value, pm)


def precision(result: CellResult) -> float:
    """The standard error of a cell's number as one seed measures it: its stderr column (over
    test points; across folds on TFD), mean over seeds; for an error rate (%) without one, the
    binomial 100 sqrt(p (1 - p) / n) at the cell's mean over its n test images; else 0."""
    if math.isfinite(result.test_stderr):
        return result.test_stderr
    rows = result.trials[(result.trials["metric"] == result.spec.metric)
                         & (result.trials["status"] == "done")]
    n = pd.to_numeric(rows.get("n", pd.Series(dtype=float)), errors="coerce").mean()
    if result.spec.metric.endswith("_error") and result.n and n > 0 and math.isfinite(result.mean):
        p = min(max(result.mean / 100.0, 0.0), 1.0)
        return 100.0 * math.sqrt(p * (1.0 - p) / n)
    return 0.0


def trend_line(curve: curves.CellCurve | None) -> str | None:
    return None if curve is None else f"trend {curve.text()}"


def our_cell(spec: TableSpec, column: Column, result: CellResult | None,
             curve: curves.CellCurve | None = None) -> Cell:
    if column.ours is None:
        return Cell([NO_CELL], kind="empty")
    if result is None:
        return Cell([NOT_RUN], kind="not_run")
    d = spec.decimals
    std = "—" if not math.isfinite(result.std) else _fmt(result.std, d)
    spread = f"seed std, n={result.n}" if spec.test_stderr else f"n={result.n}"
    lines = [f"{_fmt(result.mean, d)} ± {std} ({spread})" if result.n else "no done trial"]
    if spec.test_stderr and result.n:
        test = result.test_stderr
        lines.append(f"{column.stderr} {'—' if not math.isfinite(test) else _fmt(test, d)}"
                     " (mean over seeds)")
    lines += [f"profile {result.profile}", f"devices {result.devices or 'unknown'}",
              result.compute.text]
    if result.failed:
        lines.append(", ".join(f"{k} {s}" for s, k in result.failed.items()))
    if result.left_out:
        lines.append(f"{sum(result.left_out.values())} rows of older code left out "
                     f"({'; '.join(result.left_out)}): re-run them with `{result.rerun}`")
    trend = trend_line(curve)
    if trend:
        lines.append(trend)
    outcome, reason = cell_verdict(spec, column, result)
    lines.append(f"{outcome} ({reason})")
    return Cell(lines, verdict=outcome, kind="ours")


def build_view(spec: TableSpec, frame: pd.DataFrame,
               results_dir: str | os.PathLike | None = None) -> TableView:
    """The table as display strings: the paper's methods, then ours, column by column. With
    `results_dir` (where the trials' artifacts are), each cell also gets its validation curves
    and states its trend at the end."""
    results = {c.key: (summarize(frame, c.ours) if c.ours else None) for c in spec.columns}
    cell_curves = {} if results_dir is None else {
        c.key: curves.cell_curve(results_dir, results[c.key].trials, c.ours.metric, c.ours.grid,
                                 precision(results[c.key]))
        for c in spec.columns if results[c.key] is not None}
    rows: list[tuple[str, list[Cell]]] = []
    # Other methods in the paper's order, then the paper's row of our method right above ours.
    methods = [m for m in paper.paper_rows(spec.key) if m != spec.method] + [spec.method]
    for method in methods:
        cells = [paper_cell(paper.paper_number(spec.key, method, c.key)) for c in spec.columns]
        rows.append((f"{method} (paper)", cells))
    rows.append((f"{spec.method} (ours)",
                 [our_cell(spec, c, results[c.key], cell_curves.get(c.key))
                  for c in spec.columns]))
    labels = {c.key: c.label for c in spec.columns}
    sources: dict[tuple[str, str], list[str]] = {}
    for number in paper.PAPER_NUMBERS:
        if number.table == spec.key and number.column in labels:
            sources.setdefault((number.row, number.source), []).append(labels[number.column])
    source_lines = [f"{row} ({'; '.join(cols)}): {src}" for (row, src), cols in sources.items()]
    marks = []
    if any(n.table == spec.key and not n.checked for n in paper.PAPER_NUMBERS):
        marks.append(f"{paper.UNCHECKED_MARK} {paper.UNCHECKED_NOTE}.")
    return TableView(spec, ["Method"] + [c.label for c in spec.columns], rows, results,
                     source_lines, marks, cell_curves)


# --------------------------------------------------------------------------------------------
# Protocol card
# --------------------------------------------------------------------------------------------


def _distinct(rows: pd.DataFrame, column: str) -> list[str]:
    if column not in rows.columns:
        return []
    values = [v for v in pd.unique(rows.drop_duplicates("trial_id")[column]) if pd.notna(v)]
    return [_short_list(v) if column in ("parzen_sigmas", "parzen_sigmas_large") else str(v)
            for v in values if str(v) != ""]


def _sigma_on_edge(trials: pd.DataFrame, metric: str) -> str | None:
    """Card text naming the trials of a Parzen cell whose chosen sigma sits on an edge of its
    grid (rows parzen_sigma[_10m]_on_edge[_fold<k>], bench.evaluate); None for other metrics."""
    if not metric.startswith("parzen_ll"):
        return None
    flag = metric.replace("parzen_ll", "parzen_sigma", 1) + "_on_edge"
    names = trials["metric"].astype(str)
    folds = names.str[len(flag) + len("_fold"):]
    rows = trials[((names == flag) | (names.str.startswith(flag + "_fold") & folds.str.isdigit()))
                  & (trials["status"] == "done")]
    if rows.empty:
        return "sigma on the edge of its grid: not recorded (rows made before the flag existed)"
    up = rows[pd.to_numeric(rows["value"], errors="coerce") == 1.0].sort_values(["seed", "metric"])
    which = [f"seed {int(r.seed)}" + (f" fold {str(r.metric)[len(flag) + 5:]}"
                                      if str(r.metric) != flag else "") for r in up.itertuples()]
    return ("sigma on the edge of its grid (the likelihood may peak outside it): "
            + (", ".join(which) if which else f"none of {len(rows)} chosen sigmas"))


def _per_fold(trials: pd.DataFrame, metric: str) -> dict[int, dict[int, float]]:
    """{fold: {seed: value}} of the done rows of `metric`_fold<k> (TFD), folds in order."""
    names = trials["metric"].astype(str)
    prefix = f"{metric}_fold"
    found = trials[names.str.startswith(prefix) & names.str[len(prefix):].str.isdigit()
                   & (trials["status"] == "done")]
    out: dict[int, dict[int, float]] = {}
    for row in found.itertuples():
        out.setdefault(int(str(row.metric)[len(prefix):]), {})[int(row.seed)] = float(row.value)
    return dict(sorted(out.items()))


def _short_list(value) -> str:
    try:
        items = json.loads(value) if isinstance(value, str) else list(value)
    except (TypeError, ValueError):
        return str(value)
    return "[" + ", ".join(f"{float(x):.3g}" for x in items) + f"] ({len(items)} values)"


def notes_for(spec: TableSpec, notes: list[tags.Note]) -> list[tags.Note]:
    """The notes that bear on one table: those naming its keywords, and those naming no table's."""
    every = {k for t in TABLES.values() for k in t.note_keywords}
    return tags.notes_for(notes, spec.note_keywords, every)


def protocol_card(view: TableView, notes: list[tags.Note]) -> list[tuple[str, str]]:
    """(label, text) items: per cell the protocol values of its rows, then rules and notes."""
    spec = view.spec
    items: list[tuple[str, str]] = []
    for column in spec.columns:
        if column.ours is None:
            continue
        result = view.results.get(column.key)
        if result is None:
            items.append((column.label, f"{NOT_RUN} (grid {column.ours.grid}, metric "
                                        f"{column.ours.metric})"))
            continue
        parts = [f"grid {column.ours.grid}, metric {column.ours.metric}",
                 f"profile {result.profile}",
                 "seeds " + (", ".join(map(str, result.seeds)) or "none done"),
                 f"devices {result.devices or 'unknown'}", f"compute {result.compute.text}"]
        for name in spec.protocol_fields:
            values = _distinct(result.trials, name)
            if values:
                parts.append(f"{name} {' | '.join(values)}")
        per_fold = _per_fold(result.trials, column.ours.metric)
        if per_fold:
            parts.append("per fold, mean over seeds: " + ", ".join(
                f"fold {k} {_fmt(float(np.mean(list(v.values()))), spec.decimals)}"
                for k, v in per_fold.items()))
        edge = _sigma_on_edge(result.trials, column.ours.metric)
        if edge:
            parts.append(edge)
        for label, metric in spec.per_seed:
            chosen = result.trials[(result.trials["metric"] == metric)
                                   & (result.trials["status"] == "done")].sort_values("seed")
            if not chosen.empty:
                parts.append(f"{label} per seed: " + ", ".join(
                    f"seed {int(r.seed)}: {float(r.value):.4g}" for r in chosen.itertuples()))
            by_fold = _per_fold(result.trials, metric)
            if by_fold:
                seeds = sorted({s for v in by_fold.values() for s in v})
                parts.append(f"{label} per seed and fold (folds {', '.join(map(str, by_fold))}): "
                             + ", ".join(f"seed {s}: " + " / ".join(
                                 f"{v[s]:.4g}" if s in v else "—" for v in by_fold.values())
                                 for s in seeds))
        curve = view.curves.get(column.key)
        if curve is not None:
            parts.append(f"validation curve: {curve.metric or 'none'}; {trend_line(curve)}"
                         + (f" ({curve.note})" if curve.note else ""))
        if result.versions is not None:
            parts.append(f"training version {version_name(result.versions[0])}, evaluator "
                         f"version {version_name(result.versions[1])}")
        if result.other_profiles:
            parts.append("also in results (not shown): " + ", ".join(
                f"{p} ({k} trials)" for p, k in sorted(result.other_profiles.items())))
        if result.configs > 1:
            parts.append(f"WARNING: {result.configs} distinct configurations pooled")
        items.append((column.label, "; ".join(parts)))
    items.extend(spec.rules)
    bearing = notes_for(spec, notes)
    items.append(("Caveats tagged in the code", f"{len(bearing)} note(s) bear on this table"
                  + ("" if bearing else " (none found)")))
    for note in bearing:
        where = note.where() + (f" ({note.context})" if note.context else "")
        items.append((f"{note.tag} {where}", note.text))
    return items


def tables_for_grid(grid: str) -> list[str]:
    """Keys of the tables that one of whose cells reads `grid`."""
    return [key for key, spec in TABLES.items() if grid in spec.grids]
