"""Table 1's Parzen evaluations (bench.evaluate): passes over the samples, the sigma grids, the
sigma-on-edge rows, the evaluator on the trial's device and threads.

The model is a stand-in (a fixed linear decoder of Gaussian draws), so that every sample is
known and the evaluations can be checked against the plain functions of bench.parzen.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cuda_helpers import cuda

from aae_core import datasets, training
from bench import evaluate, metrics
from bench.config import TrialConfig, config_hash
from bench.grids import grid_configs, single_trial
from bench.parzen import PARZEN_SIGMAS, parzen_sigma_grid, sigma_on_edge

D = 6  # pixels of the stand-in images: (1, 2, 3)


class Prior:
    """D-dimensional standard normal draws from the caller's generator."""

    def sample(self, n, gen):
        return torch.randn(n, D, generator=gen)


class Decoder(torch.nn.Module):
    """(S, b, D) -> (S, b, 1, 2, 3): a fixed full-rank linear map, so the samples are a Gaussian
    in D dims (a degenerate one would push sigma to where float32 loses digits)."""

    def __init__(self):
        super().__init__()
        weight = 0.4 * torch.eye(D) + 0.1 * torch.tril(torch.ones(D, D), -1)
        self.weight = torch.nn.Parameter(weight, requires_grad=False)

    def forward(self, z):
        return (z @ self.weight).view(*z.shape[:-1], 1, 2, 3)


def _points(n: int, seed: int) -> np.ndarray:
    """n images of the samples' distribution."""
    z = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return (z @ Decoder().weight.numpy()).reshape(n, 1, 2, 3)


def _config(**fields) -> TrialConfig:
    base = single_trial("unsupervised", "mnist", "gaussian", profile="smoke")
    return dataclasses.replace(base, parzen_samples=300, parzen_validation=0, parzen_test=0,
                               **fields)


def _seed(config, device="cpu", threads=1) -> evaluate.TrainedSeed:
    return evaluate.TrainedSeed(config, SimpleNamespace(decoder=Decoder()), Prior(), 10,
                                SimpleNamespace(evaluation=5, parzen_large=6), device,
                                threads=threads)


def _mnist_like(valid=80, test=120) -> SimpleNamespace:
    return SimpleNamespace(valid_x=_points(valid, 1), test_x=_points(test, 2), folds=None)


def _tfd_like(folds=3) -> SimpleNamespace:
    return SimpleNamespace(folds=tuple(
        datasets.Fold(k, _points(40 + 10 * k, 10 + k), np.zeros(40 + 10 * k, np.int64),
                      _points(50, 20 + k), np.zeros(50, np.int64), 0) for k in range(folds)))


def _draws(n: int, stream: int) -> np.ndarray:
    """The samples an evaluation decodes: n draws of `stream`, in its chunks of 10,000."""
    gen = training.generator(stream)
    return np.concatenate([training.generate(Decoder(), Prior(), min(10_000, n - s), [gen], "cpu")[0]
                           for s in range(0, n, 10_000)])


@pytest.fixture
def passes(monkeypatch):
    """The sample counts of every call to training.generate (one decode each)."""
    calls = []
    real = training.generate

    def generate(decoder, prior, n, generators, device, batch_size=1000):
        calls.append(n)
        return real(decoder, prior, n, generators, device, batch_size)

    monkeypatch.setattr(training, "generate", generate)
    return calls


def _single_sigma_reference(samples, valid, test, grid):
    """The protocol with one single-sigma pass per sigma: (sigma, mean ll, stderr)."""
    means = [metrics.parzen_log_likelihood(samples, valid, s, dtype=np.float64).mean() for s in grid]
    sigma = grid[max(range(len(grid)), key=lambda i: (means[i], -grid[i]))]
    ll = metrics.parzen_log_likelihood(samples, test, sigma, dtype=np.float64)
    return sigma, *metrics.parzen_summary(ll)


# -- the config ----------------------------------------------------------------------------


