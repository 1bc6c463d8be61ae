"""bench.precision: fp32 against bf16 per cell, on fabricated rows with known answers."""

import pandas as pd
import pytest
from report_fixtures import fake_config, fake_trial_rows

from bench import precision, results


def rows(lls_fp32, lls_bf16, *, wall_fp32=3600.0, wall_bf16=2400.0, **changes):
    out = []
    for precision_name, lls, wall in (("no", lls_fp32, wall_fp32), ("bf16", lls_bf16, wall_bf16)):
        for seed, ll in enumerate(lls):
            config = fake_config(seed, "quick", precision=precision_name, **changes)
            out += fake_trial_rows(config, {"parzen_ll": ll, "parzen_sigma": 0.2}, wall_s=wall)
    return results.to_frame(out)


def test_a_shift_within_the_seed_noise_allows_bf16():
    (c,) = precision.compare(rows([300.0, 302.0, 304.0], [301.0, 303.0, 305.0]))
    assert c.metric == "parzen_ll" and c.variant == "unsupervised"
    assert c.fp32 == (300.0, 302.0, 304.0) and c.bf16 == (301.0, 303.0, 305.0)
    assert c.difference.delta == pytest.approx(1.0)
    assert c.bf16_allowed and not c.difference.significant
    assert c.speedup == pytest.approx(1.5)  # 1 h against 40 min per seed
    assert c.fp32_hours == pytest.approx(1.0)  # a mean per seed, not a sum over seeds


def test_a_shift_beyond_two_standard_errors_keeps_bf16_off():
    (c,) = precision.compare(rows([300.0, 300.5, 301.0], [310.0, 310.5, 311.0]))
    assert not c.bf16_allowed and c.difference.significant
    text = precision.markdown([c], ["made by a test"])
    assert "bf16 stays off for this variant" in text and "beyond 2 s.e." in text


def test_cells_pair_only_the_same_config_and_need_both_precisions():
    frame = pd.concat([rows([300.0, 302.0], [301.0, 303.0]),
                       rows([200.0, 201.0], [200.5, 201.5], z_dim=10)])
    assert len(precision.compare(frame)) == 2
    only_fp32 = frame[frame["precision"] == "no"]
    assert precision.compare(only_fp32) == []
    assert "No cell has done rows in both precisions" in precision.markdown([], [])


def test_diverged_trials_are_left_out():
    frame = rows([300.0, 302.0, 304.0], [301.0, 303.0, 305.0])
    frame.loc[(frame["precision"] == "bf16") & (frame["seed"] == 2), "status"] = "diverged"
    (c,) = precision.compare(frame)
    assert c.bf16 == (301.0, 303.0)


# -- the precision_check grid: one cell of each variant, the owner grid's own trials ------------

CAMPAIGN_GRIDS = ("table1", "table2", "table3", "dim_reduction", "figure2", "figure4", "figure5_6",
                  "figure9", "figure11")


@pytest.mark.parametrize("profile", ["smoke", "quick", "long"])
def test_the_precision_check_has_one_cell_of_every_variant_the_campaign_runs(profile):
    from bench import grids

    configs = grids.grid_configs("precision_check", profile, 3)
    variants = {c.variant for g in CAMPAIGN_GRIDS for c in grids.GRIDS[g](profile, 1)}
    assert {c.variant for c in configs} == variants
    for variant in variants:
        mine = [c for c in configs if c.variant == variant]
        assert len({results.cell_key(c) for c in mine}) == 1 and [c.seed for c in mine] == [0, 1, 2]
    # the owner grids' own trials: a check run finds a table's trials done, and feeds its table
    owned = {c.trial_id for g in CAMPAIGN_GRIDS for c in grids.GRIDS[g](profile, 3)}
    assert {c.trial_id for c in configs} <= owned
    assert {c.grid for c in configs} == {"precision_check"}


def test_a_precision_check_row_that_picks_no_cell_or_many_is_an_error(monkeypatch):
    from bench import grids
    from bench.config import ConfigError

    monkeypatch.setattr(grids, "PRECISION_CHECK", (("table3", dict(clusters=17)),))
    with pytest.raises(ConfigError, match=r"picks 0 cells of grid table3, not 1"):
        grids.grid_configs("precision_check", "quick", 1)
    monkeypatch.setattr(grids, "PRECISION_CHECK", (("table3", dict(dataset="mnist")),))
    with pytest.raises(ConfigError, match=r"picks 2 cells of grid table3, not 1"):
        grids.grid_configs("precision_check", "quick", 1)


def test_the_end_of_a_precision_check_run_prints_the_comparison(tmp_path):
    from bench import report

    frame = rows([300.0, 302.0, 304.0], [301.0, 303.0, 305.0])
    results.append_rows(tmp_path, "precision_check", frame.to_dict("records"))
    text = report.markdown_for_grid(tmp_path, "precision_check")
    assert text.startswith("# Does bf16 change the answer?")
    assert "| +1.000 [" in text and "within 2 s.e." in text
