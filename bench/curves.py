"""A table cell's validation curves (#16 part 1): one per seed from its trials' curve.csv, and
the trend at the end in words, so that "still improving" and "converged short of the paper"
read differently.

The curve metric of a cell is the one its evaluation records each epoch
(bench.validation.CURVE_METRICS); a cell whose curves lack it falls back to the validation
reconstruction error (every variant records it), and says that this is not the paper's metric.
Curves written before validation metrics were recorded hold losses only: the cell then says so.
Nothing here is a reported number: the curves are on the validation split, the tables' numbers
on the test split.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench import validation
from bench.artifacts import trial_file
from bench.evaluate import evaluation_kind
from bench.results import config_of

CURVE_FILE = "curve.csv"
FALLBACK_METRIC = "validation_reconstruction_error"
IMPROVING, FLAT, WORSENING = "still improving", "flat", "worsening"
NO_VALIDATION = "no validation curve (run before curves were recorded)"
NO_CURVE = "no curve saved (the cell's trials have no curve.csv)"
TOO_SHORT = "no trend (fewer than two epochs on the curve)"
TREND_FRACTION = 0.1
FLAT_SCALE = 0.01
"""One term of the noise a change must exceed: 1 % of the range the curve covered."""

FLAT_RULE = (
    "Trend at the end: the change of the cell's validation curve metric over the last 10 % of "
    "its epochs (at least one epoch; bench.validation.trend), the mean over the cell's seeds. "
    "'flat' when its size is at most the noise of the cell, the largest of: the std over seeds "
    "(ddof=1) of the curve's last value; the precision of the cell's number (Table 1: its "
    "standard error over test points, or across folds on TFD, mean over seeds; an error rate: "
    "the binomial standard error 100·√(p(1−p)/n) at the cell's mean p % over its n test "
    "images); 1 % of the range the curve covered (max − min over its epochs, mean over seeds). "
    "A change within that noise moves the number less than the seeds disagree, than the number "
    "can resolve, or than a hundredth of what training moved it. Otherwise 'still improving' "
    "or 'worsening' by the metric's direction (up for a log-likelihood, down for an error). "
    "The curves are on the validation split; the tables' numbers on the test split.")

# The cell metrics a curve metric measures on the validation split (so the paper's number of
# such a cell may be drawn beside the curve).
MEASURES = {"validation_parzen_ll": {"parzen_ll"},
            "validation_error": {"classification_error", "dim_reduction_error"},
            "validation_clustering_error": {"clustering_error", "dim_reduction_error"}}


@dataclass(frozen=True)
class SeedCurve:
    seed: int
    trial_id: str
    epochs: tuple[float, ...]
    values: tuple[float, ...]
    change: float | None
    """bench.validation.trend of this seed's curve (None: fewer than two values)."""


@dataclass(frozen=True)
class CellCurve:
    """A cell's curves of one metric (none: `metric` None and `words` says why)."""

    metric: str | None
    seeds: tuple[SeedCurve, ...]
    words: str
    """IMPROVING, FLAT or WORSENING, or why there is no trend (NO_VALIDATION, NO_CURVE, ...)."""
    change: float | None = None
    """The mean over seeds of each seed's change over the last 10 % of its epochs."""
    tolerance: float | None = None
    """The size of change at or below which the trend is FLAT (see FLAT_RULE)."""
    measures_cell: bool = False
    """The curve metric is the cell's metric on the validation split (the paper's number may
    be drawn beside it)."""
    note: str = ""

    @property
    def drawn(self) -> bool:
        return self.metric is not None and bool(self.seeds)

    @property
    def epochs(self) -> int:
        return max((len(s.values) for s in self.seeds), default=0)

    def text(self, decimals: int = 3) -> str:
        """The trend as one phrase: "+1.2 over the last 10 % of 100 epochs: still improving"."""
        if self.change is None:
            return self.words
        within = (f" (noise {self.tolerance:.{decimals}g})" if self.tolerance is not None
                  else "")
        return (f"{self.change:+.{decimals}g} {self.metric} over the last "
                f"{round(TREND_FRACTION * 100)} % of {self.epochs} epochs: {self.words}{within}")


def words_for(change: float | None, metric: str, tolerance: float) -> str:
    """FLAT within `tolerance`, else IMPROVING / WORSENING by the metric's direction."""
    if change is None:
        return TOO_SHORT
    if abs(change) <= tolerance:
        return FLAT
    return IMPROVING if validation.improving(change, metric) else WORSENING