def test_large_column_gets_the_extended_grid_in_its_config():
    config = _config(parzen_samples_large=10_000_000)
    assert config.parzen_sigmas_large == parzen_sigma_grid(10_000_000)
    assert min(config.parzen_sigmas_large) == pytest.approx(0.01) and len(config.parzen_sigmas_large) == 19
    assert config.parzen_sigmas == PARZEN_SIGMAS  # the 10K column keeps the protocol's grid
    # the paper profile's Table 1 configs: every one with the column has its grid
    paper = grid_configs("table1", "paper", 1)
    assert paper and all(c.parzen_sigmas_large == parzen_sigma_grid(c.parzen_samples_large) for c in paper)
    # without the column there is no grid, and the trial id is what it was before the field
    for c in [_config(), *grid_configs("table1", "smoke", 2), single_trial("clustering", "mnist", "gaussian",
                                                                           clusters=16)]:
        assert c.parzen_sigmas_large is None
        assert c.trial_id == config_hash({k: v for k, v in c.as_dict().items() if k != "parzen_sigmas_large"})
    assert dataclasses.replace(config, parzen_samples_large=None).parzen_sigmas_large is None
    given = _config(parzen_samples_large=20_000, parzen_sigmas_large=(0.05, 0.1))
    assert given.parzen_sigmas_large == (0.05, 0.1) and given.trial_id != config.trial_id
    with pytest.raises(ValueError, match="parzen_sigmas_large"):
        _config(parzen_samples_large=20_000, parzen_sigmas_large=(0.0, 0.1))


# -- the 10M column: two passes --------------------------------------------------------------


def test_mnist_large_column_is_two_passes_with_the_extended_grid(passes):
    config = _config(parzen_samples_large=12_000)
    data = _mnist_like()
    values = evaluate.evaluate_parzen(_seed(config), data)
    # one decode for the 10K column, then the 10M column's draws twice (validation for every
    # sigma at once, then the test pass): not once per sigma plus once
    assert passes == [300] + [10_000, 2_000] * 2
    large = _draws(12_000, 6)
    valid, test = data.valid_x.reshape(80, -1), data.test_x.reshape(120, -1)
    sigma, mean, stderr = _single_sigma_reference(large, valid, test, config.parzen_sigmas_large)
    assert values["parzen_sigma_10m"] == (sigma, pytest.approx(math.nan, nan_ok=True), 80)
    assert values["parzen_ll_10m"] == (pytest.approx(mean, rel=1e-6), pytest.approx(stderr, rel=1e-4), 120)
    assert values["parzen_sigma_10m_on_edge"][0] == float(sigma_on_edge(sigma, config.parzen_sigmas_large))


@pytest.mark.parametrize("dataset", ["mnist", "tfd"])
def test_large_column_chooses_on_its_own_grid(dataset):
    grid = (0.031, 0.047, 0.061)  # none of them on the 10K column's grid
    fields = dict(dataset="tfd", z_dim=15) if dataset == "tfd" else {}
    config = _config(parzen_samples_large=12_000, parzen_sigmas_large=grid, **fields)
    values = evaluate.evaluate_parzen(_seed(config), _mnist_like() if dataset == "mnist" else _tfd_like())
    large = {m: v[0] for m, v in values.items() if m.startswith("parzen_sigma_10m") and "edge" not in m}
    assert large and set(large.values()) <= set(grid)
    small = {m: v[0] for m, v in values.items() if m.startswith("parzen_sigma") and "10m" not in m
             and "edge" not in m}
    assert small and set(small.values()) <= set(PARZEN_SIGMAS)


def test_tfd_large_column_is_two_passes_with_the_extended_grid(passes):
    config = _config(dataset="tfd", z_dim=15, parzen_samples_large=12_000)
    data = _tfd_like()
    values = evaluate.evaluate_parzen(_seed(config), data)
    assert passes == [300] + [10_000, 2_000] * 2
    large = _draws(12_000, 6)
    for fold in data.folds:
        k, valid, test = fold.index, fold.valid_x.reshape(len(fold.valid_x), -1), fold.test_x.reshape(50, -1)
        sigma, mean, _ = _single_sigma_reference(large, valid, test, config.parzen_sigmas_large)
        assert values[f"parzen_sigma_10m_fold{k}"][0] == sigma
        assert values[f"parzen_sigma_10m_on_edge_fold{k}"][0] == float(sigma_on_edge(sigma, config.parzen_sigmas_large))
        assert values[f"parzen_ll_10m_fold{k}"][0] == pytest.approx(mean, rel=1e-6)


# -- sigma on the edge of its grid -------------------------------------------------------------


def _sigma_rows(values):
    return {m: v for m, v in values.items() if m.startswith("parzen_sigma") and "_on_edge" not in m}


@pytest.mark.parametrize("dataset", ["mnist", "tfd"])
def test_every_sigma_row_has_its_edge_flag(dataset):
    config = _config(parzen_samples_large=12_000, **(dict(dataset="tfd", z_dim=15) if dataset == "tfd" else {}))
    values = evaluate.evaluate_parzen(_seed(config), _mnist_like() if dataset == "mnist" else _tfd_like())
    rows = _sigma_rows(values)
    assert len(rows) == (2 if dataset == "mnist" else 6)  # 10K and 10M, per fold on TFD
    for name, (sigma, _, n) in rows.items():
        grid = config.parzen_sigmas_large if "_10m" in name else config.parzen_sigmas
        flag = name.replace("parzen_sigma_10m", "parzen_sigma_10m_on_edge") if "_10m" in name else \
            name.replace("parzen_sigma", "parzen_sigma_on_edge")
        assert values[flag] == (float(sigma_on_edge(sigma, grid)), pytest.approx(math.nan, nan_ok=True), n)
    # 300 samples of this distribution: the best 10K sigma is inside the protocol's grid
    assert {values[m][0] for m in values if "_on_edge" in m} == {0.0}


