"""Every variant and grid accepts every data set: the networks take their sizes from the input
shape (SVHN 3 x 32 x 32, TFD 1 x 48 x 48). SVHN and TFD come from small fake files written in
the exact real format (tests/fake_data.py), Fashion-MNIST from Debian's package."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_data import pin, write_svhn, write_tfd

from aae_core import datasets, training
from bench import cli, evaluate, grids, metrics
from bench.config import VARIANT_PRIORS, ConfigError
from bench.trial import run_trial

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture()
def svhn(tmp_path, monkeypatch):
    directory = tmp_path / "svhn"
    directory.mkdir()
    write_svhn(directory / "train_32x32.mat", 300)
    write_svhn(directory / "test_32x32.mat", 120)
    pin(monkeypatch, "svhn", directory / "train_32x32.mat", directory / "test_32x32.mat")
    monkeypatch.setattr(datasets, "SVHN_VALID_SIZE", 100)
    return datasets.load("svhn", directory)


@pytest.fixture()
def tfd(tmp_path, monkeypatch):
    directory = tmp_path / "tfd"
    directory.mkdir()
    write_tfd(directory / "TFD_48x48.mat", 400)
    pin(monkeypatch, "tfd", directory / "TFD_48x48.mat")
    return directory


def smoke(variant, dataset, prior="gaussian", **kw):
    config = grids.single_trial(variant, dataset, prior, profile="smoke", **kw)
    # the fakes are small: every labelled subset must fit, and the Parzen sets too
    small = dict(train_examples=0)
    if config.labels:
        small["labels"] = 50
    if config.parzen_samples:
        small.update(parzen_samples=100, parzen_validation=50, parzen_test=50)
    return dataclasses.replace(config, **small)


@pytest.mark.parametrize("variant,kw", [
    ("unsupervised", {}), ("semi-supervised", {"labels": 100}), ("clustering", {"clusters": 16}),
    ("supervised", {}), ("vae", {}), ("dim-reduction", {"clusters": 20}),
])
def test_every_variant_trains_on_svhn_shapes(svhn, variant, kw):
    assert svhn.image_shape == (3, 32, 32)
    rows = run_trial(smoke(variant, "svhn", **kw), data=svhn, threads=1)
    assert {r["status"] for r in rows} == {"done"}, rows[0]["error"]
    assert all(np.isfinite(r["value"]) for r in rows)


def test_one_tfd_model_is_scored_on_every_fold(tfd):
    # Issue 14: one trial per seed, trained on the unlabelled images, scored on all 5 folds with
    # sigma chosen per fold on the fold's whole validation split.
    data = datasets.load("tfd", tfd)
    assert data.image_shape == (1, 48, 48)
    config = dataclasses.replace(smoke("unsupervised", "tfd"), parzen_validation=0)
    assert config.fold is None
    rows = run_trial(config, data=data, threads=1)
    assert {r["status"] for r in rows} == {"done"} and {r["fold"] for r in rows} == {None}
    by = {r["metric"]: r for r in rows}
    folds = [by[f"parzen_ll_fold{k}"] for k in range(5)]
    assert [r["n"] for r in folds] == [min(50, len(f.test_y)) for f in data.folds]
    assert [by[f"parzen_sigma_fold{k}"]["n"] for k in range(5)] == [len(f.valid_y) for f in data.folds]
    mean, across = metrics.parzen_over_folds([r["value"] for r in folds])
    assert by["parzen_ll"]["value"] == mean and by["parzen_ll"]["stderr"] == across
    assert by["parzen_ll"]["n"] == 5 and "parzen_sigma" not in by
    assert "train = the unlabelled images" in by["parzen_ll"]["data_split"]


def test_tfd_folds_are_scored_as_each_alone_and_the_10m_column_decodes_twice(tfd, monkeypatch):
    # evaluate_parzen_folds / evaluate_parzen_large_folds against each fold scored on its own
    # by the plain functions, on the same samples (a fake decoder: reproducible draws).
    data = datasets.load("tfd", tfd)
    d = data.input_dim
    passes = []

    def generate(decoder, prior, n, generators, device):
        passes.append(n)
        return np.asarray(0.4 + 0.2 * torch.rand(1, n, d, generator=generators[0]), np.float32)

    monkeypatch.setattr(training, "generate", generate)
    config = dataclasses.replace(smoke("unsupervised", "tfd"), parzen_validation=0, parzen_test=0,
                                 parzen_samples=300, parzen_samples_large=12_000)
    seed = evaluate.TrainedSeed(config, SimpleNamespace(decoder=None), None, 7,
                                SimpleNamespace(evaluation=5, parzen_large=6), "cpu")
    values = evaluate.evaluate_parzen(seed, data)
    # 10K path: one draw of 300; 10M path: 2 chunks, twice (validation for every sigma, test)
    assert passes == [300] + [10_000, 2_000] * 2
    small = generate(None, None, 300, [training.generator(5)], "cpu")[0]
    large = np.concatenate([generate(None, None, n, [g], "cpu")[0] for g in [training.generator(6)]
                            for n in (10_000, 2_000)])
    grid = config.parzen_sigmas
    for fold in data.folds:
        k = fold.index
        valid, test = fold.valid_x.reshape(len(fold.valid_x), -1), fold.test_x.reshape(len(fold.test_x), -1)
        for samples, suffix in ((small, ""), (large, "_10m")):
            sigma = metrics.select_parzen_sigma(samples, valid, grid)
            ll = metrics.parzen_log_likelihood(samples, test, sigma)
            assert values[f"parzen_sigma{suffix}_fold{k}"][0] == sigma
            assert values[f"parzen_ll{suffix}_fold{k}"][:2] == pytest.approx(metrics.parzen_summary(ll), rel=1e-6)
            assert values[f"parzen_ll{suffix}_fold{k}"][2] == len(test)
    for suffix in ("", "_10m"):
        means = [values[f"parzen_ll{suffix}_fold{k}"][0] for k in range(5)]
        assert values[f"parzen_ll{suffix}"] == (*metrics.parzen_over_folds(means), 5)


def test_table1_tfd_cell_is_one_trial_per_seed():
    for profile in ("smoke", "quick", "paper"):
        tfd = [c for c in grids.grid_configs("table1", profile, 3) if c.dataset == "tfd"]
        assert [c.seed for c in tfd] == [0, 1, 2]
        assert {c.fold for c in tfd} == {None} and {c.parzen_validation for c in tfd} == {0}
    assert grids.single_trial("unsupervised", "tfd", "gaussian").parzen_validation == 0
    assert grids.single_trial("unsupervised", "mnist", "gaussian").parzen_validation == 1000
    with pytest.raises(ConfigError, match="fold is retired"):
        dataclasses.replace(tfd[0], fold=3)


@pytest.mark.skipif(not FASHION.exists() and not os.environ.get("CI"), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_through_the_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    code = cli.main(["train", "--variant", "unsupervised", "--dataset", "fashion-mnist",
                     "--profile", "smoke", "--json", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dataset"] == "fashion-mnist" and summary["status"] == "done"


@pytest.mark.parametrize("grid", sorted(grids.GRIDS))
def test_every_grid_builds_for_every_dataset(grid):
    for dataset in datasets.DATASETS:
        configs = grids.GRIDS[grid]("smoke", 1)
        for config in configs:
            rebuilt = dataclasses.replace(config, dataset=dataset)
            assert rebuilt.dataset == dataset
            assert rebuilt.prior in VARIANT_PRIORS[rebuilt.variant]
