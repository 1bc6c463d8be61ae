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
    # ... but Tune keeps the old limit for the restored trials, and the run says so
    assert runner.kept_concurrency(experiment.resources, runner.Resources()) == ""
    kept = runner.kept_concurrency(experiment.resources, runner.Resources(max_concurrent=4))
    assert "as many as fit" in kept and "--max-concurrent 4 (4 at a time)" in kept
    one = dataclasses.asdict(runner.Resources(max_concurrent=1))
    assert "(1 at a time)" in runner.kept_concurrency(one, runner.Resources(max_concurrent=2))


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


# -- GPUs (#18 items 2, 3, 8): plain functions on fake cluster resources ---------------------


def test_data_parallel_workers_need_whole_gpus():
    """Workers sharing a GPU would be several NCCL ranks on one device ("Duplicate GPU
    detected"), or a rank pointed at a GPU it cannot see: refused in one line."""
    for gpus in (0.5, 0.25, 1.5):
        with pytest.raises(runner.SweepError) as exc:
            runner.Resources(gpus_per_trial=gpus, workers_per_trial=2)
        message = str(exc.value)
        assert "\n" not in message and "whole GPUs" in message and f"{gpus}" in message
    runner.Resources(gpus_per_trial=0.25)  # a fraction packs single-process trials: fine
    runner.Resources(gpus_per_trial=1, workers_per_trial=2)
    runner.Resources(gpus_per_trial=0, workers_per_trial=2)


@pytest.mark.parametrize("cpus,gpus,cluster,expected", [
    (1, 1, {"CPU": 16, "GPU": 2}, 1),  # 2 workers x 1 GPU: one trial at a time (CPUs alone: 8)
    (1, 1, {"CPU": 16, "GPU": 4}, 2),
    (1, 1, {"CPU": 16, "GPU": 5}, 2),  # the fifth GPU cannot hold a trial's two workers
    (4, 1, {"CPU": 16, "GPU": 8}, 2),  # CPUs bind first
    (1, 0, {"CPU": 16, "GPU": 8}, 8),  # CPU workers: the GPUs do not count
    (1, 0, {"CPU": 16}, 8),
])
def test_data_parallel_concurrency_counts_cpus_and_gpus(cpus, gpus, cluster, expected):
    r = runner.Resources(cpus_per_trial=cpus, gpus_per_trial=gpus, workers_per_trial=2)
    assert r.concurrency(cluster.get("CPU", 0), cluster.get("GPU", 0)) == expected
    assert "gpu" not in r.tune_request()  # the waiting Tune process holds no GPU ...
    assert r.worker_request().get("GPU", 0) == gpus  # ... its workers do
    runner._check_resources(cluster, r)  # and the cluster can run one


def test_concurrency_limits_that_are_not_the_runners():
    # given by the user: used as given; single-process trials: Ray packs them by their requests
    assert runner.Resources(gpus_per_trial=1, workers_per_trial=2, max_concurrent=3).concurrency(16, 2) == 3
    assert runner.Resources(gpus_per_trial=0.25).concurrency(16, 2) is None
    assert runner.Resources(gpus_per_trial=0.25).tune_request() == {"cpu": 1.0, "gpu": 0.25}


class FakeRay:
    """The Ray calls run_sweep makes, against fake cluster resources."""

    def __init__(self, cluster: dict):
        self.cluster, self.init_kwargs = cluster, []

    def install(self, monkeypatch):
        import ray

        monkeypatch.setattr(ray, "init", lambda address=None, **kw: self.init_kwargs.append(kw))
        monkeypatch.setattr(ray, "cluster_resources", lambda: dict(self.cluster))
        monkeypatch.setattr(ray, "put", lambda value: value)
        monkeypatch.setattr(ray, "shutdown", lambda: None)


def test_run_sweep_takes_the_clusters_gpus_into_its_concurrency(tmp_path, monkeypatch):
    fake = FakeRay({"CPU": 16.0, "GPU": 2.0})
    fake.install(monkeypatch)
    made = []

    @dataclasses.dataclass
    class RecordingSweep(runner._Sweep):
        def run(self) -> bool:
            made.append(self)
            return False

    monkeypatch.setattr(runner, "_Sweep", RecordingSweep)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    configs = grid_configs("table1", "smoke", 2, ("mnist",))
    runner.run_sweep(configs, {}, results_dir=tmp_path,
                     resources=runner.Resources(gpus_per_trial=1, workers_per_trial=2))
    assert made[0].concurrency == 1  # 2 GPUs hold one trial's two workers (16 CPUs would say 8)
    # every Ray worker (Tune trial, Ray Train worker) starts with cuBLAS's fixed workspace
    assert fake.init_kwargs[0]["runtime_env"] == {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}}


def test_a_users_cublas_workspace_reaches_the_workers_unchanged(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert runner.worker_runtime_env() == {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}}
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    from bench.trial import CUBLAS_WORKSPACE

    assert runner.worker_runtime_env()["env_vars"]["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE


@pytest.mark.ray
def test_ray_workers_start_with_the_cublas_workspace_set(monkeypatch):
    """Set in the worker process's environment before anything runs in it (so before CUDA
    initialises): in a task and in an actor (Tune trials and Ray Train workers are actors)."""
    import os

    import ray

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own value is kept
    runner._prepare_environment()
    runner._connect(None)
    try:
        @ray.remote(num_cpus=0)
        def seen() -> str | None:
            return os.environ.get("CUBLAS_WORKSPACE_CONFIG")

        @ray.remote(num_cpus=0)
        class Seen:
            def value(self) -> str | None:
                return os.environ.get("CUBLAS_WORKSPACE_CONFIG")

        assert ray.get(seen.remote()) == ":16:8"
        assert ray.get(Seen.remote().value.remote()) == ":16:8"
    finally:
        ray.shutdown()
