"""The sensitivity study (issue #17): how far does each choice the paper leaves open move its number?

Every row of `bench.grids.SENSITIVITY` is one open choice of a cell (Table 1 MNIST, Table 2 MNIST
with 100 labels), varied from our default with the rest held fixed. Its rows are paired with
the rows of the cell's default at the same profile, which is the table's own trial (same trial
id), so a table's run serves as the baseline. Rows pair by trial id and cell key, not by the
`grid` column.

The statistic is the change of the cell's mean metric, varied − default, with a 95 % Welch t
interval over seeds (`bench.stats.welch_difference`: unequal variances, Welch-Satterthwaite
degrees of freedom; a bootstrap over 3 seeds would be too coarse). The verdict is "moves the
metric beyond seed noise" when the interval excludes 0, "not detectably" when it does not. It
needs MIN_SEEDS done seeds in each arm, of one (training, evaluator) code version common to
both arms.

`write_sensitivity_report(results_dir, out_dir)` writes reports/sensitivity.md, .html and
figures/sensitivity.png (one row per choice, sorted by |effect| within each cell, profile and precision,
since the cells' metrics have different units). It writes nothing when no varied trial has rows.
This study changes no default.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import paper, stats
from bench.config import PRECISIONS, PROFILES
from bench.evaluate import primary_metric
from bench.grids import (
    SCALE,
    SENSITIVITY,
    SENSITIVITY_CELLS,
    SensitivityCell,
    SensitivityChoice,
    sensitivity_defaults,
    vary,
)
from bench.results import PROFILE_RANK, trial_cells, versions_of

MIN_SEEDS = 3
LEVEL = 0.95
FIGURE = "figures/sensitivity.png"
NOT_RUN = "not run yet"
DEFAULT_NOT_RUN = "default not run yet"
NO_COMMON_VERSION = "no code version common to both arms"
ALL_DIVERGED = "every seed diverged"
CAVEAT = ("Effects measured at a short profile may differ at the paper's length: each row names "
          "the profile and epochs it was measured at; the paper's runs are far longer "
          f"(the `paper` profile: {SCALE['paper']['epochs']} epochs), and a choice that does not "
          "move the metric in a short run may move it in a long one, or the reverse.")
TITLE = "Sensitivity: the choices the paper leaves open"
NO_DEFAULT_CHANGES = "This study changes no default: our choices stay as they are (issue #17)."


@dataclass(frozen=True)
class Arm(stats.PerSeedValues):
    """One side of a comparison: the trials of one config (one per seed) at one code version."""

    values: tuple[float, ...]
    """The metric of each done seed, in seed order."""
    seeds: tuple[int, ...]
    trials: int
    """Trials with rows at all (done, diverged or failed)."""
    diverged: int
    failed: int
    core_hours: float
    """Sum over its trials of wall_s / seeds_per_trial x threads x workers / 3600 (the tables'
    compute column); NaN when no trial recorded its wall time and threads."""
    devices: str
    """Its trials' devices, e.g. "cpu x3"."""

    @property
    def compute(self) -> str:
        if not self.trials:
            return "—"
        return "not recorded" if not math.isfinite(self.core_hours) else f"{self.core_hours:.3g} core-h"


EMPTY_ARM = Arm((), (), 0, 0, 0, math.nan, "")


@dataclass(frozen=True)
class Effect:
    """One choice of one cell at one profile and precision, against the cell's default there."""

    cell: SensitivityCell
    choice: SensitivityChoice
    profile: str
    precision: str
    """The config's precision ("no" = fp32, "bf16"): both arms share it."""
    epochs: int
    metric: str
    default: Arm
    varied: Arm
    versions: tuple[float, float] | None
    """The (training, evaluator) version both arms were read at; None when they share none."""
    difference: stats.Difference | None
    """varied − default (Welch's t), when each arm has at least 2 done seeds."""
    paper_value: float | None

    @property
    def verdict(self) -> str:
        if not self.varied.trials:
            return NOT_RUN
        if not self.default.trials:
            return DEFAULT_NOT_RUN
        if self.versions is None:
            return NO_COMMON_VERSION
        if not self.varied.n and self.varied.diverged:
            return ALL_DIVERGED
        if min(self.default.n, self.varied.n) < MIN_SEEDS or self.difference is None:
            return (f"too few done seeds ({self.default.n} default, {self.varied.n} varied; "
                    f"{MIN_SEEDS} each needed)")
        return self.difference.verdict

    @property
    def delta(self) -> float:
        """varied − default; NaN until each arm has 2 done seeds of a common code version."""
        return self.difference.delta if self.difference else math.nan

    @property
    def paper_gap(self) -> float:
        """The paper's number minus our default's mean: the scale an effect is read against."""
        return math.nan if self.paper_value is None else self.paper_value - self.default.mean


