"""The Ray Tune runner: divergence becomes a row, not a crash; failures are retried."""

from __future__ import annotations

import dataclasses

import pytest

from aae_core import datasets
from bench import results, runner
from bench.grids import grid_configs


@pytest.mark.ray
def test_diverged_trial_is_a_row_and_is_retried(tmp_path, mnist_dir):
    ok, = grid_configs("table1", "smoke", 1)
    bad = dataclasses.replace(ok, recon_lr=50.0)  # blows up in the first epoch
    data = {("mnist", 0): datasets.load("mnist", mnist_dir)}
    summary = runner.run_sweep([ok, bad], data, results_dir=tmp_path)
    assert summary.statuses == {"done": 1, "diverged": 1}
    frame = results.read_rows(tmp_path, "table1")
    failed = frame[frame["trial_id"] == bad.trial_id]
    assert list(failed["status"]) == ["diverged"]
    assert "non-finite" in failed["error"].iloc[0]
    assert results.done_trial_ids(tmp_path, "table1") == {ok.trial_id}
    # the next run retries the diverged trial (and only it)
    assert [c.trial_id for c in runner.pending_configs([ok, bad], tmp_path)] == [bad.trial_id]


def test_resources_validation():
    with pytest.raises(ValueError, match="--gpus-per-trial"):
        runner.Resources(gpus_per_trial=-1)
    with pytest.raises(ValueError, match="GPUs"):
        runner._check_resources({"CPU": 2.0}, runner.Resources(gpus_per_trial=0.5))
    assert runner.Resources(cpus_per_trial=2.5).threads == 2
