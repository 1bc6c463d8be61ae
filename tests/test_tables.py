"""Tables: the verdict rule, mean ± std over done seeds, the files written, the code-note scan."""

from __future__ import annotations

import dataclasses
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from report_fixtures import fake_config, fake_trial_rows, table1_rows, write_results

from bench import paper, render, tables, tags
from bench.grids import grid_configs
from bench.report import markdown_for_grid, write_report
from bench.results import to_frame

# -- the verdict rule --------------------------------------------------------------------------


def test_reproduced_within_two_combined_errors():
    # bound = 2 * sqrt(2^2 + (3/sqrt(4))^2) = 2 * sqrt(4 + 2.25) = 5.0
    assert tables.verdict(344.9, 3.0, 4, "paper", 340.0, 2.0) == tables.REPRODUCED
    assert tables.verdict(335.1, 3.0, 4, "paper", 340.0, 2.0) == tables.REPRODUCED


def test_not_reproduced_beyond_the_bound():
    assert tables.verdict(345.1, 3.0, 4, "paper", 340.0, 2.0) == tables.NOT_REPRODUCED
    assert tables.verdict(200.0, 3.0, 5, "paper", 340.0, 2.0) == tables.NOT_REPRODUCED


def test_missing_paper_pm_counts_as_zero():
    # bound = 2 * 1/sqrt(4) = 1.0
    assert tables.verdict(427.9, 1.0, 4, "paper", 427.0, None) == tables.REPRODUCED
    assert tables.verdict(428.1, 1.0, 4, "paper", 427.0, None) == tables.NOT_REPRODUCED


@pytest.mark.parametrize("n,profile,paper_value", [
    (2, "paper", 340.0),      # fewer than 3 seeds
    (0, "paper", 340.0),
    (5, "quick", 340.0),      # not the paper's profile
    (5, "smoke", 340.0),
    (5, "paper", None),       # no paper number (dimensionality reduction)
])
def test_inconclusive(n, profile, paper_value):
    assert tables.verdict(340.0, 1.0, n, profile, paper_value, 2.0) == tables.INCONCLUSIVE


# -- rows -> a cell ----------------------------------------------------------------------------

MNIST = tables.CellSpec("table1", "parzen_ll", {"dataset": "mnist"})


def test_mean_and_std_over_done_seeds_only():
    rows = table1_rows([330.0, 340.0, 350.0], diverged_seeds=(3, 4))
    errored = fake_trial_rows(fake_config(5), {"parzen_ll": 999.0}, status="error")
    result = tables.summarize(to_frame(rows + errored), MNIST)
    assert result.n == 3 and result.seeds == [0, 1, 2]
    assert result.mean == pytest.approx(340.0)
    assert result.std == pytest.approx(10.0)  # ddof=1
    assert result.failed == {"diverged": 2, "error": 1}
    # 6 trials (every status) of 3600 s on 1 thread and 1 worker
    assert result.compute.core_hours == pytest.approx(6.0) and result.compute.gpu_hours == 0
    assert result.compute.text == "6 core-h" and result.devices == "cpu x3"  # the done ones


def test_most_faithful_profile_is_shown_and_others_are_listed():
    rows = table1_rows([300.0] * 3, profile="quick") + table1_rows([340.0, 341.0], epochs=4)
    result = tables.summarize(to_frame(rows), MNIST)
    assert result.profile == "paper" and result.n == 2
    assert result.other_profiles == {"quick": 3}


def test_gpu_hours():
    rows = fake_trial_rows(fake_config(0), {"parzen_ll": 1.0}, device="cuda:0", gpu="H100",
                           wall_s=1800)
    compute = tables.compute_hours(to_frame(rows))
    assert compute.gpu_hours == pytest.approx(0.5) and compute.core_hours == pytest.approx(0.5)
    assert compute.text == "0.5 core-h, 0.5 GPU-h"