def test_a_sigma_on_the_edge_is_flagged():
    # Validation and test images that are copies of samples: the likelihood grows without bound as
    # sigma shrinks, so the smallest sigma of each grid wins and every flag is up.
    config = _config(parzen_samples_large=12_000)
    copies = _draws(300, 5)[:60].reshape(60, 1, 2, 3)
    large = _draws(12_000, 6)[:60].reshape(60, 1, 2, 3)
    for data, metric, grid in [(SimpleNamespace(valid_x=copies, test_x=copies, folds=None), "parzen_sigma",
                                config.parzen_sigmas),
                               (SimpleNamespace(valid_x=large, test_x=large, folds=None), "parzen_sigma_10m",
                                config.parzen_sigmas_large)]:
        values = evaluate.evaluate_parzen(_seed(config), data)
        assert values[metric][0] == min(grid)
        assert values[metric + "_on_edge"][0] == 1.0


# -- the evaluator: the trial's threads on the CPU, the trial's GPU ---------------------------


def test_cpu_10k_column_is_the_single_sigma_protocol_bit_for_bit():
    config = _config()
    data = _mnist_like()
    values = evaluate.evaluate_parzen(_seed(config), data)
    samples = _draws(300, 5)
    valid, test = data.valid_x.reshape(80, -1), data.test_x.reshape(120, -1)
    # at the trial's threads (1 here): they are also the evaluator's BLAS threads
    sigma = metrics.select_parzen_sigma(samples, valid, config.parzen_sigmas, threads=1)
    assert values["parzen_sigma"][0] == sigma
    assert values["parzen_validation_ll"][0] == float(np.mean(
        metrics.parzen_log_likelihood(samples, valid, sigma, threads=1)))
    mean, stderr = metrics.parzen_summary(metrics.parzen_log_likelihood(samples, test, sigma, threads=1))
    assert values["parzen_ll"] == (mean, stderr, 120)


def _spy(seen: list, name: str, real):
    def spy(*args, **kwargs):
        seen.append((name, kwargs.get("threads")))
        return real(*args, **kwargs)
    return spy


@pytest.mark.parametrize("dataset", ["mnist", "tfd"])
def test_cpu_evaluator_uses_the_trials_threads(monkeypatch, dataset):
    import bench.parzen

    seen = []
    for module, names in [(metrics, ["parzen_log_likelihood", "select_parzen_sigma"]),
                          (evaluate, ["parzen_log_likelihood_sigmas", "select_parzen_sigma_streaming"])]:
        for name in names:
            monkeypatch.setattr(module, name, _spy(seen, name, getattr(bench.parzen, name)))
    config = _config(parzen_samples_large=12_000, **(dict(dataset="tfd", z_dim=15) if dataset == "tfd" else {}))
    evaluate.evaluate_parzen(_seed(config, threads=3), _mnist_like() if dataset == "mnist" else _tfd_like())
    assert seen and {t for _, t in seen} == {3}
    assert {n for n, _ in seen} >= {"parzen_log_likelihood", "select_parzen_sigma"}


def test_trial_passes_its_own_threads(monkeypatch, mnist):
    import bench.trial

    seen = []

    def evaluate_parzen(seed, data):
        seen.append(seed.threads)
        return evaluate.evaluate_parzen(seed, data)

    monkeypatch.setitem(bench.trial.EVALUATIONS, "parzen", evaluate_parzen)
    config = dataclasses.replace(_config(), hidden_units=16, train_examples=200, epochs=1,
                                 parzen_samples=100, parzen_validation=50, parzen_test=50)
    before = torch.get_num_threads()
    try:
        rows = bench.trial.run_trial(config, data=mnist, threads=1)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    assert {r["metric"] for r in rows} >= {"parzen_ll", "parzen_sigma", "parzen_sigma_on_edge"}


def _stand_in_gpu(monkeypatch):
    """Route the evaluation as on a GPU while running on the CPU; spy on the torch evaluator."""
    calls = []
    real = evaluate.parzen_log_likelihood_torch

    def spy(chunks, points, sigmas, device, **kwargs):
        chunks = list(chunks)
        calls.append([type(c) for c in chunks])
        return real(chunks, points, sigmas, device, **kwargs)

    monkeypatch.setattr(evaluate, "_on_gpu", lambda seed: True)
    monkeypatch.setattr(evaluate, "parzen_log_likelihood_torch", spy)
    return calls


