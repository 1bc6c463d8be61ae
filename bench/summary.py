"""The report's opening summary (#16 part 4): one row per cell of every table, with our number,
the paper's, the gap, the verdict, the trend at the end of the validation curve, the profile,
the seeds, the devices and the compute, as display strings (bench.render writes them).

Every string comes from the tables' views (bench.tables.build_view with the results directory,
so that each cell has its curves): the summary says nothing the tables below it do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench import curves, paper, tables

NOT_IN_STUDY = "not part of the study (another method's number only)"

SUMMARY_NOTE = (
    "One row per cell of every table below. Ours: mean ± standard error over seeds (the sample "
    "std over seeds, ddof=1, over √n; the tables show mean ± std) and n seeds, at the profile "
    "named (the most faithful profile with done trials). Paper: the paper's number for the AAE "
    "row as printed, on the test split, with its source (bench.paper). Gap: ours − paper, "
    "'better' or 'worse' by the metric's direction. Verdict: the tables' verdict rule (a "
    "profile other than 'paper' is inconclusive; its gap and trend are still shown). Seeds: "
    "the done seeds pooled, with failed trial counts. Devices: the device of each pooled trial. "
    "Compute: core-hours (and GPU-hours) of every trial of the cell, as in the tables.")


@dataclass(frozen=True)
class SummaryRow:
    table: str
    """The table's key (bench.tables.TABLES), for links."""
    table_name: str
    """"Table 1", ... (the table title up to its colon)."""
    column: str
    """The column's key, for links."""
    cell: str
    ours: str
    paper: str
    gap: str
    verdict: str
    trend: str
    profile: str
    seeds: str
    devices: str
    compute: str
    drawn: bool = False
    """The cell has a curve figure (its anchor is curve_anchor(table, column))."""


def curve_anchor(table: str, column: str) -> str:
    return f"curve-{table}-{column}"


def _table_name(spec: tables.TableSpec) -> str:
    return spec.title.split(":")[0]


def _fmt(x: float, decimals: int) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{decimals}f}"


def ours_text(result: tables.CellResult, decimals: int) -> str:
    if not result.n:
        return "no done trial"
    stderr = result.std / math.sqrt(result.n) if result.n > 1 else math.nan
    return f"{_fmt(result.mean, decimals)} ± {_fmt(stderr, decimals)} (s.e., n={result.n})"


def paper_text(number: paper.PaperNumber | None) -> str:
    if number is None:
        return "—"
    printed = number.printed if number.value is not None else "unknown to us"
    return f"{printed}{number.mark} (the paper's; source: {number.source})"


def gap_text(mean: float, number: paper.PaperNumber | None, spec: tables.TableSpec) -> str:
    if number is None or number.value is None or not math.isfinite(mean):
        return "—"
    gap = mean - number.value
    if gap == 0:
        return f"{0:.{spec.decimals}f}"
    better = (gap > 0) == spec.higher_is_better
    return f"{gap:+.{spec.decimals}f} ({'better' if better else 'worse'} than the paper)"


def seeds_text(result: tables.CellResult) -> str:
    text = f"{result.n}" + (f" ({', '.join(map(str, result.seeds))})" if result.seeds else "")
    if result.failed:
        text += "; " + ", ".join(f"{k} {s}" for s, k in result.failed.items())
    return text


def profile_text(result: tables.CellResult) -> str:
    others = ", ".join(f"{p} ({k} trials)" for p, k in sorted(result.other_profiles.items()))
    return f"{result.profile}" + (f" (also in results: {others})" if others else "")


def row_for(view: tables.TableView, column: tables.Column) -> SummaryRow:
    spec = view.spec
    number = paper.paper_number(spec.key, spec.method, column.key)
    head = (spec.key, _table_name(spec), column.key, column.label)
    if column.ours is None:
        return SummaryRow(*head, NOT_IN_STUDY, paper_text(number), "—", "—", "—", "—", "—",
                          "—", "—")
    result = view.results.get(column.key)
    if result is None:
        return SummaryRow(*head, tables.NOT_RUN, paper_text(number), "—", tables.NOT_RUN, "—",
                          "—", "0", "—", "—")
    outcome, reason = tables.cell_verdict(spec, column, result)
    curve = view.curves.get(column.key)
    trend = curve.text() if curve is not None else "—"
    return SummaryRow(*head, ours_text(result, spec.decimals), paper_text(number),
                      gap_text(result.mean, number, spec), f"{outcome} ({reason})", trend,
                      profile_text(result), seeds_text(result), result.devices or "unknown",
                      result.compute.text, curve is not None and curve.drawn)


def summary_rows(views: Iterable[tables.TableView]) -> list[SummaryRow]:
    """Every column of every view, in the tables' order."""
    return [row_for(view, column) for view in views for column in view.spec.columns]


HEADER = ("Table", "Cell", "Ours (mean ± s.e. over seeds)", "Paper (AAE row, test split)", "Gap",
          "Verdict", "Trend at the end (validation)", "Profile", "Seeds", "Devices", "Compute")


def cells_of(row: SummaryRow) -> tuple[str, ...]:
    """The row's strings in HEADER order."""
    return (row.table_name, row.cell, row.ours, row.paper, row.gap, row.verdict, row.trend,
            row.profile, row.seeds, row.devices, row.compute)


RULES = (SUMMARY_NOTE, curves.FLAT_RULE)