# -- reading rows into effects ---------------------------------------------------------------


def _version_pairs(rows: pd.DataFrame) -> set[tuple[float, float]]:
    training, evaluator = versions_of(rows, "training_version"), versions_of(rows, "evaluator_version")
    return set(zip(training, evaluator, strict=True))


def _at_version(rows: pd.DataFrame, version: tuple[float, float]) -> pd.DataFrame:
    keep = ((versions_of(rows, "training_version") == version[0])
            & (versions_of(rows, "evaluator_version") == version[1]))
    return rows[keep]


def _number(rows: pd.DataFrame, column: str, default: float) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(default, index=rows.index)
    return pd.to_numeric(rows[column], errors="coerce")


def core_hours(rows: pd.DataFrame) -> float:
    """wall_s / seeds_per_trial x threads x workers / 3600, summed over trials (each once): a
    pack's seeds share its wall time. Trials without wall_s or threads are left out; NaN when
    none has them."""
    trials = rows.drop_duplicates("trial_id")
    hours = (_number(trials, "wall_s", math.nan) / _number(trials, "seeds_per_trial", 1.0).fillna(1.0).clip(lower=1)
             * _number(trials, "threads", math.nan) * _number(trials, "workers", 1.0).fillna(1.0) / 3600)
    return float(hours.sum()) if hours.notna().any() else math.nan


def devices(rows: pd.DataFrame) -> str:
    """The device kinds of the trials ("cuda:0" is "cuda"), each with its count: "cpu x3"."""
    trials = rows.drop_duplicates("trial_id")
    if trials.empty or "device" not in trials.columns:
        return ""
    kinds = trials["device"].map(lambda d: str(d).split(":")[0] if pd.notna(d) and str(d) else "unknown")
    return " + ".join(f"{kind} x{n}" for kind, n in kinds.value_counts().items())


def _arm(rows: pd.DataFrame, metric: str) -> Arm:
    """The arm of one config's rows (already of one code version)."""
    if rows.empty:
        return EMPTY_ARM
    status = rows.groupby("trial_id")["status"].agg(lambda s: "done" if (s == "done").all() else
                                                    ("diverged" if (s == "diverged").any() else "error"))
    done = rows[rows["trial_id"].isin(status[status == "done"].index) & (rows["metric"] == metric)]
    done = done.assign(value=pd.to_numeric(done["value"], errors="coerce"),
                       seed=pd.to_numeric(done["seed"], errors="coerce"))
    done = done[np.isfinite(done["value"])].sort_values("seed").drop_duplicates("trial_id")
    return Arm(tuple(float(v) for v in done["value"]), tuple(int(s) for s in done["seed"]),
               int(len(status)), int((status == "diverged").sum()), int((status == "error").sum()),
               core_hours(rows), devices(rows))


def _compare(default_rows: pd.DataFrame, varied_rows: pd.DataFrame, metric: str
             ) -> tuple[Arm, Arm, tuple[float, float] | None, stats.Difference | None]:
    """Both arms at the newest code version they share (each at its own newest when they share
    none), and their difference where each has 2 done seeds."""
    common = _version_pairs(default_rows) & _version_pairs(varied_rows)
    if common:
        version = max(common)
        default_rows, varied_rows = _at_version(default_rows, version), _at_version(varied_rows, version)
    else:
        version = None
        if not default_rows.empty:
            default_rows = _at_version(default_rows, max(_version_pairs(default_rows)))
        if not varied_rows.empty:
            varied_rows = _at_version(varied_rows, max(_version_pairs(varied_rows)))
    default, varied = _arm(default_rows, metric), _arm(varied_rows, metric)
    difference = None
    if version is not None and default.n >= 2 and varied.n >= 2:
        difference = stats.welch_difference(default.values, varied.values, LEVEL)
    return default, varied, version, difference


def _paper_value(cell: SensitivityCell) -> float | None:
    number = paper.paper_number(cell.paper_table, "AAE", cell.paper_column)
    return None if number is None else number.value


def row_cells(frame: pd.DataFrame) -> pd.Series:
    """Each row's cell key (its config's trial id at seed 0): how rows pair with the grid."""
    return frame["trial_id"].map(trial_cells(frame))


