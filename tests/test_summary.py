"""The report's summary of every cell (#16 part 4), the cells' validation curves and their trend
(#16 part 1), the device mix and the compute of a cell (#18 item 9), on fabricated rows and
curves in temporary directories (tests/report_fixtures.py)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from report_fixtures import (
    fake_config,
    fake_trial_rows,
    table1_rows,
    write_artifacts,
    write_curve,
    write_results,
)

from bench import curves, figures, render, summary, tables
from bench.grids import grid_configs
from bench.report import write_report
from bench.results import read_rows, to_frame, wall_from_epoch

EPOCHS = 10


def _rising_ll(seed: int) -> dict[str, list[float]]:
    # +2 nats per epoch to the end: the last 10 % (one epoch) rises by 2, above the noise
    # (seed std of the last values 1.0, the s.e. over test points 1.0).
    return {"validation_parzen_ll": [300.0 + seed + 2.0 * e for e in range(1, EPOCHS + 1)],
            "validation_parzen_sigma": [0.2] * EPOCHS}


def _plateau_error(seed: int) -> list[float]:
    return [10.0, 5.0, 3.0, 2.6] + [2.5 + 0.1 * seed] * 16  # 20 epochs, flat for the last 16


def _table2_config(profile: str, labels: int, seed: int):
    return next(c for c in grid_configs("table2", profile, seed + 1)
                if c.dataset == "mnist" and c.labels == labels and c.seed == seed)


def _t2_rows(profile: str, labels: int, seed: int, error: float, **kwargs) -> list[dict]:
    """A Table 2 trial's rows; like a real one, its error has no stderr."""
    return fake_trial_rows(_table2_config(profile, labels, seed), {"classification_error": error},
                           stderrs={"classification_error": float("nan")}, **kwargs)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Table 1 MNIST at paper (3 seeds, rising validation curves, 2 threads x 2 workers);
    Table 2 MNIST-100 at long (plateau curves; 2 trials on CUDA, 1 on the CPU) and at quick;
    Table 2 MNIST-1000 at quick with loss-only curves; Table 2 MNIST-all without artifacts."""
    root = tmp_path_factory.mktemp("summary")
    results = root / "results"
    t1 = table1_rows([339.0, 340.0, 342.0])
    for row in t1:
        row.update(threads=2, workers=2)
    t2 = []
    for seed in range(3):
        t2 += _t2_rows("long", 100, seed, 2.0 + 0.2 * seed, device="cuda:0" if seed < 2 else "cpu",
                       gpu="H200" if seed < 2 else "")
        t2 += _t2_rows("quick", 100, seed, 9.0)
    old = _t2_rows("quick", 1000, 0, 5.0)
    bare = _t2_rows("quick", 0, 0, 1.5)
    write_results(results, t1 + t2 + old + bare)
    write_artifacts(results, t1, epochs=EPOCHS, validation=_rising_ll)
    for row in t2:
        if row["profile"] == "long" and row["metric"] == "classification_error":
            write_curve(results, row, {"validation_error": _plateau_error(row["seed"])})
    write_artifacts(results, old, epochs=EPOCHS)  # losses only: a run older than the curves
    write_report(results, root / "reports")
    views = [tables.build_view(spec, read_rows(results), results) for spec in tables.TABLES.values()]
    rows = {(r.table, r.column): r for r in summary.summary_rows(views)}
    return {"results": results, "reports": root / "reports", "rows": rows, "views": views}


def test_the_summary_lists_every_cell_of_every_table(study):
    rows = study["rows"]
    assert list(rows) == [(key, c.key) for key, spec in tables.TABLES.items() for c in spec.columns]
    assert rows["table3", "clusters_20"].ours == summary.NOT_IN_STUDY
    assert rows["table1", "tfd_10k"].ours == tables.NOT_RUN
    assert rows["table1", "tfd_10k"].paper.startswith("2252 ± 16† (the paper's; source: ")


def test_the_summary_has_the_right_numbers(study):
    t1 = study["rows"]["table1", "mnist_10k"]
    # mean 340.33, std 1.53, s.e. 1.53 / sqrt(3) = 0.88
    assert t1.ours == "340.3 ± 0.9 (s.e., n=3)"
    assert t1.paper == "340 ± 2† (the paper's; source: quoted by later papers)"
    assert t1.gap == "+0.3 (better than the paper)"  # a log-likelihood: higher is better
    assert t1.verdict.startswith("reproduced (gap 0.333 ≤ bound")
    assert t1.profile == "paper" and t1.seeds == "3 (0, 1, 2)" and t1.devices == "cpu x3"
    assert t1.compute == "12 core-h"  # 3 trials x 1 h x 2 threads x 2 workers
    assert t1.trend.startswith("+2 validation_parzen_ll over the last 10 % of 10 epochs: "
                               "still improving (noise 1)")
    t2 = study["rows"]["table2", "mnist_100"]
    assert t2.ours == "2.20 ± 0.12 (s.e., n=3)"
    assert t2.gap == "+0.30 (worse than the paper)"  # an error: lower is better
    assert t2.verdict == "inconclusive (profile long, not paper)"
    assert t2.profile == "long (also in results: quick (3 trials))"
    assert t2.devices == "cuda 2 + cpu 1"
    assert t2.compute == "3 core-h, 2 GPU-h"
    assert t2.trend.startswith("+0 validation_error over the last 10 % of 20 epochs: flat")


def test_a_cell_without_validation_metrics_says_so(study):
    rows = study["rows"]
    assert rows["table2", "mnist_1000"].trend == curves.NO_VALIDATION
    assert rows["table2", "mnist_all"].trend == curves.NO_CURVE
    report = (study["reports"] / "report.md").read_text()
    assert f"- **MNIST, 1000 labels**: {curves.NO_VALIDATION}" in report
    view = next(v for v in study["views"] if v.spec.key == "table2")
    cell = dict(view.rows)["AAE (ours)"][1]
    assert f"trend {curves.NO_VALIDATION}" in cell.lines
    assert not (study["reports"] / "figures" / "curve_table2_mnist_1000.png").exists()


def test_the_report_opens_with_the_summary_and_shows_curves_after_each_table(study):
    out = study["reports"]
    report = (out / "report.md").read_text()
    assert report.index("## Summary: every cell") < report.index("## Table 1:") \
        < report.index("figures/curve_table1_mnist_10k.png") < report.index("## Table 2:") \
        < report.index("figures/curve_table2_mnist_100.png") < report.index("## Table 3:")
    assert "| [Table 1](#table1) | MNIST, 10K samples | 340.3 ± 0.9 (s.e., n=3) |" in report
    page = (out / "index.html").read_text()
    assert page.index('id="summary"') < page.index('<section id="table1">') \
        < page.index('src="figures/curve_table1_mnist_10k.png"') < page.index('<section id="table2">')
    assert 'href="#curve-table1-mnist_10k">curve</a>' in page
    assert 'id="curve-table1-mnist_10k"' in page
    for name in ("curve_table1_mnist_10k.png", "curve_table2_mnist_100.png"):
        assert (out / "figures" / name).stat().st_size > 5000
    # the table's own files show its curves too; LaTeX gets the trend in the cells only
    assert "figures/curve_table1_mnist_10k.png" in (out / "table1.md").read_text()
    assert "still improving" in (out / "table1.tex").read_text()
    assert "figures/table1_latents.png" in page[page.index('<section id="table1">'):
                                               page.index('<section id="table2">')]


def test_the_paper_line_is_drawn_only_where_the_curve_measures_the_cell(study, tmp_path):
    t1 = next(v for v in study["views"] if v.spec.key == "table1")
    drawn = {f.column: f for f in figures.write_cell_curves(t1, tmp_path)}
    assert set(drawn) == {"mnist_10k"}
    assert "dashed: the paper's number (on the test split" in drawn["mnist_10k"].caption
    # the 10M column's trials have the same curve, which scores the 10K-sample window
    rows = table1_rows([339.0, 340.0, 342.0])
    rows += [{**row, "metric": "parzen_ll_10m", "value": 420.0} for row in rows
             if row["metric"] == "parzen_ll"]
    results = write_results(tmp_path / "r", rows)
    write_artifacts(results, rows, epochs=EPOCHS, validation=_rising_ll)
    view = tables.build_view(tables.TABLES["table1"], read_rows(results), results)
    ten_m = view.curves["mnist_10m"]
    assert ten_m.drawn and not ten_m.measures_cell and "not the paper's metric" in ten_m.note
    captions = {f.column: f.caption for f in figures.write_cell_curves(view, tmp_path / "f")}
    assert "no paper line (the curve does not measure the paper's metric)" in captions["mnist_10m"]


# -- the trend in words ----------------------------------------------------------------------


def _cell_curve(tmp_path, metric: str, series: dict[int, list[float]], cell_metric: str,
                precision: float = 0.0) -> curves.CellCurve:
    """The cell curve of one Table 1 trial (Table 2 for an error metric) per seed of `series`."""
    rows = []
    for seed, values in series.items():
        trial = (_t2_rows("quick", 100, seed, 2.0) if cell_metric == "classification_error"
                 else fake_trial_rows(fake_config(seed), {cell_metric: 340.0}))
        rows += trial
        write_curve(tmp_path, trial[0], {metric: values})
    return curves.cell_curve(tmp_path, to_frame(rows), cell_metric, rows[0]["grid"], precision)


@pytest.mark.parametrize("metric, cell_metric, values, words", [
    ("validation_parzen_ll", "parzen_ll", [100.0 + 10 * e for e in range(10)], curves.IMPROVING),
    ("validation_parzen_ll", "parzen_ll", [100.0, 200.0, 250.0] + [260.0] * 7, curves.FLAT),
    ("validation_parzen_ll", "parzen_ll",
     [100.0, 200.0, 250.0, 260.0] + [260.0 - 5 * e for e in range(6)], curves.WORSENING),
    ("validation_error", "classification_error", [10.0 - 0.5 * e for e in range(10)],
     curves.IMPROVING),
    ("validation_error", "classification_error", [10.0, 5.0] + [2.0 + 0.2 * e for e in range(8)],
     curves.WORSENING),
])
def test_trend_words_on_known_curves(tmp_path, metric, cell_metric, values, words):
    curve = _cell_curve(tmp_path, metric, {0: values}, cell_metric)
    assert curve.metric == metric and curve.measures_cell
    assert curve.words == words
    change = values[-1] - values[-2]  # the last 10 % of 10 epochs: one epoch
    assert curve.change == pytest.approx(change)


def test_flat_is_within_the_seed_spread_or_the_precision(tmp_path):
    # The change (+3) is above 1 % of the range the curve covered (0.01 x 123) ...
    values = [200.0 + 10 * e for e in range(12)] + [320.0, 323.0]
    alone = _cell_curve(tmp_path / "a", "validation_parzen_ll", {0: values}, "parzen_ll")
    assert alone.words == curves.IMPROVING and alone.tolerance == pytest.approx(1.23)
    # ... but not above the seed spread of the last values (std of 323, 333, 343 = 10) ...
    spread = _cell_curve(tmp_path / "b", "validation_parzen_ll",
                         {s: [v + 10 * s for v in values] for s in range(3)}, "parzen_ll")
    assert spread.words == curves.FLAT and spread.tolerance == pytest.approx(10.0)
    # ... nor above the precision of the cell's number.
    precise = _cell_curve(tmp_path / "c", "validation_parzen_ll", {0: values}, "parzen_ll", 3.5)
    assert precise.words == curves.FLAT and precise.tolerance == pytest.approx(3.5)


def test_the_precision_of_an_error_rate_is_binomial():
    rows = _t2_rows("quick", 100, 0, 5.0)
    result = tables.summarize(to_frame(rows), tables.TABLES["table2"].columns[0].ours)
    assert tables.precision(result) == pytest.approx(100 * (0.05 * 0.95 / 10000) ** 0.5)


def test_a_one_epoch_curve_has_no_trend(tmp_path):
    curve = _cell_curve(tmp_path, "validation_parzen_ll", {0: [100.0]}, "parzen_ll")
    assert curve.drawn and curve.change is None and curve.words == curves.TOO_SHORT


def test_the_reconstruction_error_stands_in_and_says_it_is_not_the_papers(tmp_path):
    curve = _cell_curve(tmp_path, "validation_reconstruction_error", {0: [30.0, 20.0, 15.0]},
                        "parzen_ll")
    assert curve.metric == "validation_reconstruction_error" and curve.words == curves.IMPROVING
    assert not curve.measures_cell and "not the paper's metric (parzen_ll)" in curve.note


# -- devices and compute ---------------------------------------------------------------------


def _trials(devices: list[str], **extra) -> pd.DataFrame:
    rows = []
    for seed, device in enumerate(devices):
        rows += _t2_rows("quick", 100, seed, 2.0, device=device, extra=extra)
    return to_frame(rows)


@pytest.mark.parametrize("devices, mix", [
    (["cpu"] * 3, "cpu x3"),
    (["cuda:0", "cpu", "cuda:1"], "cuda 2 + cpu 1"),
    (["cuda"], "cuda x1"),
    (["cpu", "cuda:0", "mps", "mps"], "mps 2 + cpu 1 + cuda 1"),
])
def test_device_mix(devices, mix):
    assert tables.device_mix(_trials(devices)) == mix


def test_the_device_mix_is_in_the_cell_and_on_the_card():
    frame = _trials(["cuda:0", "cuda:0", "cpu"])
    view = tables.build_view(tables.TABLES["table2"], frame)
    assert "devices cuda 2 + cpu 1" in dict(view.rows)["AAE (ours)"][0].lines
    card = dict(tables.protocol_card(view, []))["MNIST, 100 labels"]
    assert "devices cuda 2 + cpu 1" in card and "compute 3 core-h, 2 GPU-h" in card
    for text in (render.view_markdown(view), render.view_latex(view), render.view_html(view)):
        assert "cuda 2 + cpu 1" in text


def test_compute_counts_each_trial_once_and_shares_a_packs_wall_time():
    # 2 seeds packed: each row says the pack's 3600 s; one trial's share is half of it.
    frame = _trials(["cpu", "cpu"], threads=4, seeds_per_trial=2)
    compute = tables.compute_hours(frame)
    assert compute.core_hours == pytest.approx(2 * 3600 / 2 * 4 / 3600)
    assert compute.text == "4 core-h" and compute.gpu_hours == 0
    unknown = frame.assign(threads=float("nan"))
    assert tables.compute_hours(unknown).text == "compute unknown"
    half = pd.concat([frame[frame["seed"] == 0], unknown[unknown["seed"] == 1]])
    assert tables.compute_hours(half).text == (
        "2 core-h (1 of 2 trials without wall_s / threads left out)")


def test_compute_is_a_lower_bound_where_older_code_recorded_only_the_last_process():
    frame = _trials(["cpu", "cpu"], threads=1)
    assert tables.compute_hours(frame.assign(resumed_from_epoch=0)).partial == 0
    # older rows: no wall_s_from_epoch column, a resumed trial counted its last process only
    older = frame.assign(resumed_from_epoch=[37 if s == 1 else 0 for s in frame["seed"]])
    compute = tables.compute_hours(older)
    assert compute.partial == 1 and compute.core_hours == pytest.approx(2.0)
    assert compute.text == ("≥ 2 core-h (1 of 2 trials resumed by older code, which recorded only "
                            "the last process's time)")
    # newer rows count every process: resumed, yet whole
    assert tables.compute_hours(older.assign(wall_s_from_epoch=0)).text == "2 core-h"
    assert wall_from_epoch({"wall_s_from_epoch": 5.0, "resumed_from_epoch": 9}) == 5
    assert wall_from_epoch({}) == 0


def test_a_profile_with_failed_trials_only_does_not_hide_a_done_one():
    done = _t2_rows("quick", 100, 0, 3.0)
    failed = _t2_rows("long", 100, 0, float("nan"), status="error")
    result = tables.summarize(to_frame(done + failed), tables.TABLES["table2"].columns[0].ours)
    assert result.profile == "quick" and result.values == [3.0]
    assert result.other_profiles == {"long": 1}


def test_the_summary_markdown_table_is_well_formed(study):
    text = render.summary_markdown(list(study["rows"].values()))
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    widths = {len(re.split(r"(?<!\\)\|", ln)) for ln in lines}
    assert len(widths) == 1 and len(lines) == 1 + len(study["rows"])
    assert curves.FLAT_RULE in text and summary.SUMMARY_NOTE in text