def test_cell_without_rows_is_not_run_and_metric_absent_is_not_run():
    frame = to_frame(table1_rows([340.0, 341.0, 339.0]))
    assert tables.summarize(frame, tables.CellSpec("table1", "parzen_ll", {"dataset": "tfd"})) \
        is None
    assert tables.summarize(frame, tables.CellSpec("table1", "parzen_ll_10m",
                                                   {"dataset": "mnist"})) is None
    assert tables.summarize(frame, tables.CellSpec("table2", "classification_error")) is None


def test_view_verdicts_and_pooled_configurations():
    spec = tables.TABLES["table1"]
    good = tables.build_view(spec, to_frame(table1_rows([339.0, 340.0, 341.0])))
    ours = dict(good.rows)["AAE (ours)"]
    assert ours[0].verdict == tables.REPRODUCED
    assert [c.lines for c in ours[1:]] == [[tables.NOT_RUN]] * 3
    bad = tables.build_view(spec, to_frame(table1_rows([100.0, 101.0, 102.0])))
    assert dict(bad.rows)["AAE (ours)"][0].verdict == tables.NOT_REPRODUCED
    pooled = to_frame(table1_rows([340.0, 340.0]) + table1_rows([340.0], z_dim=4))
    view = tables.build_view(spec, pooled)
    cell = dict(view.rows)["AAE (ours)"][0]
    assert cell.verdict == tables.INCONCLUSIVE and "2 configurations" in cell.lines[-1]


def test_every_table_has_paper_and_our_rows():
    frame = to_frame(table1_rows([340.0]))
    for key, spec in tables.TABLES.items():
        view = tables.build_view(spec, frame)
        labels = [label for label, _ in view.rows]
        assert labels[-2:] == ["AAE (paper)", "AAE (ours)"], key
        assert all(len(cells) == len(spec.columns) for _, cells in view.rows)