@functools.cache
def cell_configs(key: str, profile: str, precision: str = "no"):
    """The cell's default (seed 0) at `profile` and `precision` and each of its choices with its
    varied config (`aae-bench run sensitivity --precision bf16` sets the precision of both arms)."""
    default = dataclasses.replace(sensitivity_defaults(key, profile, 1)[0], precision=precision)
    return default, tuple((c, vary(default, c)) for c in SENSITIVITY if c.cell == key)


def precision_name(precision: str) -> str:
    """How the report names a config's precision: "fp32" for "no" (the CLI's spelling)."""
    return "fp32" if precision == "no" else precision


def measure(frame: pd.DataFrame, keys: pd.Series | None = None) -> list[Effect]:
    """Every choice of every cell at every profile and precision where at least one choice of
    that cell has rows; the choices without rows there are listed as "not run yet". Arms pair
    only at one precision: a bf16 choice is read against the bf16 default. `keys`: row_cells(frame)."""
    if frame.empty:
        return []
    keys = row_cells(frame) if keys is None else keys
    out = []
    for profile in PROFILES:
        for precision in PRECISIONS:
            for cell in SENSITIVITY_CELLS:
                default, varied = cell_configs(cell.key, profile, precision)
                if not keys.isin([v.trial_id for _, v in varied]).any():
                    continue
                metric = primary_metric(default)
                default_rows = frame[keys == default.trial_id]
                for choice, config in varied:
                    d, v, version, difference = _compare(default_rows, frame[keys == config.trial_id], metric)
                    out.append(Effect(cell, choice, profile, precision, default.epochs, metric, d, v,
                                      version, difference, _paper_value(cell)))
    return out


def _order(key: str, order: tuple[str, ...]) -> int:
    return order.index(key) if key in order else len(order)


def effects_frame(effects: list[Effect]) -> pd.DataFrame:
    """One row per choice, grouped by cell (in SENSITIVITY_CELLS order), profile (most
    faithful first) and precision (fp32 first), sorted by |varied − default| within each group,
    unmeasured rows last."""
    cell_keys = tuple(c.key for c in SENSITIVITY_CELLS)
    rows = []
    for e in effects:
        d = e.difference
        rows.append({
            "cell": e.cell.key, "choice": e.choice.name, "fields": e.choice.label,
            "profile": e.profile, "precision": precision_name(e.precision), "epochs": e.epochs,
            "metric": e.metric,
            "default_mean": e.default.mean, "default_std": e.default.std, "default_n": e.default.n,
            "varied_mean": e.varied.mean, "varied_std": e.varied.std, "varied_n": e.varied.n,
            "delta": e.delta, "low": d.low if d else math.nan,
            "high": d.high if d else math.nan, "stderr": d.stderr if d else math.nan,
            "p_value": d.p_value if d else math.nan, "verdict": e.verdict,
            "paper": e.paper_value, "paper_gap": e.paper_gap,
            "share_of_gap": e.delta / e.paper_gap if e.paper_gap else math.nan,
            "varied_diverged": e.varied.diverged, "varied_failed": e.varied.failed,
            "varied_compute": e.varied.compute, "varied_core_hours": e.varied.core_hours,
            "default_compute": e.default.compute, "devices": e.varied.devices,
            "source": e.choice.source,
            "_cell": _order(e.cell.key, cell_keys), "_profile": _order(e.profile, PROFILE_RANK),
            "_precision": _order(e.precision, PRECISIONS), "_size": abs(e.delta),
        })
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).sort_values(["_cell", "_profile", "_precision", "_size"],
                                           ascending=[True, True, True, False],
                                           na_position="last", kind="stable")
    return frame.drop(columns=["_cell", "_profile", "_precision", "_size"]).reset_index(drop=True)


# -- writing the report -----------------------------------------------------------------------


# Differences are rounded to 6 decimals before they are shown: a mean difference of equal
# values is 0, not the last bits of floating point (-8.9e-16).
def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{round(x, 6) + 0.0:.{digits}g}"


