"""--seeds-per-trial: seeds of one config packed into one Tune trial, whose rows are still those
of each seed's own trial (same form, same trial id), so packed and unpacked runs merge."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import subprocess
from types import SimpleNamespace

import pytest
from test_sweeps import (  # noqa: F401 (ray_env: a fixture)
    AAE_BENCH,
    EPOCHS_KILLED,
    Clock,
    ray_env,
    sigkill_driver_when,
)

from bench import cli, progress, results, runner
from bench.grids import grid_configs
from bench.packs import (
    pack_configs,
    pack_from_params,
    pack_members,
    pack_name,
    pack_params,
    pack_trial_ids,
)
from bench.versions import TRAINING_VERSION


def smoke(seeds: int, epochs: int = 2) -> list:
    """Table 1's MNIST cell at the smoke profile, `epochs` epochs (as `run --epochs` makes it)."""
    return [dataclasses.replace(c, epochs=epochs) for c in grid_configs("table1", "smoke", seeds, ("mnist",))]


def done_row(config, metric: str = "parzen_ll") -> dict:
    # Of the current training version: a row without one is stale (bench.versions).
    return {"trial_id": config.trial_id, "grid": config.grid, "seed": config.seed,
            "metric": metric, "value": -1.0, "status": "done", "error": "", "finished_at": "t",
            "training_version": TRAINING_VERSION}


# -- packing (no Ray) ------------------------------------------------------------------------


def test_seeds_of_one_config_are_packed_in_grid_order_by_seed():
    configs = grid_configs("table1", "smoke", 5)  # MNIST, then TFD (one trial per seed): 2 cells x 5 seeds
    shuffled = configs[:]
    random.Random(0).shuffle(shuffled)
    packs = pack_configs(configs, 2)
    assert [len(p) for p in packs] == [2, 2, 1] * 2
    for pack in packs:  # members differ only in their seed
        assert len({dataclasses.replace(c, seed=0) for c in pack}) == 1
    assert [[c.seed for c in p] for p in packs[:3]] == [[0, 1], [2, 3], [4]]
    cells = [(p[0].dataset, p[0].fold) for p in packs[::3]]
    assert cells == [("mnist", None), ("tfd", None)]
    # order within a group is by seed whatever the input order; groups by first appearance
    for pack in pack_configs(shuffled, 2):
        assert [c.seed for c in pack] == sorted(c.seed for c in pack)
    first_cells = list(dict.fromkeys((c.dataset, c.fold) for c in shuffled))
    assert list(dict.fromkeys((p[0].dataset, p[0].fold) for p in pack_configs(shuffled, 2))) == first_cells
    assert sorted(c.trial_id for p in packs for c in p) == sorted(c.trial_id for c in configs)
    assert pack_configs(configs, 1) == [(c,) for c in configs]  # as before: one per trial
    assert [len(p) for p in pack_configs(configs, 10)] == [5] * 2


def test_configs_that_differ_in_more_than_the_seed_are_not_packed():
    a = smoke(2)
    b = [dataclasses.replace(c, recon_lr=0.02) for c in a]
    packs = pack_configs([a[0], b[0], a[1], b[1]], 2)
    assert [[c.trial_id for c in p] for p in packs] == [[a[0].trial_id, a[1].trial_id],
                                                        [b[0].trial_id, b[1].trial_id]]


def test_only_seeds_without_done_rows_are_packed(tmp_path):
    configs = smoke(5)
    results.append_rows(tmp_path, "table1", [done_row(c) for c in configs[:3]])
    # a failed seed is pending again, and is packed with the new ones
    results.append_rows(tmp_path, "table1", [{**done_row(configs[1]), "status": "diverged"}])
    packs = pack_configs(runner.pending_configs(configs, tmp_path), 2)
    assert [[c.seed for c in p] for p in packs] == [[1, 3], [4]]


