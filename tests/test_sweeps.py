"""Sweeps that grow, stop and resume: experiment records, progress lines, and real drivers
killed with SIGKILL or interrupted with Ctrl-C, then run again."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import psutil
import pytest

from aae_core import datasets
from bench import progress, results, runner
from bench.grids import grid_configs

AAE_BENCH = str(Path(sys.executable).with_name("aae-bench"))


# -- experiment records (no Ray) ----------------------------------------------------------


def test_sweep_key_is_stable_per_grid_and_results_dir(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.sweep_key("table1", a) == runner.sweep_key("table1", str(a) + "/")
    assert runner.sweep_key("table1", a) != runner.sweep_key("table1", b)
    assert runner.sweep_key("table1", a) != runner.sweep_key("table2", a)


def test_experiments_are_recorded_found_and_finished(tmp_path):
    configs = grid_configs("table1", "smoke", 2, ("mnist",))
    key = runner.sweep_key("table1", tmp_path / "r")
    first = runner.start_experiment(tmp_path, key, configs, tmp_path / "r", runner.Resources())
    second = runner.start_experiment(tmp_path, key, configs[:1], tmp_path / "r", runner.Resources())
    other = runner.start_experiment(tmp_path, runner.sweep_key("table1", tmp_path / "x"), configs,
                                    tmp_path / "x", runner.Resources())
    found = runner.find_experiments(tmp_path, key)
    assert [e.path for e in found] == [first.path, second.path]  # oldest first; not `other`
    assert other.path not in [e.path for e in found]
    assert found[0].trial_ids == tuple(c.trial_id for c in configs) and not found[0].finished
    runner.mark_finished(found[0], "test")
    assert [e.finished for e in runner.find_experiments(tmp_path, key)] == [True, False]


def test_one_driver_per_grid_and_results_dir(tmp_path):
    with runner._exclusive(tmp_path, "k"):
        with pytest.raises(ValueError, match="another aae-bench run"):
            with runner._exclusive(tmp_path, "k"):
                pass
    with runner._exclusive(tmp_path, "k"):  # released
        pass


def test_an_interrupted_tune_run_is_told_apart_from_a_finished_one():
    def result(tid, metrics, error=None):
        return SimpleNamespace(config={"config": {"trial_id": tid}}, metrics=metrics, error=error)

    finished = [result("a", {"completed": True, "rows": "[]"}),
                result("b", {"completed": True, "skipped": True}),
                result("c", {"epoch": 3}, error=RuntimeError("gave up"))]
    assert runner._unfinished(finished) == []
    assert runner._unfinished(finished + [result("d", {"epoch": 2, "completed": False}),
                                          result("e", {})]) == ["d", "e"]


def test_rows_written_during_a_sweep_are_detected(tmp_path):
    row = {"trial_id": "t1", "metric": "m", "value": 1.0, "status": "done", "finished_at": "x"}
    results.append_rows(tmp_path, "g", [row])
    before = runner._row_stamps(tmp_path)
    results.append_rows(tmp_path, "g", [{**row, "trial_id": "t2"}])
    results.append_rows(tmp_path, "g", [{**row, "finished_at": "y"}])
    assert runner._changed(before, runner._row_stamps(tmp_path)) == {"t1", "t2"}


def test_data_parallel_resources_fit_the_cluster():
    r = runner.Resources(cpus_per_trial=1, workers_per_trial=2)
    assert r.cpus_of_trial == 2
    # The idle Tune process and the two workers together ask for exactly 2 CPUs.
    assert r.tune_request()["cpu"] + 2 * r.worker_request()["CPU"] == pytest.approx(2.0)
    assert r.concurrency(2.0) == 1 and r.concurrency(5.0) == 2
    assert runner.Resources().concurrency(2.0) is None  # single worker: Ray packs
    with pytest.raises(ValueError, match="--workers-per-trial"):
        runner.Resources(workers_per_trial=0)
    with pytest.raises(ValueError, match="CPUs"):
        runner._check_resources({"CPU": 2.0}, runner.Resources(workers_per_trial=3))
    with pytest.raises(ValueError, match="divide the batch size"):
        runner._check_divisible(grid_configs("table1", "smoke", 1), runner.Resources(workers_per_trial=3))


# -- progress lines (no Ray) -------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_says_what_runs_where_and_how_long_remains(tmp_path):
    lines: list[str] = []
    clock = Clock()
    p = progress.Progress(tmp_path, {"a": ("unsupervised/mnist seed 0", 4),
                                     "b": ("unsupervised/mnist seed 1", 4)},
                          out=lines.append, clock=clock)
    p.started("a", "127.0.0.2")
    p.started("b", "127.0.0.3", resumed_from=2)
    assert lines[0] == "[start] a unsupervised/mnist seed 0 on 127.0.0.2"
    assert "continuing from epoch 2" in lines[1]
    assert p.eta_s() is None  # nothing measured yet
    clock.now = 10.0
    p.epoch("a", {"epoch": 1, "loss_reconstruction": 100.0, "loss_discriminator": 0.69,
                  "loss_generator": 0.7, "seconds": 9.0})
    assert lines[-1] == "[epoch] a 1/4 recon 100 disc 0.69 gen 0.7 (9.0 s)"
    p.epoch("b", {"epoch": 3, "loss_reconstruction": 50.0, "seconds": 9.0})
    # 2 epochs trained in 10 s; 3 + 1 left -> 20 s
    assert p.eta_s() == pytest.approx(20.0)
    row = {"trial_id": "a", "metric": "parzen_ll", "value": -61.04, "status": "done", "error": ""}
    p.rows("a", "table1", [row])
    assert lines[-1].startswith("[done] a unsupervised/mnist seed 0: parzen_ll = -61.04")
    assert "1/2 finished, 1 running, about 5 s left" in lines[-1]  # b: 1 epoch left
    assert results.done_trial_ids(tmp_path, "table1") == {"a"}
    p.error("b", "table1", {"trial_id": "b", "metric": "parzen_ll", "value": math.nan,
                            "status": "error", "error": "boom"})
    assert lines[-1].startswith("[error] b") and "2/2 finished" in lines[-1]
    assert results.done_trial_ids(tmp_path, "table1") == {"a"}  # an error is never done


def test_error_row_names_the_primary_metric_of_the_grid():
    config = grid_configs("table2", "smoke", 1)[0]
    row = progress.error_row(config.as_dict() | {"trial_id": config.trial_id}, "boom")
    assert row["metric"] == "classification_error" and row["status"] == "error"
    assert row["trial_id"] == config.trial_id and row["finished_at"]
    # from the builder of done rows: what the driver knows of the run, the config, no gaps
    known = progress.error_row(config.as_dict() | {"trial_id": config.trial_id}, "boom",
                               {"threads": 1, "workers": 1, "seeds_per_trial": 1, "command": "x"})
    assert known["threads"] == 1 and known["command"] == "x" and known["n"] == 0
    for key, value in row.items():  # a row without a context lacks those, and only those
        assert key in known and (key == "finished_at" or value == known[key]
                                 or (math.isnan(value) and math.isnan(known[key]))), key
    assert set(known) - set(row) == {"threads", "workers", "seeds_per_trial", "command"}


def test_duration():
    assert progress.duration(45) == "45 s"
    assert progress.duration(200) == "3 min 20 s"
    assert progress.duration(7500) == "2 h 05 min"


# -- real drivers, stopped and run again ---------------------------------------------------


@pytest.fixture
def ray_env():
    """An environment whose Ray lives in a temp dir of its own; every process still carrying
    it at the end (a killed driver's Ray lingers for a minute) is killed by PID."""
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: unix socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=tmp, PYTHONUNBUFFERED="1")
    try:
        yield env
    finally:
        kill_processes_with(f"RAY_TMPDIR={tmp}")
        shutil.rmtree(tmp, ignore_errors=True)