@pytest.mark.parametrize("dataset", ["mnist", "tfd"])
def test_on_a_gpu_samples_stay_tensors_and_the_torch_evaluator_scores_them(monkeypatch, passes, dataset):
    fields = dict(parzen_samples_large=12_000, **(dict(dataset="tfd", z_dim=15) if dataset == "tfd" else {}))
    config = _config(**fields)
    data = _mnist_like() if dataset == "mnist" else _tfd_like()
    on_cpu = evaluate.evaluate_parzen(_seed(config), data)
    passes.clear()
    calls = _stand_in_gpu(monkeypatch)
    on_gpu = evaluate.evaluate_parzen(_seed(config), data)
    assert passes == []  # nothing decoded through training.generate (which copies to the host)
    assert calls and all(t is torch.Tensor for chunk_types in calls for t in chunk_types)
    # 10M column: two passes there too (one call each, of 2 chunks)
    assert sum(len(c) == 2 for c in calls) == 2
    _equal_within_float32(on_cpu, on_gpu)


def _equal_within_float32(a: dict, b: dict, rel: float = 1e-6) -> None:
    assert set(a) == set(b)
    for name in a:
        if "sigma" in name:
            assert a[name][0] == b[name][0], name  # a clear optimum: the same pick
        else:
            assert a[name][0] == pytest.approx(b[name][0], rel=rel, abs=rel), name
            assert a[name][2] == b[name][2]


@cuda
@pytest.mark.parametrize("dataset", ["mnist", "tfd"])
def test_cuda_evaluation_equals_the_cpu_one(dataset):
    fields = dict(parzen_samples_large=12_000, **(dict(dataset="tfd", z_dim=15) if dataset == "tfd" else {}))
    config = _config(**fields)
    data = _mnist_like() if dataset == "mnist" else _tfd_like()
    on_cpu = evaluate.evaluate_parzen(_seed(config), data)
    seed = _seed(config, device=torch.device("cuda"))
    seed.net.decoder.to("cuda")
    # The decoder's own float32 rounding differs on the GPU too: a looser bound than the
    # evaluators' alone (tests/test_parzen.py), far below a sigma step or a table's digits.
    _equal_within_float32(on_cpu, evaluate.evaluate_parzen(seed, data), rel=1e-5)


# -- the protocol card names the trials on an edge ------------------------------------------------


def test_protocol_card_names_the_trials_whose_sigma_is_on_an_edge():
    import pandas as pd
    from report_fixtures import fake_config, fake_trial_rows

    from bench import tables

    rows = []
    for seed in range(3):
        mnist = fake_config(seed, parzen_samples_large=10_000_000)
        rows += fake_trial_rows(mnist, {"parzen_ll": -100.0, "parzen_ll_10m": -90.0,
                                        "parzen_sigma": 0.17, "parzen_sigma_on_edge": 0.0,
                                        "parzen_sigma_10m": 0.01 if seed == 1 else 0.05,
                                        "parzen_sigma_10m_on_edge": float(seed == 1)})
        tfd = fake_config(seed, dataset="tfd", z_dim=15, parzen_validation=0)
        rows += fake_trial_rows(tfd, {"parzen_ll": -50.0, **{f"parzen_ll_fold{k}": -50.0 for k in range(5)},
                                      **{f"parzen_sigma_on_edge_fold{k}": float(seed == 2 and k in (0, 3))
                                         for k in range(5)}})
    view = tables.build_view(tables.TABLES["table1"], pd.DataFrame(rows))
    card = dict(tables.protocol_card(view, []))
    assert "sigma on the edge of its grid (the likelihood may peak outside it): none of 3 chosen sigmas" in card["MNIST, 10K samples"]
    assert "sigma on the edge of its grid (the likelihood may peak outside it): seed 1" in card["MNIST, 10M samples"]
    assert ("sigma on the edge of its grid (the likelihood may peak outside it): seed 2 fold 0, seed 2 fold 3"
            in card["TFD, 10K samples"])
    assert "parzen_sigmas_large [0.01, 0.0129, " in card["MNIST, 10M samples"]
    # rows made before the flag existed say so
    old = [r for r in rows if "_on_edge" not in r["metric"]]
    card = dict(tables.protocol_card(tables.build_view(tables.TABLES["table1"], pd.DataFrame(old)), []))
    assert "sigma on the edge of its grid: not recorded" in card["MNIST, 10K samples"]
