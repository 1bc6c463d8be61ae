"""The regression gate on real runs: the committed smoke baseline passes on the unchanged code
and fails on a planted regression (a changed learning rate)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench import regress, results
from bench.grids import grid_configs
from bench.trial import run_trial

BASELINE = Path(__file__).parent / "baselines" / "table1-smoke.json"


def run_grid(directory, mnist, **change):
    # threads=1: the runner's default per trial, and what the baseline was made with.
    for config in grid_configs("table1", "smoke", 3, ("mnist",)):
        results.append_rows(directory, "table1",
                            run_trial(dataclasses.replace(config, **change), data=mnist, threads=1))


def test_gate_passes_on_unchanged_code(tmp_path, mnist):
    run_grid(tmp_path, mnist)
    code, text = regress.check(BASELINE, tmp_path)
    assert code == 0, text


def test_gate_fails_on_a_planted_learning_rate_change(tmp_path, mnist):
    run_grid(tmp_path, mnist, recon_lr=0.03)
    code, text = regress.check(BASELINE, tmp_path)
    assert code == 1, text
    assert "loss_reconstruction" in text


def test_gate_compares_cell_by_cell(tmp_path, mnist):
    """Rows of another cell of the grid (here MNIST data under a TFD-fold config) are not
    pooled into the baseline's MNIST cell."""
    run_grid(tmp_path, mnist)
    other = dataclasses.replace(grid_configs("table1", "smoke", 1, ("tfd",))[0], z_dim=4)
    results.append_rows(tmp_path, "table1", run_trial(other, data=mnist, threads=1))
    code, text = regress.check(BASELINE, tmp_path)
    assert code == 0, text


def test_gate_unusable_input(tmp_path):
    code, _ = regress.check(tmp_path / "missing.json", tmp_path)
    assert code == 2
