"""Does bf16 change the answer? fp32 against bf16 for every cell that has both (reports/precision.md).

A cell here is a config up to its seed and its precision. For each cell's primary metric
(bench.evaluate.primary_metric: Parzen log-likelihood, classification or clustering error), the
difference of the bf16 mean from the fp32 mean is judged against the seed spread with Welch's t
(bench.stats). The rule of issue #15: where the difference exceeds 2 standard errors, bf16 stays
off by default for that variant; the default precision is fp32 everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from bench import stats
from bench.evaluate import primary_metric
from bench.results import cell_key, config_of

PRECISIONS = ("no", "bf16")  # the config's names: "no" is fp32
MAX_STANDARD_ERRORS = 2.0


@dataclass(frozen=True)
class PrecisionComparison:
    cell: str
    """variant / data set / prior, and labels or clusters where they apply; profile; epochs."""
    variant: str
    metric: str
    fp32: tuple[float, ...]
    bf16: tuple[float, ...]
    difference: stats.Difference
    fp32_hours: float
    bf16_hours: float

    @property
    def bf16_allowed(self) -> bool:
        """bf16 did not move the metric by more than 2 standard errors of the difference."""
        return self.difference.standard_errors <= MAX_STANDARD_ERRORS

    @property
    def speedup(self) -> float:
        return self.fp32_hours / self.bf16_hours if self.bf16_hours else math.nan


def _label(config) -> str:
    parts = [f"{config.variant}/{config.dataset}/{config.prior}"]
    if config.labels is not None:
        parts.append(f"{config.labels} labels" if config.labels else "all labels")
    if config.clusters is not None:
        parts.append(f"{config.clusters} clusters")
    return " ".join(parts) + f", {config.profile} ({config.epochs} epochs)"


def _seed_hours(trials: pd.DataFrame) -> float:
    """Mean wall-clock hours of one seed."""
    # wall_s repeats on every metric row of a trial; a pack of S seeds repeats its own wall time
    # on each member, so a trial's share is wall_s / seeds_per_trial.
    per_trial = trials.drop_duplicates("trial_id")
    packs = pd.to_numeric(per_trial.get("seeds_per_trial", 1), errors="coerce").fillna(1)
    return float((pd.to_numeric(per_trial["wall_s"], errors="coerce") / packs).mean() / 3600)


def compare(frame: pd.DataFrame) -> list[PrecisionComparison]:
    """Every cell with done rows in both precisions (at least 2 seeds in each)."""
    done = frame[frame["status"] == "done"]
    cells: dict[str, dict[str, list[pd.DataFrame]]] = {}
    configs = {}
    for _, rows in done.groupby("trial_id", sort=False):
        config = config_of(rows.iloc[0].to_dict(), check_id=False)
        if config.precision not in PRECISIONS:
            continue
        key = cell_key(dataclasses.replace(config, precision="no"))
        configs.setdefault(key, config)
        cells.setdefault(key, {}).setdefault(config.precision, []).append(rows)
    out = []
    for key, by_precision in cells.items():
        if set(by_precision) != set(PRECISIONS):
            continue
        config = configs[key]
        metric = primary_metric(config)
        values = {}
        for precision, parts in by_precision.items():
            rows = pd.concat(parts)
            metric_rows = rows[rows["metric"] == metric].sort_values("seed")
            values[precision] = tuple(float(v) for v in metric_rows["value"])
        if min(len(v) for v in values.values()) < 2:
            continue
        difference = stats.welch_difference(values["no"], values["bf16"])
        out.append(PrecisionComparison(
            _label(config), config.variant, metric, values["no"], values["bf16"], difference,
            _seed_hours(pd.concat(by_precision["no"])), _seed_hours(pd.concat(by_precision["bf16"]))))
    return sorted(out, key=lambda c: c.cell)


def _mean_std(values: tuple[float, ...]) -> str:
    s = pd.Series(values)
    return f"{s.mean():.3f} ± {s.std(ddof=1):.3f} (n={len(values)})"


def markdown(comparisons: list[PrecisionComparison], header: list[str]) -> str:
    """reports/precision.md: one row per cell, then the rule and what it decides per variant."""
    lines = [*(f"<!-- {h} -->" for h in header), "# Does bf16 change the answer?", "",
             "fp32 against bf16 (`aae-bench run ... --precision bf16`), same configs and seeds. "
             "Difference = bf16 mean − fp32 mean of the cell's metric; its standard error and 95 % "
             "interval are Welch's t over the seeds (bench.stats). Rule (issue #15): where |difference| "
             f"exceeds {MAX_STANDARD_ERRORS:g} standard errors, bf16 stays off by default for that "
             "variant. That rule is stricter than Welch's 95 % interval over 3 seeds a side (2.8 "
             "to 4.3 standard errors at its 2-4 degrees of freedom), so the verdict column gives "
             "both. The default precision is fp32 for every variant either way; time is the "
             "trials' mean wall-clock hours per seed on the machine named above, under whatever else ran "
             "on it (not a benchmark: tests/benchmarks/test_bench_precision.py measures speed).", ""]
    if not comparisons:
        return "\n".join(lines + ["No cell has done rows in both precisions yet.", ""])
    lines += ["| cell | metric | fp32 | bf16 | difference [95 % CI] | |diff| / s.e. | verdict | "
              "hours fp32 / bf16 (speed-up) |",
              "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        d = c.difference
        lines.append(
            f"| {c.cell} | {c.metric} | {_mean_std(c.fp32)} | {_mean_std(c.bf16)} | "
            f"{d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | {d.standard_errors:.2f} | "
            f"{'within' if c.bf16_allowed else 'beyond'} {MAX_STANDARD_ERRORS:g} s.e. "
            f"(bf16 {'allowed' if c.bf16_allowed else 'off'}); Welch 95 %: {d.verdict} | "
            f"{c.fp32_hours:.2f} / {c.bf16_hours:.2f} ({c.speedup:.2f}x) |")
    lines += ["", "## What it decides", ""]
    for variant in sorted({c.variant for c in comparisons}):
        mine = [c for c in comparisons if c.variant == variant]
        if all(c.bf16_allowed for c in mine):
            lines.append(f"- `{variant}`: bf16 moved no measured cell beyond {MAX_STANDARD_ERRORS:g} "
                         f"standard errors ({len(mine)} cell(s)); it may be used for this variant's "
                         "long runs, recorded as a DEVIATION on the protocol card.")
        else:
            bad = ", ".join(c.cell for c in mine if not c.bf16_allowed)
            lines.append(f"- `{variant}`: bf16 moved {bad} beyond {MAX_STANDARD_ERRORS:g} standard "
                         "errors: bf16 stays off for this variant.")
    lines += ["", "Measured at the profile named in each cell: an effect at 10 epochs may differ at "
              "the paper's length.", ""]
    return "\n".join(lines)


def write(results_dir: str, out_path: str) -> str:
    """Read the rows under `results_dir`, write the comparison to `out_path`; return its text."""
    from pathlib import Path

    from bench.report import provenance_lines
    from bench.results import read_rows

    frame = read_rows(results_dir)
    if frame.empty:
        raise ValueError(f"no result rows under {results_dir}")
    command = f"python -m bench.precision {results_dir} {out_path}"
    text = markdown(compare(frame), provenance_lines(frame, command))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(text)
    return text


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.precision RESULTS_DIR OUT.md")
    try:
        print(write(sys.argv[1], sys.argv[2]))
    except ValueError as exc:
        sys.exit(f"bench.precision: error: {exc}")
