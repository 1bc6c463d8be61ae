"""The paper's numbers (Makhzani et al. 2015) as data, each with where we got it.

We do not have the paper's PDF at hand, so no number below has been checked against it: every
entry has `checked=False`, the tables mark it (see `UNCHECKED_MARK`) and explain the mark under
the table. The `source` says how far each number is corroborated. Never add a number that no
source gives, and never "complete" a row: a cell the paper fills but we have no number for stays
empty here and is shown as such.

Keys: `table` is the report's table key ("table1", "table2", "table3", "dim_reduction"); `row` is
the method as printed; `column` is the table's column key (see bench.tables.TABLES).
"""

from __future__ import annotations

from dataclasses import dataclass

UNCHECKED_MARK = "†"
UNCHECKED_NOTE = (
    "not checked against the paper's PDF (not at hand to us); the source note says where the "
    "number comes from"
)
# A standing note that goes with every number until someone checks them against the PDF.
STANDING_NOTE = "Unchecked: copy from the PDF and set checked=True when verified."


@dataclass(frozen=True)
class PaperNumber:
    """One number of the paper's tables: value ± pm (pm None when the paper gives none)."""

    table: str
    row: str
    column: str
    value: float | None
    pm: float | None
    source: str
    checked: bool = False
    note: str = STANDING_NOTE
    printed: str = ""
    """The number as printed (trailing zeros kept: "1.90 ± 0.10")."""

    @property
    def mark(self) -> str:
        return "" if self.checked else UNCHECKED_MARK


_GAN_T1 = "as printed in the GAN paper's Table 1 (Goodfellow et al. 2014)"
_QUOTED = "quoted by later papers"


def _n(table: str, row: str, column: str, value: str | None, pm: str | None,
       source: str) -> PaperNumber:
    # Values are written as printed (strings) so that "1.90" keeps its trailing zero.
    printed = "" if value is None else value + ("" if pm is None else f" ± {pm}")
    return PaperNumber(table, row, column, None if value is None else float(value),
                       None if pm is None else float(pm), source, printed=printed)


PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    # -- Table 1: Parzen-window log-likelihood (nats), 10K samples ------------------------
    _n("table1", "DBN", "mnist_10k", "138", "2", _GAN_T1),
    _n("table1", "DBN", "tfd_10k", "1909", "66", _GAN_T1),
    _n("table1", "Stacked CAE", "mnist_10k", "121", "1.6", _GAN_T1),
    _n("table1", "Stacked CAE", "tfd_10k", "2110", "50", _GAN_T1),
    _n("table1", "Deep GSN", "mnist_10k", "214", "1.1", _GAN_T1),
    _n("table1", "Deep GSN", "tfd_10k", "1890", "29", _GAN_T1),
    _n("table1", "GAN", "mnist_10k", "225", "2", _GAN_T1),
    _n("table1", "GAN", "tfd_10k", "2057", "26", _GAN_T1),
    _n("table1", "GMMN+AE", "mnist_10k", "282", "2", _QUOTED),
    _n("table1", "GMMN+AE", "tfd_10k", "2204", "20", _QUOTED),
    _n("table1", "AAE", "mnist_10k", "340", "2", _QUOTED),
    _n("table1", "AAE", "tfd_10k", "2252", "16", _QUOTED),
    # -- Table 1: 10M samples (no ± known to us) ------------------------------------------
    _n("table1", "GAN", "mnist_10m", "386", None, "unchecked"),
    _n("table1", "AAE", "mnist_10m", "427", None, "unchecked"),
    _n("table1", "AAE", "tfd_10m", "2522", None, "unchecked"),
    # -- Table 2: semi-supervised classification error (%), AAE row only -------------------
    _n("table2", "AAE", "mnist_100", "1.90", "0.10", "quoted by several sources"),
    _n("table2", "AAE", "mnist_1000", "1.60", "0.08", "unchecked"),
    _n("table2", "AAE", "mnist_all", "0.85", "0.02", "value quoted; ± unchecked"),
    _n("table2", "AAE", "svhn_1000", "17.70", "0.30", "value quoted; ± unchecked"),
    # -- Table 3: unsupervised clustering error (%) ----------------------------------------
    _n("table3", "AAE", "clusters_16", "9.55", "2.05", "unchecked"),
    _n("table3", "AAE", "clusters_30", "4.10", "1.13", "unchecked"),
    _n("table3", "CatGAN", "clusters_20", "9.70", None, "unchecked"),
    # -- Section 7, dimensionality reduction: the error rates are unknown to us -----------
    *(_n("dim_reduction", "AAE", column, None, None,
         "the paper's dimensionality-reduction error rates are unknown to us; none quoted")
      for column in ("mnist_100", "mnist_1000", "clusters_20")),
)


def paper_number(table: str, row: str, column: str) -> PaperNumber | None:
    """The paper's number for one cell, or None when we have none."""
    for number in PAPER_NUMBERS:
        if (number.table, number.row, number.column) == (table, row, column):
            return number
    return None


def paper_rows(table: str) -> list[str]:
    """Methods of one table, in the order listed above (the paper's order)."""
    rows: list[str] = []
    for number in PAPER_NUMBERS:
        if number.table == table and number.row not in rows:
            rows.append(number.row)
    return rows
