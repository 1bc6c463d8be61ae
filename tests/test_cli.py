"""The real commands with tiny budgets: `run` through a local Ray, bad input, missing data."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import cli


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
                           "--dry-run", "--results", str(tmp_path))
    assert code == 0
    assert out.strip().splitlines()[-1] == "6 trials"  # 3 MNIST + 3 TFD (one per seed, every fold scored)
    assert not list(tmp_path.iterdir())


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
    frame = pd.read_csv(results_dir / "table1.csv")
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

    # Same grid again: nothing new runs, no row is duplicated.
    before = (results_dir / "table1.csv").read_text()
    code, out, _ = run_cli(capsys, "run", "table1", "--seeds", "2", *common)
    assert code == 0 and "2 already done" in out
    assert (results_dir / "table1.csv").read_text() == before

    # Grown by one seed: only the new seed runs.
    code, out, _ = run_cli(capsys, "run", "table1", "--seeds", "3", *common)
    assert code == 0 and "2 already done, 1 done" in out
    grown = pd.read_csv(results_dir / "table1.csv")
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
