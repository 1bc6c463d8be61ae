"""The sensitivity study (issue #17): the grid, the statistic on known answers, the report.

Rows here are fabricated (tests/report_fixtures.py) and written only under tmp_path.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from report_fixtures import fake_trial_rows, write_results

from aae_core import datasets, training
from bench import grids, sensitivity, stats
from bench.config import ALTERNATIVES, LABEL_FIELDS, PROFILES, ConfigError
from bench.grids import (
    SENSITIVITY,
    SENSITIVITY_CELLS,
    SensitivityChoice,
    sensitivity_defaults,
    vary,
)

NAMED_DEFAULTS = {name for name, _, _ in ALTERNATIVES}
CHOICES = {c.name: c for c in SENSITIVITY if c.cell == "table1/mnist"}


def differing_fields(a, b) -> set[str]:
    da, db = a.as_dict(), b.as_dict()
    return {k for k in da if da[k] != db[k]}


# -- the grid ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_choice_varies_exactly_the_fields_it_names(profile):
    for choice in SENSITIVITY:
        default = sensitivity_defaults(choice.cell, profile, 1)[0]
        varied = vary(default, choice)
        assert differing_fields(default, varied) == set(choice.changes), choice.name
        assert varied.trial_id != default.trial_id
        assert choice.source.strip(), f"{choice.name}: every varied value says where it comes from"


@pytest.mark.parametrize("profile", PROFILES)
def test_each_default_is_its_tables_trial(profile):
    table1 = [c for c in grids.table1(profile, 3) if c.dataset == "mnist"]
    table2 = [c for c in grids.table2(profile, 3) if c.dataset == "mnist" and c.labels == 100]
    for key, table in (("table1/mnist", table1), ("table2/mnist-100", table2)):
        defaults = sensitivity_defaults(key, profile, 3)
        assert [d.trial_id for d in defaults] == [t.trial_id for t in table]
        assert {d.grid for d in defaults} == {"sensitivity"}
    configs = grids.grid_configs("sensitivity", profile, 3)
    assert [c.trial_id for c in configs[:3]] == [t.trial_id for t in table1]


def test_no_choice_varies_a_field_that_does_not_apply():
    for choice in SENSITIVITY:
        default = sensitivity_defaults(choice.cell, "quick", 1)[0]
        for name in choice.changes:
            assert getattr(default, name) is not None or name in NAMED_DEFAULTS, (choice.name, name)
            assert name not in LABEL_FIELDS and name != "seed"
    # and the grid refuses one, with one line
    for changes, message in ((dict(input_noise_std=0.1), "does not apply to cell table1/mnist"),
                             (dict(classification_lr=0.5), "does not apply"),
                             (dict(recon_reduction="sum"), "is the cell's default"),
                             (dict(disc_loss="joined-mean"), "names the cell's default"),
                             (dict(grid="table2"), "not a config field"),
                             (dict(bogus=1), "not a config field")):
        bad = SensitivityChoice("table1/mnist", "bad", changes, "test")
        with pytest.raises(ConfigError, match=message):
            vary(sensitivity_defaults("table1/mnist", "quick", 1)[0], bad)


def test_the_issues_choices_are_there_in_both_cells():
    for cell in ("table1/mnist", "table2/mnist-100"):
        fields = [set(c.changes) for c in SENSITIVITY if c.cell == cell]
        for wanted in ({"recon_reduction"}, {"recon_reduction", "recon_lr"}, {"disc_loss"}, {"init"}):
            assert wanted in fields, (cell, wanted)
    table2 = {k for c in SENSITIVITY if c.cell == "table2/mnist-100" for k in c.changes}
    assert {"classification_momentum", "classification_lr", "prior_std", "denoise_target",
            "input_noise_std"} <= table2
    noise_off = [c for c in SENSITIVITY if c.changes.get("input_noise_std") == 0.0]
    style = [c for c in SENSITIVITY if c.cell == "table2/mnist-100" and "prior_std" in c.changes]
    assert noise_off and [c.changes["prior_std"] for c in style] == [5.0]


def test_the_scaled_learning_rate_takes_the_same_steps_as_ours():
    """recon_lr x 784 on the pixel-averaged loss: SGD with momentum takes the very steps of the
    summed loss at recon_lr (up to rounding), so that row checks the study."""
    scaled = [c for c in SENSITIVITY if set(c.changes) == {"recon_reduction", "recon_lr"}]
    assert len(scaled) == 2
    for choice in scaled:
        default = sensitivity_defaults(choice.cell, "quick", 1)[0]
        assert choice.changes["recon_lr"] == pytest.approx(default.recon_lr * 28 * 28)
    torch.manual_seed(0)
    x = torch.rand(1, 5, 1, 28, 28)  # (seeds, batch, C, H, W)
    start = torch.randn(8, 28 * 28) * 0.01
    params = {}
    for reduction, lr in (("sum", 0.01), ("mean", 0.01 * 28 * 28)):
        w = torch.nn.Parameter(start.clone())
        opt = torch.optim.SGD([w], lr=lr, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            x_hat = torch.sigmoid(x.flatten(2) @ w.T @ w).view_as(x)
            training.reconstruction_loss(x_hat, x, reduction).sum().backward()
            opt.step()
        params[reduction] = w.detach()
    assert torch.allclose(params["sum"], params["mean"], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(params["sum"], start, atol=1e-6)  # the steps did move the weights


def test_the_grid_lists_every_choice_for_every_seed():
    configs = grids.grid_configs("sensitivity", "quick", 3)
    assert len(configs) == 3 * (len(SENSITIVITY_CELLS) + len(SENSITIVITY))
    assert len({c.trial_id for c in configs}) == len(configs)
    assert {c.grid for c in configs} == {"sensitivity"} and {c.epochs for c in configs} == {10}
    ids = {c.trial_id for c in configs}
    for choice in SENSITIVITY:
        assert vary(sensitivity_defaults(choice.cell, "quick", 1)[0], choice).trial_id in ids, choice.name


def test_dry_run_prints_the_trials(capsys, tmp_path):
    from bench import cli

    code = cli.main(["run", "sensitivity", "--profile", "quick", "--seeds", "3", "--dry-run", "--no-estimate",
                     "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip().splitlines()[-1] == f"{3 * (len(SENSITIVITY_CELLS) + len(SENSITIVITY))} trials"
    assert not list(tmp_path.iterdir())


def _fake_mnist(n_per_class=20) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    n = 10 * n_per_class

    def split(k):
        return rng.random((k, 1, 28, 28), dtype=np.float32), np.arange(k, dtype=np.int64) % 10

    (tx, ty), (vx, vy), (sx, sy) = split(n), split(20), split(20)
    return datasets.Dataset("mnist", tx, ty, vx, vy, sx, sy, source="test", split="test", n_classes=10)


def _setup(parts) -> tuple:
    """What a trial trains with, comparable: weights, priors, optimizer settings, phase settings."""
    weights = tuple(t.detach().clone() for t in parts.net.state_dict().values())
    hyper = {name: [(g["lr"], g["momentum"]) for g in opt.param_groups] for name, opt in parts.opts.items()}
    return weights, dict(parts.priors), hyper, dict(parts.rates), parts.settings


def _same_setup(a, b) -> bool:
    return (len(a[0]) == len(b[0]) and all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))
            and a[1:] == b[1:])


@pytest.mark.parametrize("choice", SENSITIVITY, ids=lambda c: f"{c.cell}:{c.label}")
def test_training_sees_every_varied_choice(choice):
    """A varied config must build a different training set-up from its default (weights, priors,
    optimizers, phase settings); otherwise its trials would measure the default again (a row
    added for a config field that training ignores fails here)."""
    from bench import trial

    data = _fake_mnist()
    default = dataclasses.replace(sensitivity_defaults(choice.cell, "smoke", 1)[0], hidden_units=16)
    varied = vary(default, choice)
    assert not _same_setup(_setup(trial.build(default, data)), _setup(trial.build(varied, data)))


# -- the statistic on known answers -------------------------------------------------------------


def _rows(choice_name, default_values, varied_values, *, cell="table1/mnist", profile="quick",
          default_grid="table1", wall=3600.0, default_version=2, varied_version=2, diverged=(),
          precision="no"):
    """Fabricated done rows: seed i of the default / the varied config gets values[i]."""
    choice = next(c for c in SENSITIVITY if c.cell == cell and c.name == choice_name)
    metric = "parzen_ll" if cell == "table1/mnist" else "classification_error"
    rows = []
    for seed, value in enumerate(default_values):
        config = dataclasses.replace(sensitivity_defaults(cell, profile, seed + 1)[seed], grid=default_grid,
                                     precision=precision)
        rows += fake_trial_rows(config, {metric: value}, wall_s=wall,
                                extra={"training_version": default_version})
    for seed, value in enumerate(varied_values):
        config = vary(dataclasses.replace(sensitivity_defaults(cell, profile, seed + 1)[seed],
                                          precision=precision), choice)
        status = "diverged" if seed in diverged else "done"
        rows += fake_trial_rows(config, {metric: math.nan if status == "diverged" else value},
                                status=status, wall_s=wall, extra={"training_version": varied_version})
    return rows


def _effect(effects, name, cell="table1/mnist"):
    (e,) = [e for e in effects if e.choice.name == name and e.cell.key == cell]
    return e


AVERAGED = "reconstruction loss averaged over pixels"
SCALED = "averaged, learning rate scaled to the same step"


def test_a_planted_effect_is_found_with_its_known_interval():
    effects = sensitivity.measure(pd.DataFrame(_rows(AVERAGED, [300, 301, 302], [310, 311, 312])))
    e = _effect(effects, AVERAGED)
    # each arm: mean +1 over 301, variance 1, so stderr sqrt(2/3), dof 4, t_{0.975,4} = 2.7764
    assert e.delta == pytest.approx(10.0) and e.difference.stderr == pytest.approx(math.sqrt(2 / 3))
    half = 2.7764451051977987 * math.sqrt(2 / 3)
    assert (e.difference.low, e.difference.high) == (pytest.approx(10 - half), pytest.approx(10 + half))
    assert e.verdict == stats.BEYOND_NOISE
    assert e.default.values == (300, 301, 302) and e.varied.values == (310, 311, 312)
    assert e.paper_gap == pytest.approx(340 - 301)  # the paper's Table 1 AAE MNIST number
    assert e.profile == "quick" and e.epochs == 10 and e.metric == "parzen_ll"


def test_no_planted_effect_is_not_detectable():
    effects = sensitivity.measure(pd.DataFrame(_rows(AVERAGED, [300, 301, 302], [302, 300, 301])))
    e = _effect(effects, AVERAGED)
    assert e.delta == pytest.approx(0.0) and e.difference.low < 0 < e.difference.high
    assert e.verdict == stats.NOT_DETECTABLE


def test_other_choices_without_rows_are_listed_as_not_run():
    effects = sensitivity.measure(pd.DataFrame(_rows(AVERAGED, [300, 301, 302], [310, 311, 312])))
    table1 = [e for e in effects if e.cell.key == "table1/mnist"]
    assert len(table1) == len(CHOICES)
    assert {e.verdict for e in table1 if e.choice.name != AVERAGED} == {sensitivity.NOT_RUN}
    assert all(math.isnan(e.delta) for e in table1 if e.choice.name != AVERAGED)
    assert not [e for e in effects if e.cell.key == "table2/mnist-100"]  # no rows there at all


def test_rows_pair_by_config_and_profile_not_by_grid_label():
    rows = _rows(AVERAGED, [300, 301, 302], [310, 311, 312], default_grid="table1")
    rows += _rows(AVERAGED, [1.0, 1.1, 1.2], [5.0, 5.1, 5.2], profile="smoke", default_grid="sensitivity")
    effects = sensitivity.measure(pd.DataFrame(rows))
    quick = _effect([e for e in effects if e.profile == "quick"], AVERAGED)
    smoke = _effect([e for e in effects if e.profile == "smoke"], AVERAGED)
    assert quick.delta == pytest.approx(10.0) and smoke.delta == pytest.approx(4.0)
    assert smoke.epochs == 1


def test_too_few_seeds_diverged_and_other_versions():
    e = _effect(sensitivity.measure(pd.DataFrame(_rows(AVERAGED, [300, 301], [310, 311]))), AVERAGED)
    assert e.difference is not None and e.verdict.startswith("too few done seeds (2 default, 2 varied")
    rows = _rows(AVERAGED, [300, 301, 302, 303], [310, 311, 312, 313], diverged=(3,))
    e = _effect(sensitivity.measure(pd.DataFrame(rows)), AVERAGED)
    assert e.varied.values == (310, 311, 312) and e.varied.diverged == 1 and e.verdict == stats.BEYOND_NOISE
    rows = _rows(AVERAGED, [300, 301, 302], [0, 0, 0], diverged=(0, 1, 2))
    assert _effect(sensitivity.measure(pd.DataFrame(rows)), AVERAGED).verdict == sensitivity.ALL_DIVERGED
    # the default measured by older training code only: no comparison across code versions
    rows = _rows(AVERAGED, [300, 301, 302], [310, 311, 312], default_version=1)
    e = _effect(sensitivity.measure(pd.DataFrame(rows)), AVERAGED)
    assert e.verdict == sensitivity.NO_COMMON_VERSION and e.difference is None
    # old and new default rows: the version both arms share is the one compared
    rows += _rows(AVERAGED, [320, 321, 322], [], default_version=2)
    e = _effect(sensitivity.measure(pd.DataFrame(rows)), AVERAGED)
    assert e.default.values == (320, 321, 322) and e.delta == pytest.approx(-10.0)


def test_frame_is_sorted_by_effect_within_each_cell():
    rows = _rows(AVERAGED, [300, 301, 302], [303, 304, 305])
    rows += _rows(SCALED, [], [280, 281, 282])
    rows += _rows("classification momentum 0.1", [4.0, 4.2, 4.4], [6.0, 6.2, 6.4], cell="table2/mnist-100",
                  default_grid="table2")
    rows += _rows("classification learning rate 0.01", [], [3.5, 3.7, 3.9], cell="table2/mnist-100")
    frame = sensitivity.effects_frame(sensitivity.measure(pd.DataFrame(rows)))
    table1 = frame[frame["cell"] == "table1/mnist"]
    assert list(table1["choice"][:2]) == [SCALED, AVERAGED]  # |−20| before |+3|
    assert list(table1["delta"][:2]) == pytest.approx([-20.0, 3.0])
    assert set(table1["verdict"][2:]) == {sensitivity.NOT_RUN}  # unmeasured rows last
    assert list(frame["cell"].unique()) == ["table1/mnist", "table2/mnist-100"]
    table2 = frame[frame["cell"] == "table2/mnist-100"]
    assert list(table2["delta"][:2]) == pytest.approx([2.0, -0.5])
    assert table2["paper"].iloc[0] == pytest.approx(1.9)
    assert table2["share_of_gap"].iloc[1] == pytest.approx(-0.5 / (1.9 - 4.2))  # towards the paper: > 0
    assert table2["delta"][2:].isna().all()  # the choices without rows, after the measured ones


def test_compute_is_core_hours_with_a_packs_share():
    rows = pd.DataFrame([
        {"trial_id": "a", "wall_s": 3600.0, "threads": 2, "workers": 1, "seeds_per_trial": 1, "device": "cpu"},
        {"trial_id": "a", "wall_s": 3600.0, "threads": 2, "workers": 1, "seeds_per_trial": 1, "device": "cpu"},
        {"trial_id": "b", "wall_s": 7200.0, "threads": 4, "workers": 1, "seeds_per_trial": 4, "device": "cuda:0"},
        {"trial_id": "c", "wall_s": math.nan, "threads": 1, "workers": 1, "seeds_per_trial": 1, "device": "cpu"},
    ])
    assert sensitivity.core_hours(rows) == pytest.approx(2.0 + 2.0)  # a once; b's quarter of a pack
    assert sensitivity.devices(rows) == "cpu x2 + cuda x1"
    assert math.isnan(sensitivity.core_hours(rows[rows["trial_id"] == "c"]))


# -- the report ---------------------------------------------------------------------------------


def test_nothing_is_written_without_sensitivity_rows(tmp_path):
    out = tmp_path / "reports"
    assert sensitivity.write_sensitivity_report(tmp_path / "none", out) == []
    assert not out.exists()
    results = tmp_path / "results"  # the tables' own rows (the defaults) are not the study's
    write_results(results, _rows(AVERAGED, [300, 301, 302], []))
    assert sensitivity.write_sensitivity_report(results, out) == []
    assert not out.exists()


def test_report_shows_each_choice_sorted_with_profile_compute_and_caveat(tmp_path):
    results = tmp_path / "results"
    rows = _rows(AVERAGED, [300, 301, 302], [303, 304, 305], wall=1800.0)
    rows += _rows(SCALED, [], [280, 281, 282], wall=1800.0)
    rows += _rows("no input noise", [4.0, 4.2, 4.4], [6.0, 6.2, 6.4], cell="table2/mnist-100",
                  default_grid="table2", wall=3600.0)
    write_results(results, rows)
    paths = sensitivity.write_sensitivity_report(results, tmp_path / "reports")
    names = [p.relative_to(tmp_path / "reports").as_posix() for p in paths]
    assert names == ["sensitivity.md", "sensitivity.html", "figures/sensitivity.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md, page = paths[0].read_text(), paths[1].read_text()
    for text in (md, page):
        assert sensitivity.CAVEAT in text and sensitivity.NO_DEFAULT_CHANGES in text
        assert "Welch" in text and "quick (10 epochs, fp32)" in text
        assert "1.5 core-h" in text  # 3 varied seeds x 0.5 h (1 thread each)
        assert "figures/sensitivity.png" in text and sensitivity.NOT_RUN in text
    lines = md.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"| {SCALED} "))
    second = next(i for i, line in enumerate(lines) if line.startswith(f"| {AVERAGED} "))
    assert first < second  # |−20| before |+3|
    assert "-20 [" in lines[first] and stats.BEYOND_NOISE in lines[first]
    assert "Generated by:" in md and "## table2/mnist-100, `quick` profile, fp32" in md
    assert "<table" in page and "musyoku/adversarial-autoencoder" in page


def test_aae_bench_report_writes_the_study_and_links_it_from_the_index(tmp_path):
    from bench import report

    results, out = tmp_path / "results", tmp_path / "reports"
    write_results(results, _rows(AVERAGED, [300, 301, 302], [303, 304, 305], wall=1800.0))
    written = report.write_report(results, out)
    assert out / "sensitivity.html" in written and out / "sensitivity.md" in written
    assert '<a href="sensitivity.html">' in (out / "index.html").read_text()
    assert "(sensitivity.md)" in (out / "report.md").read_text()
    bare = tmp_path / "bare"  # the tables' rows only: no study page, no link
    write_results(tmp_path / "plain", _rows(AVERAGED, [300, 301, 302], []))
    report.write_report(tmp_path / "plain", bare)
    assert not (bare / "sensitivity.html").exists()
    assert "sensitivity.html" not in (bare / "index.html").read_text()
    # A page left in the out directory by an earlier run is not linked when the rows have none.
    report.write_report(tmp_path / "plain", out)
    assert (out / "sensitivity.html").exists()  # left alone, but no longer linked
    assert "sensitivity.html" not in (out / "index.html").read_text()
    assert "(sensitivity.md)" not in (out / "report.md").read_text()


def test_bf16_arms_pair_with_the_bf16_default_only():
    # `aae-bench run sensitivity --precision bf16`: both arms at bf16, new trial ids. A bf16 choice
    # is read against the bf16 default, never the fp32 table trials, and each is its own group.
    rows = _rows(AVERAGED, [300, 301, 302], [290, 291, 292])  # fp32: delta -10
    rows += _rows(AVERAGED, [310, 311, 312], [311, 312, 313], precision="bf16", default_grid="sensitivity")
    effects = sensitivity.measure(pd.DataFrame(rows))
    by_precision = {e.precision: _effect([x for x in effects if x.precision == e.precision], AVERAGED)
                    for e in effects}
    assert set(by_precision) == {"no", "bf16"}
    assert by_precision["no"].delta == pytest.approx(-10.0)
    assert by_precision["bf16"].delta == pytest.approx(1.0)
    assert by_precision["bf16"].default.values == (310.0, 311.0, 312.0)
    frame = sensitivity.effects_frame(effects)
    assert list(frame.drop_duplicates(["cell", "precision"])["precision"]) == ["fp32", "bf16"]
    md = sensitivity.markdown(frame, [])
    assert "## table1/mnist, `quick` profile, bf16" in md and "quick (10 epochs, bf16)" in md
    assert "Our default (the cell's config at bf16)" in md and "Our default (the table's own trials)" in md
    fp32_rows = len(_rows(AVERAGED, [300, 301, 302], [290, 291, 292]))
    only_bf16 = sensitivity.measure(pd.DataFrame(rows[fp32_rows:]))
    assert {e.precision for e in only_bf16} == {"bf16"}
