"""The Ray Tune runner: divergence becomes a row, not a crash; failures are retried."""

from __future__ import annotations

import dataclasses

import pytest

from aae_core import datasets
from bench import results, runner
from bench.grids import grid_configs


@pytest.mark.ray
def test_diverged_trial_is_a_row_and_is_retried(tmp_path, mnist_dir):
    ok, = grid_configs("table1", "smoke", 1, ("mnist",))  # table1 also has TFD cells
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
    # rows say which Ray node ran them (one host may hold several) and that nothing resumed
    done = frame[frame["trial_id"] == ok.trial_id]
    assert done["node_id"].str.len().eq(56).all() and done["node_ip"].notna().all()
    assert (done["resumed_from_epoch"] == 0).all() and (done["workers"] == 1).all()
    # the experiment is recorded as finished: the next sweep starts a new one for the retry
    experiments = runner.find_experiments(tmp_path / "ray", runner.sweep_key("table1", tmp_path))
    assert len(experiments) == 1 and experiments[0].finished
    assert set(experiments[0].trial_ids) == {ok.trial_id, bad.trial_id}


def test_resources_validation():
    with pytest.raises(ValueError, match="--gpus-per-trial"):
        runner.Resources(gpus_per_trial=-1)
    with pytest.raises(ValueError, match="GPUs"):
        runner._check_resources({"CPU": 2.0}, runner.Resources(gpus_per_trial=0.5))
    with pytest.raises(ValueError, match="GPUs"):  # every worker of a trial needs its share
        runner._check_resources({"CPU": 4.0, "GPU": 1.0},
                                runner.Resources(gpus_per_trial=0.75, workers_per_trial=2))
    assert runner.Resources(cpus_per_trial=2.5).threads == 2


def test_an_experiment_is_restored_only_for_unfinished_trials_and_the_same_resources(tmp_path):
    configs = grid_configs("table1", "smoke", 2, ("mnist",))
    key = runner.sweep_key("table1", tmp_path)
    experiment = runner.start_experiment(tmp_path, key, configs, tmp_path, runner.Resources())
    sweep = runner._Sweep(configs, {}, tmp_path, tmp_path, key, runner.Resources(), None, "")
    assert "done" in sweep._why_not_restore(experiment, set())
    # Tune has saved nothing yet (its driver died before the first snapshot)
    assert "no state" in sweep._why_not_restore(experiment, {configs[0].trial_id})
    other = dataclasses.replace(sweep, resources=runner.Resources(cpus_per_trial=2))
    assert "other resources" in other._why_not_restore(experiment, {configs[0].trial_id})
    # how many trials run at once does not change a trial's numbers: no reason to start over
    more = dataclasses.replace(sweep, resources=runner.Resources(max_concurrent=4))
    assert "other resources" not in more._why_not_restore(experiment, {configs[0].trial_id})


def test_the_embedded_default_starts_a_ray_of_its_own(monkeypatch):
    """With no address, a cluster that `ray start` left on this host must not be joined (ray.init
    without an address joins it and then refuses num_cpus): the runner asks for "local"."""
    import ray

    from bench import runner

    calls = []
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: calls.append((address, kw)))
    runner._connect(None)
    runner._connect("10.0.0.1:6379")
    assert calls[0][0] == "local" and calls[0][1]["num_cpus"] >= 1
    assert calls[1][0] == "10.0.0.1:6379" and "num_cpus" not in calls[1][1]