# -- files -------------------------------------------------------------------------------------


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "data-table" in attrs:
            self._table = self.tables.setdefault(attrs["data-table"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" / ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _md_table(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


@pytest.fixture
def report(tmp_path):
    rows = table1_rows([339.0, 340.0, 342.0], diverged_seeds=(3,))
    results = write_results(tmp_path / "results", rows)
    paths = write_report(results, tmp_path / "reports")
    return tmp_path / "reports", paths


def test_files_written(report):
    out, paths = report
    for key in tables.TABLES:
        for ext in ("md", "tex", "html"):
            assert out / f"{key}.{ext}" in paths
            assert (out / f"{key}.{ext}").stat().st_size > 0
    assert out / "index.html" in paths and out / "report.md" in paths


def test_markdown_rows_columns_and_cells(report):
    out, _ = report
    t1 = _md_table((out / "table1.md").read_text())
    assert t1[0] == ["Method", "MNIST, 10K samples", "TFD, 10K samples", "MNIST, 10M samples",
                     "TFD, 10M samples"]
    body = {row[0]: row[1:] for row in t1[1:]}
    assert list(body) == ["DBN (paper)", "Stacked CAE (paper)", "Deep GSN (paper)", "GAN (paper)",
                          "GMMN+AE (paper)", "AAE (paper)", "AAE (ours)"]
    assert body["AAE (paper)"] == ["340 ± 2†", "2252 ± 16†", "427†", "2522†"]
    assert body["GAN (paper)"][3] == tables.NO_CELL
    ours = body["AAE (ours)"]
    assert ours[0].startswith("340.3 ± 1.5 (seed std, n=3) · s.e. over test points 1.0")
    assert "profile paper" in ours[0] and "1 diverged" in ours[0] and "reproduced" in ours[0]
    assert ours[1:] == ["not run"] * 3
    t2 = {row[0]: row[1:] for row in _md_table((out / "table2.md").read_text())[1:]}
    assert t2 == {"AAE (paper)": ["1.90 ± 0.10†", "1.60 ± 0.08†", "0.85 ± 0.02†", "17.70 ± 0.30†"],
                  "AAE (ours)": ["not run"] * 4}
    t3 = {row[0]: row[1:] for row in _md_table((out / "table3.md").read_text())[1:]}
    assert t3["CatGAN (paper)"] == ["—", "9.70†", "—"]
    assert t3["AAE (ours)"] == ["not run", "—", "not run"]
    dr = _md_table((out / "dim_reduction.md").read_text())
    assert dr[0] == ["Method", "MNIST, 100 labels", "MNIST, 1000 labels", "MNIST, 20 clusters"]
    dr = {row[0]: row[1:] for row in dr[1:]}
    assert dr["AAE (paper)"] == ["unknown to us†"] * 3 and dr["AAE (ours)"] == ["not run"] * 3


def test_every_file_has_a_header_and_the_rule(report):
    out, _ = report
    for key in tables.TABLES:
        for ext in ("md", "tex", "html"):
            text = (out / f"{key}.{ext}").read_text()
            head = text[:1500]
            assert "Generated by: aae-bench report" in head, (key, ext)
            if key == "table1":  # the header describes the rows that fill the table
                assert "Commits: ffffffffffff (clean)" in head
                assert "Hardware: CPU Fake CPU (test fixture) (2 cores); GPU none" in head
                assert "Commands: aae-bench run table1 (fixture)" in head
                assert "Rows dated: 2025-01-01T00:00:00+00:00" in head
            else:
                assert "Rows: none" in head
        assert "Verdict rule" in (out / f"{key}.md").read_text()
    assert (out / "table1.tex").read_text().startswith("% Generated by")


def test_latex_and_html_tables(report):
    out, _ = report
    latex = (out / "table1.tex").read_text()
    assert r"\begin{tabular}{lcccc}" in latex
    assert "AAE (ours) & \\shortstack{340.3 $\\pm$ 1.5 (seed std, n=3)" in latex
    assert latex.count("not run") >= 3
    parser = _Tables()
    parser.feed((out / "index.html").read_text())
    assert set(parser.tables) == set(tables.TABLES) | {"summary"}
    t1 = parser.tables["table1"]
    assert t1[0][1] == "MNIST, 10K samples" and t1[-1][0] == "AAE (ours)"
    assert t1[-1][2:] == ["not run"] * 3


def test_protocol_card(report):
    out, _ = report
    text = (out / "table1.md").read_text()
    card = text[text.index("### Protocol card"):]
    assert "chosen sigma per seed: seed 0: 0.2, seed 1: 0.2, seed 2: 0.2" in card
    assert "parzen_samples 10000" in card and "epochs 3" in card
    assert "data_split train 50000" in card
    assert "Model selection" in card


def test_subset_hash_on_card():
    rows = fake_trial_rows(fake_config(0), {"parzen_ll": 1.0}, extra={"subset_hash": "abc123"})
    spec = dataclasses.replace(tables.TABLES["table1"], protocol_fields=("subset_hash",))
    view = tables.build_view(spec, to_frame(rows))
    card = dict(tables.protocol_card(view, []))
    assert "subset_hash abc123" in card["MNIST, 10K samples"]


def test_markdown_for_grid(tmp_path):
    results = write_results(tmp_path, table1_rows([340.0, 341.0]))
    text = markdown_for_grid(results, "table1")
    assert "| AAE (ours) | 340.5 ± 0.7 (seed std, n=2)" in text and "inconclusive" in text
    assert "Protocol card" not in text
    assert render.render_markdown("table1", to_frame(table1_rows([340.0]))).startswith(
        "## Table 1")
    other = markdown_for_grid(results, "nonexistent")
    assert "No done rows" in other


def test_markdown_for_a_grid_without_a_table_keeps_its_cells_apart(tmp_path):
    # figure4's two priors (one at bf16) are two cells: never one mean over both
    def rows(seed, prior, value, precision="no"):
        config = fake_config(seed, "long", grid="figure4", variant="label-regularized", prior=prior,
                             z_dim=2, labels=10000, precision=precision, prior_std=1.0)
        return fake_trial_rows(config, {"reconstruction_error": value})

    results = write_results(tmp_path, [*rows(0, "mixture", 52.0), *rows(1, "mixture", 54.0),
                                       *rows(0, "swiss-roll", 34.0, "bf16")])
    lines = [line for line in markdown_for_grid(results, "figure4").splitlines() if "reconstruction" in line]
    assert lines == [
        "| long | label-regularized/mnist/mixture, labels 10000, z_dim 2, epochs 3 | "
        "reconstruction_error | 53 ± 1.414 | 2 |",
        "| long | label-regularized/mnist/swiss-roll, labels 10000, z_dim 2, epochs 3, bf16 | "
        "reconstruction_error | 34 ± — | 1 |"]


def test_markdown_for_a_grid_without_a_table_names_cells_that_share_their_words(tmp_path):
    # two sensitivity arms differ in a field the words leave out: the cell key tells them apart
    configs = [fake_config(s, "quick", grid="sensitivity", recon_lr=lr) for lr in (0.01, 7.84) for s in (0, 1)]
    rows = [r for i, c in enumerate(configs) for r in fake_trial_rows(c, {"parzen_ll": 100.0 + i})]
    results = write_results(tmp_path, rows)
    lines = [line for line in markdown_for_grid(results, "sensitivity").splitlines() if "parzen" in line]
    keys = [configs[0].trial_id, configs[2].trial_id]  # seed 0's ids: the cells' keys
    assert sorted(lines) == sorted(
        f"| quick | unsupervised/mnist/gaussian, z_dim 8, epochs 3 (cell {key}) | parzen_ll | {mean} ± 0.7071 | 2 |"
        for key, mean in zip(keys, ("100.5", "102.5"), strict=True))


def test_empty_results(tmp_path):
    (tmp_path / "results").mkdir()
    paths = write_report(tmp_path / "results", tmp_path / "out")
    text = (tmp_path / "out" / "table1.md").read_text()
    assert "Rows: none" in text
    assert dict((r[0], r[1:]) for r in _md_table(text)[1:])["AAE (ours)"] == ["not run"] * 4
    assert tmp_path / "out" / "index.html" in paths


TAG_GAP = "PAPER" + "-GAP"  # split so this file never reads as a note


def test_card_lists_notes():
    notes = [tags.Note(TAG_GAP, "aae_core/model.py", 7, "init unknown", "mlp")]
    view = tables.build_view(tables.TABLES["table2"], to_frame(table1_rows([1.0])))
    card = dict(tables.protocol_card(view, notes))
    assert card[f"{TAG_GAP} aae_core/model.py:7 (mlp)"] == "init unknown"


def test_nan_mean_is_not_reproduced_by_accident():
    assert tables.verdict(math.nan, math.nan, 3, "paper", 340.0, 2.0) == tables.INCONCLUSIVE
    assert np.isnan(tables.CellResult(tables.CellSpec("g", "m"), "paper", [], [], {}, {}, {}, 0,
                                      pd.DataFrame()).mean)


def test_tfd_cell_is_the_mean_over_folds_with_the_standard_error_across_folds():
    from bench import metrics

    # One TFD trial per seed, scored on all 5 folds (issue 14): fold f, seed s scores
    # 2000 + 10 f + s, so each seed's parzen_ll (the mean over its folds) is 2020 + s and its
    # stderr the standard error across its folds.
    rows = []
    for seed in range(3):
        per_fold = [2000.0 + 10 * f + seed for f in range(5)]
        mean, across = metrics.parzen_over_folds(per_fold)
        config = fake_config(seed, "paper", dataset="tfd", z_dim=15, parzen_validation=0)
        values = {"parzen_ll": mean, **{f"parzen_ll_fold{f}": v for f, v in enumerate(per_fold)},
                  **{f"parzen_sigma_fold{f}": 0.2 + 0.01 * f for f in range(5)}}
        rows += fake_trial_rows(config, values, stderrs={"parzen_ll": across})
    frame = pd.DataFrame(rows)
    result = tables.summarize(frame, tables.CellSpec("table1", "parzen_ll", {"dataset": "tfd"}))
    assert result.seeds == [0, 1, 2] and result.values == [2020.0, 2021.0, 2022.0]
    assert result.configs == 1
    across = metrics.parzen_over_folds([2000.0 + 10 * f for f in range(5)])[1]
    assert result.stderrs == pytest.approx([across] * 3)
    view = tables.build_view(tables.TABLES["table1"], frame)
    cell = dict(view.rows)["AAE (ours)"][1]
    assert cell.lines[:2] == ["2021.0 ± 1.0 (seed std, n=3)",
                              f"s.e. across folds {across:.1f} (mean over seeds)"]
    assert f"2021.0 ± 1.0 (seed std, n=3) · s.e. across folds {across:.1f}" in render.view_markdown(view)
    card = dict(tables.protocol_card(view, []))["TFD, 10K samples"]
    assert "per fold, mean over seeds: fold 0 2001.0, fold 1 2011.0, fold 2 2021.0" in card
    assert ("chosen sigma per seed and fold (folds 0, 1, 2, 3, 4): seed 0: 0.2 / 0.21 / 0.22 / "
            "0.23 / 0.24, seed 1:") in card
    rules = dict(tables.protocol_card(view, []))
    assert "trained on TFD's unlabelled images" in rules["TFD"]
    assert "s.e. across folds" in tables.CELL_NOTE


# -- issue 14, part 4: reports that say what is true ----------------------------------------


def _grid_rows(grid: str, values: dict[str, float], seeds: int = 3) -> list[dict]:
    """Fabricated done rows for every config of a grid at the paper profile."""
    return [row for config in grid_configs(grid, "paper", seeds)
            for row in fake_trial_rows(config, values)]


@pytest.mark.parametrize("key", list(tables.TABLES))
def test_each_column_reads_exactly_one_cell_of_its_grid(key):
    # Every column's filters pick one configuration of its grid (seeds aside):
    # nothing pooled, e.g. classification error with clustering error.
    spec = tables.TABLES[key]
    metrics = {c.ours.metric: 1.0 for c in spec.columns if c.ours}
    frame = to_frame([r for grid in spec.grids for r in _grid_rows(grid, metrics)])
    for column in spec.columns:
        if column.ours is None:
            continue
        result = tables.summarize(frame, column.ours)
        assert result is not None and result.configs == 1, (key, column.key)
        assert result.seeds == [0, 1, 2]


def test_dim_reduction_has_one_column_per_cell():
    rows = []
    for config in grid_configs("dim_reduction", "paper", 3):
        error = 2.0 if config.labels == 100 else 3.0 if config.labels == 1000 else 10.0
        rows += fake_trial_rows(config, {"dim_reduction_error": error + config.seed})
    view = tables.build_view(tables.TABLES["dim_reduction"], to_frame(rows))
    assert view.header == ["Method", "MNIST, 100 labels", "MNIST, 1000 labels",
                           "MNIST, 20 clusters"]
    ours = dict(view.rows)["AAE (ours)"]
    assert [c.lines[0] for c in ours] == ["3.00 ± 1.00 (n=3)", "4.00 ± 1.00 (n=3)",
                                          "11.00 ± 1.00 (n=3)"]
    assert all("no paper number" in c.lines[-1] for c in ours)
    paper_row = dict(view.rows)["AAE (paper)"]
    assert [c.lines for c in paper_row] == [["unknown to us" + paper.UNCHECKED_MARK]] * 3


def _rule(key: str, name: str = "Model selection") -> str:
    view = tables.build_view(tables.TABLES[key], to_frame([]))
    return dict(tables.protocol_card(view, []))[name]


def test_model_selection_rules_are_the_codes():
    # The card says what bench.trial does: only the classification evaluation selects a model
    # (on the validation split); clustering keeps the model after the last epoch.
    from bench.evaluate import evaluation_kind

    for key in ("table1", "table2", "table3", "dim_reduction"):
        assert "to be stated" not in _rule(key)
    assert {evaluation_kind(c) for c in grid_configs("table2", "paper", 1)} == {"classification"}
    assert {evaluation_kind(c) for c in grid_configs("table3", "paper", 1)} == {"clustering"}
    for rule in (_rule("table2"), _rule("dim_reduction")):
        assert "lowest classification error on the whole validation split" in rule
        assert "test split is never read for the choice" in rule
        assert "selected_epoch" in rule and "classification_error_validation" in rule
    assert "the model after the last epoch (no selection" in _rule("table3")
    dim = _rule("dim_reduction")
    assert dim.index("100 and 1000 labels") < dim.index("validation split") \
        < dim.index("20 clusters") < dim.index("last epoch")
    assert {(c.labels, evaluation_kind(c)) for c in grid_configs("dim_reduction", "paper", 1)} \
        == {(100, "classification"), (1000, "classification"), (None, "clustering")}
    assert "validation example with the largest q(y_i|x)" in _rule("table3", "Cluster labelling")


def test_selected_epochs_are_listed_per_seed():
    rows = []
    for config in grid_configs("table2", "paper", 3):
        if config.labels == 100:
            rows += fake_trial_rows(config, {"classification_error": 2.0, "selected_epoch":
                                             100.0 + config.seed,
                                             "classification_error_validation": 1.5})
    view = tables.build_view(tables.TABLES["table2"], to_frame(rows))
    card = dict(tables.protocol_card(view, []))["MNIST, 100 labels"]
    assert "selected epoch per seed: seed 0: 100, seed 1: 101, seed 2: 102" in card
    assert "validation error of the selected model per seed: seed 0: 1.5" in card


def test_table1_cells_show_seed_spread_and_test_point_standard_error():
    rows = table1_rows([339.0, 340.0, 342.0], test_stderrs=[1.5, 2.0, 2.5])
    view = tables.build_view(tables.TABLES["table1"], to_frame(rows))
    cell = dict(view.rows)["AAE (ours)"][0]
    assert cell.lines[:2] == ["340.3 ± 1.5 (seed std, n=3)",
                              "s.e. over test points 2.0 (mean over seeds)"]
    assert view.results["mnist_10k"].stderrs == [1.5, 2.0, 2.5]
    # The bound uses the seed spread, not the test-point standard error: a larger one changes
    # nothing.
    wide = tables.build_view(tables.TABLES["table1"], to_frame(
        table1_rows([339.0, 340.0, 342.0], test_stderrs=[50.0] * 3)))
    assert dict(wide.rows)["AAE (ours)"][0].lines[-1] == cell.lines[-1]
    for text in (render.view_markdown(view), render.view_latex(view), render.view_html(view)):
        assert "s.e. over test points 2.0" in text
    assert "(seed std, n=3)" in render.view_latex(view)
    # Tables whose metric has no test-point standard error keep their cells as they were.
    t2 = tables.build_view(tables.TABLES["table2"], to_frame(_grid_rows(
        "table2", {"classification_error": 2.0})))
    assert dict(t2.rows)["AAE (ours)"][0].lines[:2] == ["2.00 ± 0.00 (n=3)", "profile paper"]


def test_verdict_rule_says_which_spread_the_bound_uses():
    rule = tables.VERDICT_RULE
    assert "bound = 2·sqrt(paper_pm² + (our_std/√n)²)" in rule
    assert "The bound uses these two terms only" in rule
    assert "standard error of one model's mean over test points" in rule
    assert "do not enter the bound" in rule
    assert "s.e. over test points" in tables.CELL_NOTE