def _signed(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{round(x, 6) + 0.0:+.3g}"


def _arm_text(mean: float, std: float, n: int) -> str:
    if not n:
        return "—"
    return f"{_num(mean, 4)} ± {_num(std)} (n={n})" if n > 1 else f"{_num(mean, 4)} (n=1)"


def _delta_text(row) -> str:
    if not math.isfinite(row["delta"]):
        return "—"
    return f"{_signed(row['delta'])} [{_signed(row['low'])}, {_signed(row['high'])}]"


def _verdict_text(row) -> str:
    notes = []
    if row["varied_diverged"]:
        notes.append(f"{row['varied_diverged']} seed(s) diverged")
    if row["varied_failed"]:
        notes.append(f"{row['varied_failed']} failed")
    return row["verdict"] + (f" ({'; '.join(notes)})" if notes else "")


TABLE_HEADER = ("choice", "fields changed", "measured at", "varied: mean ± std (n)",
                "Δ varied − default [95 % CI]", "Δ / paper gap", "verdict", "compute (varied arm)",
                "where the value comes from")


def _table_cells(row) -> list[str]:
    return [row["choice"], row["fields"], f"{row['profile']} ({row['epochs']} epochs, {row['precision']})",
            _arm_text(row["varied_mean"], row["varied_std"], row["varied_n"]), _delta_text(row),
            _num(row["share_of_gap"], 2), _verdict_text(row),
            f"{row['varied_compute']}" + (f" on {row['devices']}" if row["devices"] else ""),
            row["source"]]


def _groups(frame: pd.DataFrame):
    """(cell, "profile, precision" label, rows) of each group of the table, in its order."""
    for (cell, profile, precision), rows in frame.groupby(["cell", "profile", "precision"], sort=False):
        yield cell, f"`{profile}` profile, {precision}", rows


def _group_intro(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    default = _arm_text(first["default_mean"], first["default_std"], first["default_n"])
    # Only the fp32 defaults are the tables' trials: the tables run at fp32 unless told otherwise.
    whose = "the table's own trials" if first["precision"] == "fp32" else f"the cell's config at {first['precision']}"
    text = f"Our default ({whose}): {first['metric']} {default}, {first['default_compute']}."
    if first["paper"] is not None and math.isfinite(first["paper"]):
        text += (f" The paper: {_num(first['paper'], 4)}; paper − our default = "
                 f"{_signed(first['paper_gap'])}, the scale each Δ is read against.")
    return text


def _intro(frame: pd.DataFrame) -> list[str]:
    """The report's opening paragraphs (the caveat's starts with CAVEAT)."""
    measured = ", ".join(sorted({f"`{p}` ({e} epochs, {x})" for p, e, x in zip(
        frame["profile"], frame["epochs"], frame["precision"], strict=True)}))
    total = frame.drop_duplicates(["cell", "profile", "precision", "choice"])["varied_core_hours"].sum()
    return [
        "Each open choice of Table 1's MNIST cell and Table 2's MNIST 100-label cell, varied one at a "
        "time from our default with every other field held fixed (`bench.grids.SENSITIVITY`; "
        "`aae-bench run sensitivity`). At fp32 the default of each cell is the table's own trial (same "
        "trial id), so its rows are the table's; at bf16 (`--precision bf16`) both arms run at bf16 "
        "and a choice is read only against the bf16 default.",
        f"Δ = mean(varied) − mean(default) of the cell's metric over seeds, with a {LEVEL:.0%} Welch's t "
        "interval (unequal variances, Welch-Satterthwaite degrees of freedom; `bench.stats`). Verdict: "
        f"\"{stats.BEYOND_NOISE}\" where the interval excludes 0, \"{stats.NOT_DETECTABLE}\" where it does "
        f"not; a verdict needs {MIN_SEEDS} done seeds in each arm, of one code version. Rows are sorted "
        "by |Δ| within each cell (the cells' metrics have different units); Δ / paper gap puts an "
        "effect on the scale of the paper's distance from our default (paper − default): positive "
        "where the choice moves our number towards the paper's, 1 where it would close the gap. The row whose averaged loss "
        "has its learning rate scaled by the pixel count takes the same steps as ours: it checks the "
        "study and should read \"not detectably\".",
        f"{CAVEAT} Measured here at: {measured}.",
        f"Compute of the varied trials: {total:.3g} core-h (each cell's default: in its section).",
        NO_DEFAULT_CHANGES,
    ]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(frame: pd.DataFrame, header: list[str]) -> str:
    """reports/sensitivity.md."""
    out = [*(f"> {line}  " for line in header), "", f"# {TITLE}", ""]
    for paragraph in _intro(frame):
        out += [f"**{paragraph}**" if paragraph.startswith(CAVEAT) else paragraph, ""]
    for cell, profile, rows in _groups(frame):
        out += [f"## {cell}, {profile}", "", _group_intro(rows), "",
                "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
        out += ["| " + " | ".join(_md_escape(c) for c in _table_cells(row)) + " |"
                for _, row in rows.iterrows()]
        out.append("")
    out += ["## Figure", "", f"![Effects of the open choices with their intervals]({FIGURE})", "",
            f"*{figure_caption()}*", ""]
    return "\n".join(out)


def figure_caption() -> str:
    return (f"Δ varied − default with its {LEVEL:.0%} Welch interval for each choice (blue), and the "
            "paper's number minus our default (grey bar) for scale; one panel per cell, profile and precision. "
            "Choices without an interval yet are not drawn.")


def html_page(frame: pd.DataFrame, header: list[str]) -> str:
    """reports/sensitivity.html (the same content as the Markdown)."""
    from bench.report import CSS  # the report's look; imported here, report imports this module

    def text(value) -> str:
        return html.escape(str(value), quote=False)

    def cells(values, tag="td"):
        return "".join(f"<{tag}>{text(v)}</{tag}>" for v in values)

    body = [f"<p><strong>{text(p)}</strong></p>" if p.startswith(CAVEAT) else f"<p>{text(p)}</p>"
            for p in _intro(frame)]
    for cell, profile, rows in _groups(frame):
        body += [f"<h2>{text(cell)}, {text(profile.replace('`', ''))}</h2>",
                 f"<p>{text(_group_intro(rows))}</p>", '<table class="paper-table">',
                 f"<tr>{cells(TABLE_HEADER, 'th')}</tr>"]
        body += [f"<tr>{cells(_table_cells(row))}</tr>" for _, row in rows.iterrows()]
        body.append("</table>")
    body += ['<figure id="fig-sensitivity">', f'<img src="{FIGURE}" alt="Effects of the open choices">',
             f"<figcaption>{text(figure_caption())}</figcaption></figure>"]
    comment = "\n".join(x.replace("--", "- -") for x in header)
    return (f"<!DOCTYPE html>\n<!--\n{comment}\n-->\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{TITLE}</title><style>{CSS}</style></head><body>\n<h1>{TITLE}</h1>\n"
            f'<div class="provenance">{"<br>".join(text(x) for x in header)}</div>\n'
            + "\n".join(body) + "\n</body></html>\n")


def draw_figure(frame: pd.DataFrame, out: Path) -> Path:
    """One panel per (cell, profile): each measured choice's Δ with its interval, under a grey
    bar for the paper's gap to our default."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = list(_groups(frame))
    measured = [rows[np.isfinite(rows["delta"].to_numpy(dtype=float))] for _, _, rows in groups]
    heights = [len(rows) + 1 for rows in measured]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.2 + 0.4 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (cell, profile, rows), shown in zip(axes[:, 0], groups, measured, strict=True):
        first = rows.iloc[0]
        y = np.arange(len(shown) + 1)[::-1]
        if math.isfinite(first["paper_gap"]):
            ax.barh(y[0], first["paper_gap"], color="0.8", height=0.6)
        delta = shown["delta"].to_numpy(dtype=float)
        errors = np.vstack([delta - shown["low"].to_numpy(dtype=float), shown["high"].to_numpy(dtype=float) - delta])
        ax.errorbar(delta, y[1:], xerr=errors, fmt="o", color="tab:blue", capsize=3)
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_yticks(y, ["paper − our default", *shown["choice"]], fontsize=8)
        ax.set_title(f"{cell}, {profile.replace('`', '')} ({first['epochs']} epochs)", fontsize=9)
        ax.set_xlabel(f"Δ {first['metric']} (varied − default)", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def write_sensitivity_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                             generator: str | None = None) -> list[Path]:
    """reports/sensitivity.md, sensitivity.html and figures/sensitivity.png from the rows under
    `results_dir`; the paths written, or [] (nothing written) when no varied trial has rows."""
    from bench.report import default_generator, provenance_lines
    from bench.results import read_rows

    frame = read_rows(results_dir)
    keys = row_cells(frame) if not frame.empty else pd.Series(dtype=object)
    effects = measure(frame, keys)
    if not effects:
        return []
    table = effects_frame(effects)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = provenance_lines(_rows_of(frame, keys, effects),
                              generator or default_generator(results_dir, out_dir))
    md, page = out_dir / "sensitivity.md", out_dir / "sensitivity.html"
    md.write_text(markdown(table, header), encoding="utf-8")
    page.write_text(html_page(table, header), encoding="utf-8")
    return [md, page, draw_figure(table, out_dir / FIGURE)]


def _rows_of(frame: pd.DataFrame, keys: pd.Series, effects: list[Effect]) -> pd.DataFrame:
    """The rows the study read (both arms of every measured choice), for the provenance header."""
    wanted = set()
    for e in effects:
        default, varied = cell_configs(e.cell.key, e.profile, e.precision)
        wanted |= {default.trial_id, *(v.trial_id for c, v in varied if c == e.choice)}
    return frame[keys.isin(wanted)]