def kill_processes_with(marker: str) -> None:
    key, value = marker.split("=", 1)
    for _ in range(3):
        found = False
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.pid != os.getpid() and proc.environ().get(key) == value:
                    proc.kill()
                    found = True
            except (psutil.Error, OSError):
                continue
        if not found:
            return
        time.sleep(0.5)


def wait_for(condition, proc: subprocess.Popen, out: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"driver ended early ({proc.returncode}):\n{out.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out:\n{out.read_text()[-3000:]}")
        time.sleep(0.3)


def sigkill_driver_when(args: list[str], env: dict, out: Path, ready) -> None:
    """Start `aae-bench ARGS` (output to `out`), and SIGKILL it once `ready()` holds and Tune's
    snapshot has had time to record the latest checkpoint."""
    driver = subprocess.Popen([AAE_BENCH, *args], env=env, stdout=open(out, "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_for(ready, driver, out)
        time.sleep(3)  # > TUNE_GLOBAL_CHECKPOINT_S: Tune's snapshot holds that checkpoint
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()


def epochs_seen(text: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for trial, epoch in re.findall(r"^\[epoch\] (\w+) (\d+)/", text, re.M):
        seen[trial] = max(seen.get(trial, 0), int(epoch))
    return seen


def running_epoch(text: str) -> int:
    """The furthest epoch of a trial that has not finished yet."""
    finished = set(re.findall(r"^\[(?:done|diverged|error)\] (\w+)", text, re.M))
    return max((e for t, e in epochs_seen(text).items() if t not in finished), default=0)


def n_done(results_dir: Path) -> int:
    return len(results.done_trial_ids(results_dir, "table1"))


# Enough epochs that the trial being killed is still running 3 s after its epoch 3 (a smoke
# epoch takes about 0.5 s here): with 8, the second trial sometimes finished before the kill.
EPOCHS_KILLED = 20


@pytest.mark.ray
@pytest.mark.slow
def test_killed_driver_then_rerun_gives_the_rows_of_an_uninterrupted_sweep(tmp_path, mnist_dir, ray_env):
    results_dir = tmp_path / "results"
    args = ["run", "table1", "--profile", "smoke", "--seeds", "3", "--dataset", "mnist",
            "--epochs", str(EPOCHS_KILLED), "--max-concurrent", "1", "--results", str(results_dir),
            "--data-dir", str(mnist_dir), "--no-table"]
    out = tmp_path / "killed.txt"
    # One trial done (its rows written); the next one past a few epochs (checkpoints).
    sigkill_driver_when(args, ray_env, out,
                        lambda: n_done(results_dir) == 1 and running_epoch(out.read_text()) >= 3)
    killed = out.read_text()
    first = re.search(r"^\[done\] (\w+)", killed, re.M).group(1)
    interrupted = next(t for t in epochs_seen(killed) if t != first)
    assert n_done(results_dir) == 1

    again = subprocess.run([AAE_BENCH, *args], env=ray_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[sweep] restoring" in again.stdout
    resumed = re.search(rf"^\[start\] {interrupted} .* continuing from epoch (\d+)", again.stdout, re.M)
    assert resumed, again.stdout
    assert int(resumed.group(1)) >= 3
    assert f"[start] {first}" not in again.stdout  # done trials never run again

    frame = results.read_rows(results_dir, "table1")
    assert not frame.duplicated(["trial_id", "metric"]).any()
    by_trial = frame.groupby("trial_id")["resumed_from_epoch"].first()
    assert by_trial[interrupted] == int(resumed.group(1))
    assert (by_trial.drop(interrupted) == 0).all()

    # The same trials uninterrupted, one after another in this process, same thread count.
    from bench.trial import run_trial

    data = datasets.load("mnist", mnist_dir)
    reference = tmp_path / "reference"
    for config in grid_configs("table1", "smoke", 3, ("mnist",)):
        results.append_rows(reference, "table1",
                            run_trial(dataclasses.replace(config, epochs=EPOCHS_KILLED), data=data, threads=1))
    ours = results.read_rows(results_dir, "table1").set_index(["trial_id", "metric"])
    theirs = results.read_rows(reference, "table1").set_index(["trial_id", "metric"])
    assert sorted(ours.index) == sorted(theirs.index)
    pd.testing.assert_series_equal(ours["value"].sort_index(), theirs["value"].sort_index(),
                                   check_exact=True)
    assert (ours["epochs_done"] == EPOCHS_KILLED).all()


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_says_interrupted_and_a_grown_rerun_finishes(tmp_path, mnist_dir, ray_env):
    results_dir = tmp_path / "results"
    common = ["run", "table1", "--profile", "smoke", "--dataset", "mnist", "--epochs", "6",
              "--results", str(results_dir), "--data-dir", str(mnist_dir), "--no-table"]
    out = tmp_path / "interrupted.txt"
    # Its own process group, which gets the SIGINT, as a terminal's Ctrl-C does.
    driver = subprocess.Popen([AAE_BENCH, *common, "--seeds", "2"], env=ray_env,
                              stdout=open(out, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: max(epochs_seen(out.read_text()).values(), default=0) >= 2, driver, out)
        os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    text = out.read_text()
    assert code == 130, text
    assert "sweep interrupted" in text and "run the same command again" in text
    assert "Tuner.restore" not in text  # Ray's advice is not for our user
    assert n_done(results_dir) < 2

    # Run again with one more seed: the interrupted experiment is restored for its two trials,
    # the new seed runs in a new experiment; every trial ends done exactly once.
    again = subprocess.run([AAE_BENCH, *common, "--seeds", "3"], env=ray_env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[sweep] restoring" in again.stdout
    assert re.search(r"^\[sweep\] table1: 1 trials to run", again.stdout, re.M), again.stdout
    frame = results.read_rows(results_dir, "table1")
    assert n_done(results_dir) == 3
    assert not frame.duplicated(["trial_id", "metric"]).any()


@pytest.mark.ray
@pytest.mark.slow
def test_trial_done_after_tunes_last_snapshot_is_skipped_on_restore(tmp_path, mnist_dir, ray_env):
    """Tune's state can be older than the rows: a trial finished, its rows written, then the
    driver died before Tune saved that. Restored, Tune would run it again; the rows win."""
    results_dir = tmp_path / "results"
    args = ["run", "table1", "--profile", "smoke", "--seeds", "2", "--dataset", "mnist",
            "--epochs", "2", "--max-concurrent", "1", "--results", str(results_dir),
            "--data-dir", str(mnist_dir), "--no-table"]
    # Snapshots only when a checkpoint forces one (never on a timer): the first trial's end
    # is then known to the rows, not to Tune, until the second trial checkpoints.
    env = {**ray_env, "TUNE_GLOBAL_CHECKPOINT_S": "100000"}
    out = tmp_path / "killed.txt"
    driver = subprocess.Popen([AAE_BENCH, *args], env=env, stdout=open(out, "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: n_done(results_dir) == 1, driver, out)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    first = re.search(r"^\[done\] (\w+)", out.read_text(), re.M).group(1)
    before = results.read_rows(results_dir, "table1")

    again = subprocess.run([AAE_BENCH, *args], env=ray_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[sweep] restoring" in again.stdout
    assert f"[skip] {first}" in again.stdout, again.stdout
    assert f"[start] {first}" not in again.stdout
    after = results.read_rows(results_dir, "table1")
    assert n_done(results_dir) == 2 and not after.duplicated(["trial_id", "metric"]).any()
    mine = lambda frame: frame[frame["trial_id"] == first].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(mine(before)[before.columns], mine(after)[before.columns])