def test_a_tune_trial_config_holds_its_members_and_a_pack_of_one_is_a_plain_trial():
    a, b, c = smoke(3)
    single = pack_params((a,))
    assert single == a.as_dict() | {"trial_id": a.trial_id}  # exactly an unpacked sweep's
    assert pack_from_params(single) == (a,)
    assert pack_name(pack_trial_ids(single)) == a.trial_id
    params = pack_params((a, b, c))
    assert pack_from_params(params) == (a, b, c)
    assert pack_trial_ids(params) == [a.trial_id, b.trial_id, c.trial_id]
    assert pack_members(params)[1] == b.as_dict() | {"trial_id": b.trial_id}
    assert pack_name(pack_trial_ids(params)) == f"{a.trial_id}+2"
    # an interrupted pack is unfinished as all its members
    interrupted = SimpleNamespace(config={"config": params}, metrics={"epoch": 1}, error=None)
    assert runner._unfinished([interrupted]) == [a.trial_id, b.trial_id, c.trial_id]


def test_seeds_per_trial_is_validated_and_must_match_to_restore(tmp_path):
    with pytest.raises(ValueError, match="--seeds-per-trial must be >= 1; got 0"):
        runner.Resources(seeds_per_trial=0)
    configs = smoke(2)
    claim = {configs[0].trial_id}
    key = runner.sweep_key("table1", tmp_path)
    packed = runner.Resources(seeds_per_trial=2)
    experiment = runner.start_experiment(tmp_path, key, configs, tmp_path, packed)
    assert experiment.trial_ids == tuple(c.trial_id for c in configs)  # members, not packs
    sweep = runner._Sweep(configs, {}, tmp_path, tmp_path, key, runner.Resources(), None, "")
    assert "other resources" in sweep._why_not_restore(experiment, claim)
    # same packs: restorable (here it fails only because Tune saved nothing yet)
    assert "no state" in dataclasses.replace(sweep, resources=packed)._why_not_restore(experiment, claim)
    # a record written before seeds_per_trial existed ran one seed per trial
    older = dataclasses.replace(experiment, resources={
        k: v for k, v in dataclasses.asdict(runner.Resources()).items() if k != "seeds_per_trial"})
    assert "no state" in sweep._why_not_restore(older, claim)


