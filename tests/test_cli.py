"""The real commands with tiny budgets: `run` through a local Ray, bad input, missing data."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from bench import cli, results


def row_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.glob("*/*.csv"))}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,words", [
    (["run", "table1", "--profile", "huge"], "smoke, quick, long, paper"),
    (["run", "table1", "--profile", "smoke", "--seeds", "-2"], "--seeds must be >= 1"),
    (["run", "table9"], "valid: table1"),
    (["run", "table1", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_values_one_line_and_exit_2(capsys, tmp_path, args, words):
    code, out, err = run_cli(capsys, *args, *(["--results", str(tmp_path / "r")] if args[0] == "run" and args[1] == "table1" else []))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_dry_run_prints_trials(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "3",
                           "--dry-run", "--no-estimate", "--results", str(tmp_path))
    assert code == 0
    assert out.strip().splitlines()[-1] == "6 trials"  # 3 MNIST + 3 TFD (one per seed, every fold scored)
    assert not list(tmp_path.iterdir())


def test_trial_runs_only_the_named_cells_and_an_unknown_id_is_one_line(capsys, tmp_path):
    from bench import grids

    configs = grids.grid_configs("table1", "smoke", 3, ("mnist",))
    wanted = configs[1].trial_id
    code, out, _ = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "3",
                           "--dataset", "mnist", "--trial", wanted, "--dry-run", "--no-estimate",
                           "--results", str(tmp_path))
    assert code == 0
    assert out.strip().splitlines()[-1] == "1 trials" and wanted in out
    assert configs[0].trial_id not in out and configs[2].trial_id not in out
    # bf16 is another config, so the fp32 id is not in the grid at bf16
    code, out, err = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "3",
                             "--trial", wanted, "--precision", "bf16", "--dry-run",
                             "--results", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert wanted in err and "--dry-run" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_dry_run_prints_the_estimate_and_saves_it_beside_the_rows(capsys, tmp_path, monkeypatch):
    """The dry run prices the trials to run from the machine's cached rates (faked here: a fixed
    1,000 examples/s, so nothing trains) and saves the estimate for the report."""
    from bench import cost

    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path / "cache"))
    for name in ("measure_training", "measure_forward", "measure_parzen"):
        monkeypatch.setattr(cost, name, lambda *a, **k: (1, 1000, 1.0, "synthetic"))
    results = tmp_path / "results"
    code, out, _ = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "2",
                           "--dataset", "mnist", "--dry-run", "--results", str(results))
    assert code == 0
    assert "estimated hours on this machine" in out and "table1 unsupervised/mnist/gaussian" in out
    assert "wall-hours, 2 trial(s) at a time" in out or "wall-hours, 1 trial(s) at a time" in out
    saved = results / "estimates" / "table1-smoke.json"
    assert f"estimate saved: {saved}" in out
    (estimate,) = cost.load_estimates(saved)
    assert estimate.seeds == 2 and len(estimate.trial_ids) == 2
    assert not list(results.glob("table1/*.csv"))  # no rows: nothing ran


def test_missing_data_names_files_and_writes_nothing(capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "1",
                             "--data-dir", str(empty), "--results", str(tmp_path / "r"))
    assert "mnist" in err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_truncated_file_names_it_and_writes_nothing(capsys, tmp_path, mnist_dir):
    bad = tmp_path / "mnist"
    shutil.copytree(mnist_dir, bad, ignore=shutil.ignore_patterns("*.md"))
    raw = gzip.open(mnist_dir / "train-images-idx3-ubyte.gz").read()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    code, out, err = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "1",
                             "--dataset", "mnist", "--data-dir", str(bad), "--results", str(tmp_path / "r"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "train-images-idx3-ubyte" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_tfd_missing_says_it_is_not_downloadable(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AAE_BENCH_DATA", str(tmp_path))
    code, out, err = run_cli(capsys, "run", "table1", "--profile", "smoke", "--dataset", "tfd",
                             "--results", str(tmp_path / "r"))
    assert code == 2 and "not freely downloadable" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "table1" in out and "smoke" in out and "gaussian" in out


@pytest.mark.ray
def test_run_smoke_through_ray_then_grow_and_report(capsys, tmp_path, mnist_dir):
    results_dir = tmp_path / "results"
    common = ["--profile", "smoke", "--dataset", "mnist", "--results", str(results_dir),
              "--data-dir", str(mnist_dir)]
    code, out, err = run_cli(capsys, "run", "table1", "--seeds", "2", *common)
    assert code == 0, err
    assert not list(results_dir.glob("*.csv"))  # one file per trial, none per grid
    assert len(list((results_dir / "table1").glob("*.csv"))) == 2
    frame = results.read_rows(results_dir, "table1")
    assert set(frame["status"]) == {"done"}
    assert frame["trial_id"].nunique() == 2
    assert {"parzen_ll", "parzen_sigma", "loss_reconstruction"} <= set(frame["metric"])
    for column in ["commit", "dirty", "python", "torch", "ray", "accelerate", "cpu", "threads",
                   "wall_s", "stderr", "seed", "profile", "z_dim", "prior_std", "recon_lr"]:
        assert column in frame.columns, column
    assert (frame["threads"] == 1).all()
    ll = frame[frame["metric"] == "parzen_ll"]
    assert ll["value"].between(-2000, 2000).all() and (ll["stderr"] > 0).all()
    assert (ll["n"] == 500).all()
    assert "Table 1" in out and "340" in out  # the paper's number printed beside ours

    # Same grid again: nothing new runs, no row file is touched.
    before = row_files(results_dir)
    code, out, _ = run_cli(capsys, "run", "table1", "--seeds", "2", *common)
    assert code == 0 and "2 already done" in out
    assert row_files(results_dir) == before

    # Grown by one seed: only the new seed runs.
    code, out, _ = run_cli(capsys, "run", "table1", "--seeds", "3", *common)
    assert code == 0 and "2 already done, 1 done" in out
    grown_files = row_files(results_dir)
    assert {k: v for k, v in grown_files.items() if k in before} == before  # the new trial's only
    assert len(grown_files) == 3
    grown = results.read_rows(results_dir, "table1")
    assert grown["trial_id"].nunique() == 3
    assert len(grown) == len(frame) * 3 // 2

    # The regression gate: this deterministic smoke grid against the committed baseline.
    baseline = Path(__file__).parent / "baselines" / "table1-smoke.json"
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), "--results", str(results_dir))
    assert code == 0, out

    code, out, err = run_cli(capsys, "report", "--results", str(results_dir),
                             "--out", str(tmp_path / "reports"))
    assert code == 0, err
    table = next((tmp_path / "reports").glob("table1*.md")).read_text()
    assert "340" in table and "smoke" in table


def test_data_info_and_fetch_commands(capsys, mnist_dir):
    code, out, err = run_cli(capsys, "data", "info", "mnist", "--data-dir", str(mnist_dir), "--json")
    assert code == 0, err
    import json

    info = json.loads(out)
    assert {name: split["n"] for name, split in info["splits"].items()} == {
        "train": 50_000, "valid": 10_000, "test": 10_000}
    code, out, err = run_cli(capsys, "data", "info", "mnist", "--data-dir", str(mnist_dir))
    assert code == 0 and "50000" in out.replace(",", "")
    code, out, err = run_cli(capsys, "data", "fetch", "mnist", "--data-dir", str(mnist_dir))
    assert code == 0 and "mnist" in out
    code, out, err = run_cli(capsys, "data", "info", "cifar")
    assert code == 2 and "mnist" in err and len(err.strip().splitlines()) == 1


def test_precision_flag_gives_bf16_trials_with_their_own_ids(capsys, tmp_path, mnist_dir):
    """--precision bf16 on train: a bf16 config (new trial id, precision recorded), and a bf16
    trial after an fp32 one in the same process (Accelerate's state is per process)."""
    common = ["train", "--variant", "unsupervised", "--profile", "smoke", "--epochs", "1",
              "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--json"]
    code32, out32, _ = run_cli(capsys, *common)
    code16, out16, err = run_cli(capsys, *common, "--precision", "bf16")
    assert (code32, code16) == (0, 0), err
    fp32, bf16 = json.loads(out32), json.loads(out16)
    assert fp32["trial_id"] != bf16["trial_id"]
    assert json.loads((tmp_path / bf16["trial_id"] / "config.json").read_text())["precision"] == "bf16"
    assert json.loads((tmp_path / fp32["trial_id"] / "config.json").read_text())["precision"] == "no"
    code, _, err = run_cli(capsys, *common, "--precision", "fp16")
    assert code == 2 and "'bf16', 'fp32'" in err and len(err.strip().splitlines()) == 1


# -- bad input around the results (#14 part 5): one line, exit 2, nothing written or lost -----


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("make", ["missing", "empty", "only a README"])
def test_report_without_rows_says_so_and_writes_no_report(capsys, tmp_path, make):
    given = tmp_path / "rows"
    if make != "missing":
        given.mkdir()
    if make == "only a README":
        (given / "README.md").write_text("notes\n")
    out = tmp_path / "reports"
    code, _, err = run_cli(capsys, "report", "--results", str(given), "--out", str(out))
    one_line_error(code, err, str(given), "no such directory" if make == "missing" else "no result rows")
    assert not out.exists()


def test_run_into_a_results_dir_that_cannot_be_created_stops_before_ray(capsys, tmp_path,
                                                                         mnist_dir, monkeypatch):
    from bench import runner

    monkeypatch.setattr(runner, "run_sweep", lambda *a, **k: pytest.fail("Ray was started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("mine\n")
    for bad in (blocker, blocker / "results"):
        code, _, err = run_cli(capsys, "run", "table1", "--profile", "smoke", "--seeds", "1",
                               "--dataset", "mnist", "--data-dir", str(mnist_dir),
                               "--results", str(bad))
        one_line_error(code, err, f"--results {bad}", "cannot create")
    assert blocker.read_text() == "mine\n" and sorted(tmp_path.iterdir()) == [blocker]


def damaged_results(tmp_path: Path) -> tuple[Path, Path, str]:
    """A results dir with one good trial file and one with a git merge conflict in it."""
    good = {"trial_id": "a", "grid": "table1", "metric": "parzen_ll", "value": 1.0,
            "status": "done", "training_version": 2, "evaluator_version": "1"}
    directory = tmp_path / "rows"
    results.append_rows(directory, "table1", [good])
    path = results.append_rows(directory, "table1", [{**good, "trial_id": "b"}])
    text = "<<<<<<< HEAD\n" + path.read_text() + "=======\n>>>>>>> theirs\n"
    path.write_text(text)
    return directory, path, text


@pytest.mark.parametrize("command", ["run", "dry-run", "report", "check"])
def test_an_unparseable_results_file_is_named_and_left_alone(capsys, tmp_path, command):
    directory, path, text = damaged_results(tmp_path)
    before = row_files(directory)
    out = tmp_path / "reports"
    args = {"run": ["run", "table1", "--profile", "smoke", "--seeds", "1", "--dataset", "mnist",
                    "--results", str(directory)],
            "dry-run": ["run", "table1", "--profile", "smoke", "--dry-run", "--no-estimate",
                        "--results", str(directory)],
            "report": ["report", "--results", str(directory), "--out", str(out)],
            "check": ["check", "--baseline", str(Path(__file__).parent / "baselines" /
                                                 "table1-smoke.json"), "--results", str(directory)]
            }[command]
    code, stdout, err = run_cli(capsys, *args)
    if command == "check":  # the gate prints its verdict on stdout, exit 2: unusable input
        code, err = code, stdout
    one_line_error(code, err, str(path), "merge conflict", "restore it from git")
    assert row_files(directory) == before and path.read_text() == text
    assert not out.exists()


def test_train_on_a_gpu_needs_cuda(capsys, tmp_path, monkeypatch):
    import torch

    from bench import trial

    monkeypatch.setattr(trial, "run_trial", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = ["train", "--variant", "unsupervised", "--profile", "smoke", "--out", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, *common, "--gpus-per-trial", "1")
    one_line_error(code, err, "--gpus-per-trial 1: no CUDA GPU", "--gpus-per-trial 0")
    for bad in ("-1", "2"):
        code, _, err = run_cli(capsys, *common, "--gpus-per-trial", bad)
        one_line_error(code, err, "must be 0 (the CPU) or in (0, 1]")
    code, _, err = run_cli(capsys, *common, "--gpus-per-trial", "one")
    one_line_error(code, err, "invalid float value")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,cuda,on_cpu", [(None, False, True), ("0", True, True),
                                              ("1", True, False), ("0.5", True, False)])
def test_train_chooses_its_device_as_run_does(capsys, tmp_path, monkeypatch, flag, cuda, on_cpu):
    import torch

    from aae_core import datasets
    from bench import trial

    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(datasets, "load", lambda *a, **k: None)
    monkeypatch.setattr(trial, "run_trial", lambda config, settings, data: seen.append(settings) or [])
    args = ["train", "--variant", "unsupervised", "--profile", "smoke", "--out", str(tmp_path), "--json"]
    run_cli(capsys, *args, *(["--gpus-per-trial", flag] if flag else []))
    assert [s.cpu for s in seen] == [on_cpu]


def test_bf16_on_a_cpu_without_bf16_units_is_warned_of_once_and_not_otherwise(monkeypatch):
    from bench import cli, provenance

    monkeypatch.setattr(provenance, "cpu_has_bf16", lambda: False)
    warning = cli.warn_slow_bf16("bf16", 0.0)
    assert warning and "fp32" in warning and len(warning.splitlines()) == 1
    assert cli.warn_slow_bf16("fp32", 0.0) is None
    assert cli.warn_slow_bf16("bf16", 1.0) is None  # a GPU trial: the CPU's units do not matter
    monkeypatch.setattr(provenance, "cpu_has_bf16", lambda: True)
    assert cli.warn_slow_bf16("bf16", 0.0) is None


def test_cpu_has_bf16_agrees_with_the_cpu_flags():
    from bench import provenance

    flags = set(provenance.cpu_flags())
    if not flags:
        pytest.skip("no /proc/cpuinfo flags here")
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert provenance.cpu_has_bf16()
    elif not any(f.startswith("avx512") for f in flags):  # e.g. this project's AVX2 AMD EPYC
        assert not provenance.cpu_has_bf16()