def flat_tolerance(seeds: list[tuple[float, ...]], precision: float = 0.0) -> float:
    """The noise of FLAT_RULE: max(std over seeds of their last values (0 for one seed), the
    cell number's `precision`, FLAT_SCALE x the mean over seeds of the range each curve
    covered); `seeds`: each seed's values, in epoch order."""
    last = np.asarray([v[-1] for v in seeds], dtype=np.float64)
    spread = float(last.std(ddof=1)) if len(last) > 1 else 0.0
    covered = float(np.mean([max(v) - min(v) for v in seeds]))
    return max(spread, precision if math.isfinite(precision) else 0.0, FLAT_SCALE * covered)


def seed_curve(frame: pd.DataFrame, metric: str, seed: int, trial_id: str) -> SeedCurve:
    values = pd.to_numeric(frame[metric], errors="coerce")
    keep = values.notna()
    epochs = (pd.to_numeric(frame["epoch"], errors="coerce")[keep] if "epoch" in frame.columns
              else pd.Series(np.arange(1, len(frame) + 1), index=frame.index)[keep])
    change = validation.trend(frame.to_dict("records"), metric, TREND_FRACTION)
    return SeedCurve(seed, trial_id, tuple(float(e) for e in epochs),
                     tuple(float(v) for v in values[keep]), change)


def _note(metric: str, cell_metric: str, fallback: bool, tfd: bool) -> str:
    note = _metric_note(metric, cell_metric, fallback)
    # bench.validation: a TFD curve reads fold 0's validation images; the cell is 5 folds' mean
    return note + ("; on TFD the curve reads fold 0's validation images, the cell is the mean "
                   "over 5 folds" if tfd and metric == "validation_parzen_ll" else "")


def _metric_note(metric: str, cell_metric: str, fallback: bool) -> str:
    if fallback:
        return (f"the curve metric ({metric}) is not the paper's metric ({cell_metric}): the "
                f"cell's trials did not record a validation curve of it")
    if metric == "validation_parzen_ll" and cell_metric == "parzen_ll_10m":
        return ("the curve metric (validation_parzen_ll) scores the trial's parzen_samples "
                "draws (the 10K column's window), not the paper's metric here (parzen_ll_10m, "
                "10M samples)")
    if cell_metric not in MEASURES.get(metric, set()):
        return f"the curve metric ({metric}) is not the paper's metric ({cell_metric})"
    if metric == "validation_parzen_ll":
        return ("validation split; sigma chosen on the images it scores (optimistic: for the "
                "trend, not a reported number)")
    return "validation split (the paper's number: test split)"


def cell_curve(results_dir: str | os.PathLike, trials: pd.DataFrame, cell_metric: str,
               grid: str, precision: float = 0.0) -> CellCurve:
    """The curves of a cell's done trials (`trials`: the cell's rows, e.g.
    bench.tables.CellResult.trials; `cell_metric`: its metric; `grid`: the grid it reads;
    `precision`: the standard error of the cell's number, a term of FLAT_RULE's noise)."""
    done = trials[(trials["metric"] == cell_metric) & (trials["status"] == "done")]
    done = done.drop_duplicates("trial_id").sort_values("seed")
    found: list[tuple[int, str, pd.DataFrame]] = []
    kinds, tfd = set(), False
    for row in done.to_dict("records"):
        config = config_of(row, check_id=False)
        kinds.add(evaluation_kind(config))
        tfd |= config.dataset.startswith("tfd")
        path = trial_file(results_dir, str(row["trial_id"]), (row["grid"], grid), CURVE_FILE)
        if path is not None:
            found.append((int(row["seed"]), str(row["trial_id"]), pd.read_csv(path)))
    if not found:
        return CellCurve(None, (), NO_CURVE)
    wanted = [validation.CURVE_METRICS[k] for k in sorted(kinds)]
    present = [m for m in (*wanted, FALLBACK_METRIC)
               if any(m in f.columns and f[m].notna().any() for _, _, f in found)]
    if not present:
        return CellCurve(None, (), NO_VALIDATION)
    metric = present[0]
    seeds = tuple(seed_curve(f, metric, s, t) for s, t, f in found if metric in f.columns)
    seeds = tuple(s for s in seeds if s.values)
    changes = [s.change for s in seeds if s.change is not None]
    change = float(np.mean(changes)) if changes else None
    if not seeds:
        return CellCurve(None, (), NO_VALIDATION)
    tolerance = flat_tolerance([s.values for s in seeds], precision)
    fallback = metric not in wanted
    return CellCurve(metric, seeds, words_for(change, metric, tolerance), change,
                     tolerance if math.isfinite(tolerance) else None,
                     not fallback and cell_metric in MEASURES.get(metric, set()),
                     _note(metric, cell_metric, fallback, tfd))