def test_cli_refuses_a_bad_seeds_per_trial_and_dry_run_shows_the_packs(capsys):
    assert cli.main(["run", "table1", "--seeds-per-trial", "0", "--dry-run", "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds-per-trial must be >= 1" in err
    assert cli.main(["run", "table1", "--profile", "smoke", "--dataset", "mnist", "--seeds", "3",
                     "--seeds-per-trial", "2", "--dry-run", "--no-estimate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    a, b, c = smoke(3, epochs=1)
    assert lines[0].startswith(f"{a.trial_id}+1  table1  smoke  unsupervised/mnist/gaussian  seeds 0, 1")
    assert lines[0].endswith(f"trials {a.trial_id} {b.trial_id}")
    assert lines[1].startswith(f"{c.trial_id}  ") and "seeds 2 " in lines[1]
    assert lines[2] == "3 trials in 2 Tune trials of up to 2 seeds"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "one seed-batched model" in " ".join(capsys.readouterr().out.split())


# -- progress of packs (no Ray) ------------------------------------------------------------


def test_a_pack_starts_finishes_and_fails_as_its_members(tmp_path):
    a, b = smoke(2)
    lines: list[str] = []
    clock = Clock()
    live = progress.Progress(tmp_path, {c.trial_id: (runner._label(c), c.epochs) for c in (a, b)},
                             out=lines.append, clock=clock)
    trial = SimpleNamespace(config={"config": pack_params((a, b))}, error_file=None)
    callback = progress.SweepCallback("test-pack")
    with progress.registered("test-pack", live):
        callback.on_trial_result(0, [], trial, {"started": True, "node_ip": "10.0.0.1"})
        assert lines == [f"[start] {a.trial_id} unsupervised/mnist seed 0 on 10.0.0.1",
                         f"[start] {b.trial_id} unsupervised/mnist seed 1 on 10.0.0.1"]
        clock.now = 10.0
        callback.on_trial_result(0, [], trial, {"epoch": 1, "loss_reconstruction": 50.0,
                                                "seconds": 9.0})
        # one line per pack and epoch; the ETA counts each seed's epochs: 2 trained in 10 s, 2 left
        assert lines[-1] == f"[epoch] {a.trial_id}+1 1/2 recon 50 (9.0 s) (mean of 2 seeds)"
        assert live.eta_s() == pytest.approx(10.0)
        callback.on_trial_recover(0, [], trial)
        assert lines[-1].startswith(f"[retry] {a.trial_id}+1 unsupervised/mnist seed 0 and 1 more")

        rows = [{**done_row(a), "seeds_per_trial": 2}, {**done_row(a, "parzen_sigma"), "seeds_per_trial": 2},
                {**done_row(b), "status": "diverged", "value": float("nan"), "error": "non-finite",
                 "seeds_per_trial": 2}]
        callback.on_trial_result(0, [], trial, {"completed": True, "rows": json.dumps(rows)})
        assert lines[-2].startswith(f"[done] {a.trial_id} unsupervised/mnist seed 0: parzen_ll = -1")
        assert lines[-1].startswith(f"[diverged] {b.trial_id} unsupervised/mnist seed 1: non-finite")
        assert "2/2 finished" in lines[-1]
        frame = results.read_rows(tmp_path, "table1")
        assert len(frame) == 3 and results.done_trial_ids(tmp_path, "table1") == {a.trial_id}

        callback.on_trial_error(0, [], trial)  # after Ray's retries: an error row per member
        frame = results.read_rows(tmp_path, "table1")
        errors = frame[frame["status"] == "error"]
        assert sorted(errors["trial_id"]) == sorted([a.trial_id, b.trial_id])
        assert sorted(errors["seed"]) == [0, 1]
        assert sum(line.startswith("[error]") for line in lines) == 2
    assert progress.live("test-pack") is None


# -- real sweeps -----------------------------------------------------------------------------


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([AAE_BENCH, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def sweep_args(results_dir, mnist_dir, seeds: int, seeds_per_trial: int) -> list[str]:
    return ["run", "table1", "--profile", "smoke", "--dataset", "mnist", "--epochs", "2",
            "--seeds", str(seeds), "--seeds-per-trial", str(seeds_per_trial),
            "--results", str(results_dir), "--data-dir", str(mnist_dir), "--no-table"]


def pack_epoch(text: str, name: str) -> int:
    """The furthest epoch a pack's epoch lines report."""
    return max(map(int, re.findall(rf"^\[epoch\] {re.escape(name)} (\d+)/", text, re.M)), default=0)


def per_trial(results_dir):
    frame = results.read_rows(results_dir, "table1")
    assert not frame.duplicated(["trial_id", "metric"]).any()
    return frame, frame.groupby("trial_id").first()


@pytest.mark.ray
@pytest.mark.slow
def test_packed_sweep_writes_each_seeds_rows_and_grows_by_the_new_seed_only(tmp_path, mnist_dir, ray_env):  # noqa: F811
    configs = smoke(4)
    ids = [c.trial_id for c in configs]
    first = run(sweep_args(tmp_path, mnist_dir, 3, 2), ray_env)
    assert "3 trials to run in 2 Tune trials of up to 2 seeds" in first.stdout
    assert re.search(rf"^\[epoch\] {ids[0]}\+1 2/2 .*\(mean of 2 seeds\)$", first.stdout, re.M), first.stdout
    frame, trials = per_trial(tmp_path)
    assert sorted(trials.index) == sorted(ids[:3])  # each seed under its unbatched trial id
    assert (frame["status"] == "done").all() and (frame["epochs_done"] == 2).all()
    assert list(trials.loc[ids[:3], "seed"]) == [0, 1, 2]
    assert list(trials.loc[ids[:3], "seeds_per_trial"]) == [2, 2, 1]
    metrics = frame.groupby("trial_id")["metric"].agg(frozenset)
    assert len(set(metrics)) == 1 and "parzen_ll" in metrics.iloc[0]  # the same rows per seed
    before = frame.set_index(["trial_id", "metric"])["finished_at"]

    grown = run(sweep_args(tmp_path, mnist_dir, 4, 2), ray_env)
    assert "1 trials to run" in grown.stdout
    assert re.findall(r"^\[start\] (\w+)", grown.stdout, re.M) == [ids[3]]
    frame, trials = per_trial(tmp_path)
    assert sorted(trials.index) == sorted(ids) and (frame["status"] == "done").all()
    assert trials.loc[ids[3], "seeds_per_trial"] == 1
    after = frame.set_index(["trial_id", "metric"])["finished_at"]
    assert after.loc[before.index].equals(before)  # done seeds were not run again


@pytest.mark.ray
@pytest.mark.slow
def test_rows_of_packed_and_unpacked_runs_merge_into_one_table(tmp_path, mnist_dir, ray_env):  # noqa: F811
    ids = [c.trial_id for c in smoke(3)]
    run(sweep_args(tmp_path, mnist_dir, 1, 1), ray_env)  # seed 0 alone, unbatched
    unbatched = results.read_rows(tmp_path, "table1")
    packed = run(sweep_args(tmp_path, mnist_dir, 3, 2), ray_env)  # seeds 1 and 2 in one pack
    assert "2 trials to run in 1 Tune trials" in packed.stdout
    frame, trials = per_trial(tmp_path)
    assert sorted(trials.index) == sorted(ids) and (frame["status"] == "done").all()
    assert list(trials.loc[ids, "seeds_per_trial"]) == [1, 2, 2]
    # one table: the same metrics for every seed, and seed 0's rows untouched
    assert len(set(frame.groupby("trial_id")["metric"].agg(frozenset))) == 1
    key = ["trial_id", "metric"]
    mine = frame[frame["trial_id"] == ids[0]].set_index(key).sort_index()
    theirs = unbatched.set_index(key).sort_index()
    assert mine.index.equals(theirs.index)
    for column in ("value", "finished_at", "status"):
        assert mine[column].equals(theirs[column]), column


@pytest.mark.ray
@pytest.mark.slow
def test_killed_packed_sweep_resumes_its_pack_from_the_checkpoint(tmp_path, mnist_dir, ray_env):  # noqa: F811
    """The pack's checkpoint holds every seed: killed mid-training and run again, both seeds
    continue from it and end with the numbers of an uninterrupted pack."""
    a, b = smoke(2, epochs=EPOCHS_KILLED)
    args = sweep_args(tmp_path, mnist_dir, 2, 2)
    args[args.index("--epochs") + 1] = str(EPOCHS_KILLED)
    out = tmp_path / "killed.txt"
    sigkill_driver_when(args, ray_env, out, lambda: pack_epoch(out.read_text(), f"{a.trial_id}+1") >= 3)
    assert results.read_rows(tmp_path, "table1").empty

    again = run(args, ray_env)
    assert "[sweep] restoring" in again.stdout
    resumed = re.findall(r"^\[start\] (\w+) .* continuing from epoch (\d+)", again.stdout, re.M)
    assert sorted(t for t, _ in resumed) == sorted([a.trial_id, b.trial_id]), again.stdout
    assert len({e for _, e in resumed}) == 1 and int(resumed[0][1]) >= 3
    frame, trials = per_trial(tmp_path)
    assert (frame["status"] == "done").all() and (frame["epochs_done"] == EPOCHS_KILLED).all()
    assert list(trials.loc[[a.trial_id, b.trial_id], "resumed_from_epoch"]) == [int(resumed[0][1])] * 2

    from aae_core import datasets
    from bench.trial import run_trial

    straight = run_trial([a, b], data=datasets.load("mnist", mnist_dir), threads=1)
    theirs = {(r["trial_id"], r["metric"]): r["value"] for r in straight}
    ours = frame.set_index(["trial_id", "metric"])["value"].to_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k] == theirs[k] or (math.isnan(ours[k]) and math.isnan(theirs[k])) for k in ours)
