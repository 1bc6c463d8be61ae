"""Validation curves (#16): each epoch, every seed's validation metrics, into its curve.csv.

A curve tells "still improving" from "converged short of the paper". It reads the validation
split only (the test split is still touched once, at the end, by bench.evaluate) and draws no
number from a training stream, so a trial's training is bit-identical with or without it.

What each evaluation kind records per epoch (keys of a curve entry, beside the losses):
- every variant: `validation_reconstruction_error` (squared error per image, summed over pixels);
- Parzen (Table 1): `validation_parzen_ll` and `validation_parzen_sigma`: the cell's number of
  samples (config.parzen_samples) scored on the cell's validation images (config.parzen_validation)
  under every sigma of config.parzen_sigmas, the best sigma's mean. The samples come from their own
  stream (RandomStreams.curve), the same draws every epoch, so two epochs differ by the model only;
- classification (Table 2, dimensionality reduction with labels): `validation_error`, which the
  trial already computes for model selection (bench.trial._select_models);
- clustering (Table 3, dimensionality reduction with clusters): `validation_clustering_error`,
  the paper's rule (each cluster takes the label of its most confident image) applied to the
  validation images and scored on them.

# PAPER-GAP: the paper shows no learning curves. The Parzen curve chooses sigma on the images it
# scores, so it is optimistic by the choice of one number among the grid's; it is for trends
# within a cell, never a reported number. TFD's curve reads fold 0's validation images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aae_core import datasets, training, variants
from bench import metrics
from bench.config import TrialConfig
from bench.parzen import parzen_log_likelihood_sigmas, parzen_log_likelihood_torch

CURVE_METRICS = {"parzen": "validation_parzen_ll", "classification": "validation_error",
                 "clustering": "validation_clustering_error",
                 "reconstruction": "validation_reconstruction_error"}
"""The curve's metric of each evaluation kind (the one a report draws per cell)."""

HIGHER_IS_BETTER = {"validation_parzen_ll"}


def _class_probabilities(net, x: np.ndarray, device) -> np.ndarray:
    return training.apply(lambda b: net.code(b)[0], torch.from_numpy(x), device)


def reconstruction_errors(net, config: TrialConfig, data: datasets.Dataset, device) -> list[float]:
    """Each seed's mean squared reconstruction error per validation image (summed over pixels);
    a decoder given the label (Section 4) reconstructs with the true one."""
    given_labels = variants.variant(config.variant).labels == "all"
    total = None
    with torch.no_grad():
        for i in range(0, len(data.valid_x), 1000):
            xb = torch.from_numpy(data.valid_x[i:i + 1000]).to(device)
            labels = torch.from_numpy(data.valid_y[i:i + 1000]).to(device) if given_labels else None
            err = (net.reconstruct(xb, labels).float() - xb).pow(2).flatten(2).sum(-1).double().sum(-1)  # (S,)
            total = err if total is None else total + err
    return (total / len(data.valid_x)).cpu().tolist()


def parzen_curve(net, prior, config: TrialConfig, data: datasets.Dataset, seeds: Sequence[int],
                 device, threads: int | None,
                 live: Sequence[int] | None = None) -> dict[int, tuple[float, float]]:
    """The (best mean validation log-likelihood, its sigma) over config.parzen_sigmas of each
    seed k in `live` (default all), from config.parzen_samples draws of its curve stream
    `seeds[k]` (every seed draws, so each seed's draws do not depend on which are live)."""
    n = config.parzen_validation or len(data.valid_x)
    points = data.valid_x[:n].reshape(min(n, len(data.valid_x)), -1)
    grid = tuple(config.parzen_sigmas)
    gens = [training.generator(s) for s in seeds]
    on_gpu = torch.device(device).type == "cuda"
    with torch.no_grad():
        batches = list(training.decoded_batches(net.decoder, prior, config.parzen_samples, gens, device))
    out = {}
    for k in range(len(seeds)) if live is None else live:
        chunks = [b[k] if on_gpu else b[k].cpu().numpy() for b in batches]
        if on_gpu:
            means = parzen_log_likelihood_torch(chunks, points, grid, device).mean(axis=1)
        else:
            means = parzen_log_likelihood_sigmas(chunks, points, grid, threads=threads).mean(axis=1)
        best = max(range(len(grid)), key=lambda i: (means[i], -grid[i]))  # a tie: the smaller sigma
        out[k] = (float(means[best]), float(grid[best]))
    return out


def curve_entries(net, config: TrialConfig, kind: str, z_prior, data: datasets.Dataset,
                  curve_seeds: Sequence[int], device, threads: int | None,
                  validation_error: Sequence[float] | None = None,
                  live: Sequence[int] | None = None) -> dict[int, dict[str, float]]:
    """One epoch's validation metrics of the live seeds (`live`, default all) of a seed-batched
    `net` (S seeds; seed k's curve stream `curve_seeds[k]`), keyed by seed index.
    `validation_error`: the classification errors the trial already computed for model
    selection, recorded as they are. A diverged seed is skipped (its weights are not finite)."""
    live = range(len(curve_seeds)) if live is None else live
    was_training = net.training
    net.eval()
    try:
        recon = reconstruction_errors(net, config, data, device)
        entries = {k: {"validation_reconstruction_error": recon[k]} for k in live}
        if kind == "parzen":
            scores = parzen_curve(net, z_prior, config, data, curve_seeds, device, threads, live)
            for k in live:
                entries[k].update(validation_parzen_ll=scores[k][0], validation_parzen_sigma=scores[k][1])
        elif kind == "classification" and validation_error is not None:
            for k in live:
                entries[k]["validation_error"] = validation_error[k]
        elif kind == "clustering":
            probs = _class_probabilities(net, data.valid_x, device)
            for k in live:
                entries[k]["validation_clustering_error"] = metrics.clustering_error(
                    probs[k], data.valid_y, probs[k], data.valid_y)
    finally:
        net.train(was_training)
    return entries


def trend(curve: Sequence[dict], metric: str, fraction: float = 0.1) -> float | None:
    """The change of `metric` over the last `fraction` of a curve's epochs (at least one
    epoch): last value minus the value `fraction` of the epochs before the end; positive means
    the metric rose. None when the curve has fewer than two entries with the metric."""
    values = [float(e[metric]) for e in curve if metric in e and e[metric] == e[metric]]
    if len(values) < 2:
        return None
    back = max(1, round(len(values) * fraction))
    return values[-1] - values[-1 - back]


def improving(change: float | None, metric: str) -> bool | None:
    """Whether a trend is towards the better (up for a log-likelihood, down for an error)."""
    if change is None:
        return None
    return change > 0 if metric in HIGHER_IS_BETTER else change < 0
