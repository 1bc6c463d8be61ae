"""Every variant and grid accepts every data set: the networks take their sizes from the input
shape (SVHN 3 x 32 x 32, TFD 1 x 48 x 48). SVHN and TFD come from small fake files written in
the exact real format (tests/fake_data.py), Fashion-MNIST from Debian's package."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fake_data import pin, write_svhn, write_tfd

from aae_core import datasets
from bench import cli, grids
from bench.config import VARIANT_PRIORS
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


def test_unsupervised_on_a_tfd_fold(tfd):
    data = datasets.load("tfd", tfd, fold=3)
    assert data.image_shape == (1, 48, 48)
    config = smoke("unsupervised", "tfd")
    assert config.fold == 0
    rows = run_trial(dataclasses.replace(config, fold=3), data=data, threads=1)
    assert {r["status"] for r in rows} == {"done"}
    assert {r["fold"] for r in rows} == {3}


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
            fold = 0 if dataset.startswith("tfd") else None
            rebuilt = dataclasses.replace(config, dataset=dataset, fold=fold)
            assert rebuilt.dataset == dataset
            assert rebuilt.prior in VARIANT_PRIORS[rebuilt.variant]
