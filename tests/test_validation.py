"""Validation curves (#16 part 1): every variant records its validation metrics each epoch, from
the validation split only, without changing a trained number."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from aae_core import training
from bench import metrics, trial, validation
from bench.grids import grid_configs, single_trial
from bench.trial import TrialSettings, run_trial


def _digest(rows):
    return {r["metric"]: (r["value"], r["param_digests"]) for r in rows}


@pytest.fixture(scope="module")
def table1_smoke():
    return dataclasses.replace(grid_configs("table1", "smoke", 1)[0], epochs=2)


def test_unsupervised_curve_has_a_parzen_entry_per_epoch(mnist, table1_smoke, tmp_path):
    rows = run_trial(table1_smoke, TrialSettings(artifacts_dir=tmp_path, threads=1), data=mnist)
    curve = pd.read_csv(tmp_path / table1_smoke.trial_id / "curve.csv")
    assert list(curve["epoch"]) == [1, 2]
    assert np.isfinite(curve["validation_parzen_ll"]).all()
    assert set(curve["validation_parzen_sigma"]) <= set(table1_smoke.parzen_sigmas)
    assert (curve["validation_reconstruction_error"] > 0).all()
    assert (curve["validation_seconds"] >= 0).all()
    # the test split is scored once, at the end, into the rows; the curve holds no test metric
    assert not any("test" in c for c in curve.columns)
    assert {r["status"] for r in rows} == {"done"}


def test_recording_the_curve_changes_no_trained_number(mnist, table1_smoke, monkeypatch):
    with_curve = run_trial(table1_smoke, data=mnist, threads=1)
    monkeypatch.setattr(trial, "_record_validation", lambda run, live, errors: None)
    without = run_trial(table1_smoke, data=mnist, threads=1)
    assert _digest(with_curve) == _digest(without)


@pytest.mark.parametrize("variant, extra, metric", [
    ("semi-supervised", dict(labels=100), "validation_error"),
    ("clustering", dict(clusters=16), "validation_clustering_error"),
    ("supervised", {}, "validation_reconstruction_error"),
    ("vae", {}, "validation_parzen_ll"),
])
def test_every_variant_records_its_curve_metric(mnist, variant, extra, metric, tmp_path):
    config = dataclasses.replace(single_trial(variant, "mnist", "gaussian", profile="smoke", **extra),
                                 epochs=2)
    run_trial(config, TrialSettings(artifacts_dir=tmp_path, threads=1), data=mnist)
    curve = pd.read_csv(tmp_path / config.trial_id / "curve.csv")
    assert validation.CURVE_METRICS[trial.evaluation_kind(config)] == metric
    assert len(curve) == 2 and np.isfinite(curve[metric]).all()
    assert np.isfinite(curve["validation_reconstruction_error"]).all()


def _poisoned(data):
    """The data set with its training and test images replaced by NaN: a curve that read
    either would not be finite."""
    return dataclasses.replace(data, train_x=np.full_like(data.train_x[:10], np.nan),
                               train_y=data.train_y[:10], test_x=np.full_like(data.test_x[:10], np.nan),
                               test_y=data.test_y[:10])


def test_curve_reads_the_validation_split_only_and_matches_the_evaluators(mnist, table1_smoke):
    parts = trial.build(table1_smoke, mnist)
    stream = training.RandomStreams.from_seed(table1_smoke.seed).curve
    entries = validation.curve_entries(parts.net, table1_smoke, "parzen", parts.priors["z"],
                                       _poisoned(mnist), [stream], "cpu", 1)
    entry = entries[0]
    assert np.isfinite(list(entry.values())).all()
    # the same draws, scored by the independent single-sigma evaluator
    samples = training.generate(parts.net.decoder, parts.priors["z"], table1_smoke.parzen_samples,
                                [training.generator(stream)], "cpu")[0]
    points = mnist.valid_x[:table1_smoke.parzen_validation].reshape(table1_smoke.parzen_validation, -1)
    sigma = metrics.select_parzen_sigma(samples, points, table1_smoke.parzen_sigmas, threads=1)
    assert entry["validation_parzen_sigma"] == pytest.approx(sigma)
    ll = metrics.parzen_log_likelihood(samples, points, sigma, threads=1).mean()
    assert entry["validation_parzen_ll"] == pytest.approx(ll, rel=1e-6)
    with torch.no_grad():
        x = torch.from_numpy(mnist.valid_x)
        err = (parts.net.reconstruct(x)[0] - x).pow(2).flatten(1).sum(1).double().mean().item()
    assert entry["validation_reconstruction_error"] == pytest.approx(err, rel=1e-5)


def test_clustering_curve_is_the_papers_rule_on_validation(mnist):
    config = single_trial("clustering", "mnist", "gaussian", profile="smoke", clusters=16)
    parts = trial.build(config, mnist)
    entries = validation.curve_entries(parts.net, config, "clustering", parts.priors["z"],
                                       _poisoned(mnist), [1], "cpu", 1)
    with torch.no_grad():
        probs = parts.net.code(torch.from_numpy(mnist.valid_x))[0][0].numpy()
    expected = metrics.clustering_error(probs, mnist.valid_y, probs, mnist.valid_y)
    assert entries[0]["validation_clustering_error"] == pytest.approx(expected)


def test_a_dead_seed_is_skipped(mnist, table1_smoke):
    parts = trial.build([table1_smoke, dataclasses.replace(table1_smoke, seed=1)], mnist)
    with torch.no_grad():
        for p in parts.net.decoder.parameters():
            p[1].fill_(float("nan"))  # seed 1 diverged
    entries = validation.curve_entries(parts.net, table1_smoke, "parzen", parts.priors["z"], mnist,
                                       [1, 2], "cpu", 1, live=[0])
    assert list(entries) == [0] and np.isfinite(entries[0]["validation_parzen_ll"])


def test_trend_over_the_last_tenth_of_the_epochs():
    curve = [{"epoch": e, "validation_parzen_ll": float(e)} for e in range(1, 101)]
    assert validation.trend(curve, "validation_parzen_ll") == pytest.approx(10.0)  # 100 - 90
    assert validation.improving(10.0, "validation_parzen_ll") is True
    assert validation.improving(-0.5, "validation_error") is True
    assert validation.improving(0.5, "validation_error") is False
    short = [{"validation_error": 5.0}, {"validation_error": 4.0}, {"validation_error": float("nan")}]
    assert validation.trend(short, "validation_error") == pytest.approx(-1.0)  # NaN entries skipped
    assert validation.trend(short[:1], "validation_error") is None
    assert validation.improving(None, "validation_error") is None
