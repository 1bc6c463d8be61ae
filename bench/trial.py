"""One trial: config -> trained model (through aae_core and Accelerate) -> evaluated rows.

`run_trial` is the only place that holds an Accelerator; the runner maps it over a grid and
`aae-bench train` calls it directly. It returns rows and writes nothing but its artifacts.
Split hygiene by construction: labelled examples come from the training split only, model
selection reads the validation split only, and the test split is read once, at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aae_core import datasets, model, priors, training
from bench import metrics, provenance
from bench.config import CATEGORICAL_VARIANTS, PARZEN_VARIANTS, TrialConfig

log = logging.getLogger("aae_bench.trial")


def evaluation_kind(config: TrialConfig) -> str:
    """Which of the paper's evaluations a config gets."""
    if config.variant in PARZEN_VARIANTS:
        return "parzen"  # Table 1
    if config.variant in CATEGORICAL_VARIANTS and config.labels is not None:
        return "classification"  # Table 2, Section 7 with labels
    if config.variant in CATEGORICAL_VARIANTS:
        return "clustering"  # Table 3, Section 7 without labels
    return "reconstruction"  # Fig. 4-6: models judged by their figures


PRIMARY_METRIC = {"parzen": "parzen_ll", "classification": "classification_error",
                  "clustering": "clustering_error", "reconstruction": "reconstruction_error"}


def primary_metric(config: TrialConfig) -> str:
    if config.variant == "dim-reduction":
        return "dim_reduction_error"
    return PRIMARY_METRIC[evaluation_kind(config)]


@dataclass
class TrialState:
    """What a checkpoint holds: enough to continue a trial (all its seeds) exactly where it stopped.

    `curve[k]` and `best[k]` belong to seed index k of the pack; generator states are keyed
    "name#k" (and "name#k@r" for data-parallel rank r > 0)."""

    epoch: int
    curve: list[list[dict]]
    model: dict
    optimizers: dict[str, dict]
    generators: dict[str, torch.Tensor]
    best: list | None = None
    diverged: dict[int, str] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_state(state: TrialState, directory: str | os.PathLike) -> Path:
    path = Path(directory) / "state.pt"
    torch.save(state.__dict__, path)
    return path


def load_state(directory: str | os.PathLike) -> TrialState:
    return TrialState(**torch.load(Path(directory) / "state.pt", weights_only=True))


def as_pack(configs: TrialConfig | Sequence[TrialConfig]) -> tuple[TrialConfig, ...]:
    """One config, or several that differ in their seed only (trained as one seed-batched model)."""
    pack = (configs,) if isinstance(configs, TrialConfig) else tuple(configs)
    if not pack:
        raise ValueError("a trial needs at least one config")
    shared = dataclasses.replace(pack[0], seed=0)
    if any(dataclasses.replace(c, seed=0) != shared for c in pack):
        raise ValueError("the configs of one trial must differ in their seed only")
    if len({c.seed for c in pack}) != len(pack):
        raise ValueError(f"the seeds of one trial must be distinct; got {[c.seed for c in pack]}")
    return pack


@dataclass
class Parts:
    """A built model (all seeds of a pack) with everything its training needs."""

    net: torch.nn.Module
    priors: dict
    opts: dict
    rates: dict[str, float]
    settings: training.PhaseSettings
    data: training.TrainingData
    subset_hashes: list[str]
    n_classes: int


def n_categories(config: TrialConfig, data: datasets.Dataset) -> int:
    return config.clusters if config.clusters is not None else data.n_classes


def build(configs: TrialConfig | Sequence[TrialConfig], data: datasets.Dataset) -> Parts:
    """The network, priors, optimizers and training data of a config or pack (each seed's
    weights from its own init stream)."""
    pack = as_pack(configs)
    config = pack[0]
    k = n_categories(config, data)
    net = model.build(config.variant, data.image_shape, config.z_dim, config.hidden,
                      init_std=config.init_std, n_classes=k, head_init_std=config.head_init_std or 1.0,
                      init_seeds=[training.RandomStreams.from_seed(c.seed).init for c in pack])
    if config.prior == "gaussian":
        z_prior = priors.Gaussian(config.z_dim, config.prior_std)
    elif config.prior == "mixture":
        z_prior = priors.GaussianMixture(data.n_classes, config.mixture_radius,
                                         config.mixture_std_radial, config.mixture_std_tangential)
    else:
        z_prior = priors.SwissRoll(data.n_classes)
    prior_set = {"z": z_prior}
    if config.variant in CATEGORICAL_VARIANTS:
        prior_set["y"] = priors.Categorical(k)

    recon = training.SGD(config.recon_lr, config.recon_momentum)
    adversarial = training.SGD(config.adv_lr, config.adv_momentum)
    classification = (training.SGD(config.classification_lr, config.classification_momentum)
                      if evaluation_kind(config) == "classification" else None)
    opts = training.make_optimizers(config.variant, net, recon, adversarial, classification)
    settings = training.PhaseSettings(config.recon_reduction, config.input_noise_std or 0.0,
                                      config.head_threshold or 0.0, config.head_penalty or 0.0)
    train_data, subsets = training_data(pack, data)
    return Parts(net, prior_set, opts, training.base_rates(opts, recon, adversarial, classification),
                 settings, train_data, subsets, k)


def training_data(configs: TrialConfig | Sequence[TrialConfig],
                  data: datasets.Dataset) -> tuple[training.TrainingData, list[str]]:
    """What each seed's model may see of the training split: the images, and labels where the
    variant uses them (each seed its own labelled subset). Returns the data and, per seed, the
    hash of its labelled subset ("" when there is none)."""
    pack = as_pack(configs)
    config, seeds = pack[0], len(pack)
    n = config.train_examples or len(data.train_x)
    x, y = torch.from_numpy(data.train_x[:n]), data.train_y[:n]
    if config.variant == "supervised":
        return training.TrainingData(x, torch.from_numpy(y).expand(seeds, n)), [""] * seeds
    if config.labels is None:
        return training.TrainingData(x), [""] * seeds
    index = np.stack([np.arange(n) if config.labels == 0
                      else datasets.labelled_subset(y, config.labels, c.seed, data.n_classes) for c in pack])
    subsets = [datasets.subset_hash(i) for i in index]
    if config.variant == "label-regularized":
        visible = np.full((seeds, n), -1, dtype=np.int64)  # -1: "unlabelled" (Section 3)
        for k in range(seeds):
            visible[k, index[k]] = y[index[k]]
        return training.TrainingData(x, torch.from_numpy(visible)), subsets
    return training.TrainingData(x, None, torch.from_numpy(index), torch.from_numpy(y[index])), subsets


def run_trial(
    configs: TrialConfig | Sequence[TrialConfig],
    *,
    data: datasets.Dataset | None = None,
    data_dir: str | None = None,
    artifacts_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    cpu: bool = True,
    resume: TrialState | None = None,
    on_epoch: Callable[[TrialState, dict], None] | None = None,
    command: str = "",
    workers: int = 1,
    node: dict | None = None,
) -> list[dict]:
    """Train and evaluate one config, or a pack of configs that differ in their seed only (one
    seed-batched model); return the rows of every seed (status done, or diverged with the
    reason). Each seed's rows carry its own trial id, the same as when it runs alone.

    `on_epoch(state, losses)` is called after every epoch (the runner checkpoints there;
    `losses` are averaged over the seeds still training); `resume` continues from such a
    state. Errors other than divergence propagate. `node` (e.g. the Ray node id and IP) goes
    into every row.

    Data parallel: the same call runs on every rank of a torch.distributed group (Ray Train
    sets RANK / WORLD_SIZE, Accelerate picks them up). Each rank trains on its shard of every
    minibatch (`training.Shard`); `on_epoch` is called on every rank, with the state on rank 0
    only (holding every rank's random streams) and None elsewhere; only rank 0 evaluates and
    returns rows, the others return [].
    """
    from accelerate import Accelerator

    pack = as_pack(configs)
    config, seeds = pack[0], len(pack)
    started, t0 = _now(), time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    if data is None:
        data = datasets.load(config.dataset, data_dir, fold=config.fold or 0)
    accelerator = Accelerator(cpu=cpu, mixed_precision=config.precision)
    if threads:  # again: a multi-process Accelerator sets its own thread count
        torch.set_num_threads(threads)
    shard = training.Shard(accelerator.process_index, accelerator.num_processes)
    base_streams = [training.RandomStreams.from_seed(c.seed) for c in pack]
    streams = [s.for_rank(shard.rank) for s in base_streams]
    parts = build(pack, data)
    net, opts = parts.net, parts.opts
    gens = {"data": [training.generator(s.data) for s in streams],
            "prior": [training.generator(s.prior) for s in streams],
            "noise": [training.generator(s.evaluation + 1) for s in streams]}
    if shard.world > 1:
        gens["labelled"] = [training.generator(s.labelled(shard.rank)) for s in base_streams]
    curve: list[list[dict]] = [[] for _ in pack]
    best: list[dict | None] = [None] * seeds
    first_epoch = 0
    diverged: dict[int, str] = {}
    if resume is not None:
        net.load_state_dict(resume.model)
        for name, opt_state in resume.optimizers.items():
            opts[name].load_state_dict(opt_state)
        for key, gen_state in _rank_generators(resume.generators, shard.rank).items():
            name, k = key.split("#")
            if name in gens:
                gens[name][int(k)].set_state(gen_state)
        curve, first_epoch = [list(c) for c in resume.curve], resume.epoch
        best, diverged = list(resume.best or best), dict(resume.diverged or {})
    training.prepare(accelerator, net, opts)
    ctx = training.StepContext(accelerator, net, opts, parts.priors, parts.settings,
                               gens["prior"], gens["noise"], world=shard.world, diverged=diverged)
    schedule = training.StepSchedule(config.lr_decay_epochs, config.lr_decay_factors)
    kind = evaluation_kind(config)

    shared_context = {
        "grid": config.grid, "profile": config.profile, "threads": torch.get_num_threads(),
        "workers": max(workers, shard.world), "seeds_per_trial": seeds,
        "resumed_from_epoch": first_epoch, "device": str(accelerator.device),
        "node": socket.gethostname(), **(node or {}),
        "precision_used": str(accelerator.mixed_precision),
        "evaluator_version": metrics.METRICS_VERSION, "data_source": data.source,
        "data_split": data.split, "started_at": started, "command": command,
        **provenance.code_version(), **provenance.environment(),
    }

    def rows(k: int, status: str, values: dict[str, tuple[float, float, int]], error: str = "") -> list[dict]:
        c = pack[k]
        context = {"trial_id": c.trial_id, **shared_context, "seed": c.seed,
                   "subset_hash": parts.subset_hashes[k], **c.as_dict()}
        finished = {"finished_at": _now(), "wall_s": round(time.perf_counter() - t0, 3),
                    "epochs_done": len(curve[k]), "status": status, "error": error}
        return [{**context, **finished, "metric": name, "value": value, "stderr": stderr, "n": n}
                for name, (value, stderr, n) in values.items()]

    def diverged_rows(k: int) -> list[dict]:
        return rows(k, "diverged", {primary_metric(config): (math.nan, math.nan, 0)}, ctx.diverged[k])

    try:
        for epoch in range(first_epoch, config.epochs):
            training.set_learning_rates(opts, parts.rates, schedule.factor(epoch))
            t_epoch = time.perf_counter()
            losses = training.train_epoch(ctx, config.variant, parts.data,
                                          batch_size=config.batch_size,
                                          data_generators=gens["data"], epoch=epoch, shard=shard,
                                          labelled_generators=gens.get("labelled"))
            seconds = round(time.perf_counter() - t_epoch, 3)
            live = [k for k in range(seeds) if k not in ctx.diverged]
            for k in live:
                curve[k].append({"epoch": epoch + 1, **losses[k], "seconds": seconds})
            if kind == "classification" and shard.rank == 0:
                # Model selection on the validation split only (never on test), seed by seed.
                errors = validation_errors(accelerator, net, data)
                for k in live:
                    curve[k][-1]["validation_error"] = errors[k]
                improved = [k for k in live if best[k] is None or errors[k] < best[k]["validation_error"]]
                trained = _state(accelerator, net) if improved else {}  # one copy for all seeds
                for k in improved:
                    best[k] = {"validation_error": errors[k], "epoch": epoch + 1,
                               "model": _seed_state(trained, k)}
            summary = {"epoch": epoch + 1, **_mean_over(curve[k][-1] for k in live), "seconds": seconds}
            if seeds > 1:
                summary["seeds_live"] = len(live)
            log.info("trial %s epoch %d/%d %s", config.trial_id if seeds == 1 else
                     f"{config.trial_id}+{seeds - 1}", epoch + 1, config.epochs,
                     " ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "epoch"))
            if on_epoch is not None:
                generators = _all_generators(gens, shard)  # collective when data parallel
                state = (TrialState(epoch + 1, [list(c) for c in curve], _state(accelerator, net),
                                    {k: copy.deepcopy(o.state_dict()) for k, o in opts.items()},
                                    generators, list(best), dict(ctx.diverged))
                         if shard.rank == 0 else None)
                on_epoch(state, summary)
    except training.DivergedError:
        if shard.rank != 0:
            return []
        return [row for k in range(seeds) for row in diverged_rows(k)]

    digests = _param_digests(accelerator, net, shard)
    if len(set(digests)) > 1:
        # DDP that silently skipped an all-reduce would leave the ranks with different models.
        raise RuntimeError(f"parameters differ across data-parallel ranks: {digests}")
    if shard.rank != 0:
        return []
    shared_context["param_digests"] = json.dumps(digests)

    net.eval()
    trained = _state(accelerator, net)
    out: list[dict] = []
    for k, c in enumerate(pack):
        if k in ctx.diverged:
            out += diverged_rows(k)
            continue
        # Seed k on its own (a plain S = 1 model): the evaluations are those of a lone seed.
        chosen = best[k] if kind == "classification" and best[k] is not None else None
        alone = seed_model(config, parts, data, chosen["model"] if chosen else _seed_state(trained, k),
                           accelerator.device)
        values = EVALUATIONS[kind](c, accelerator, alone, parts, data, streams[k])
        if chosen is not None:
            values["classification_error_validation"] = (chosen["validation_error"], math.nan, len(data.valid_x))
            values["selected_epoch"] = (float(chosen["epoch"]), math.nan, 0)
        if config.variant == "dim-reduction":
            values["dim_reduction_error"] = values[PRIMARY_METRIC[kind]]
        last = curve[k][-1] if curve[k] else {}
        for name in sorted(m for m in last if m.startswith("loss_")):
            values[name] = (last[name], math.nan, len(parts.data.x))
        if artifacts_dir is not None:
            save_artifacts(Path(artifacts_dir) / c.trial_id, accelerator, alone, data, curve[k])
        out += rows(k, "done", values)
    return out


def _mean_over(entries) -> dict[str, float]:
    """The mean of each loss over the seeds' entries of one epoch (what the progress line shows)."""
    entries = list(entries)
    names = [m for m in (entries[0] if entries else {}) if m not in ("epoch", "seconds")]
    return {m: float(np.mean([e[m] for e in entries])) for m in names}


def _seed_state(state: dict, k: int) -> dict:
    """Seed k's slice of a model state, in the layout of a one-seed model (seed dimension 1)."""
    return {key: value[k:k + 1].clone() for key, value in state.items()}


def seed_model(config: TrialConfig, parts: Parts, data: datasets.Dataset, state: dict,
               device) -> torch.nn.Module:
    """A one-seed model of `config` holding `state` (a seed's slice), in eval mode."""
    alone = model.VARIANTS[config.variant](data.image_shape, config.z_dim, config.hidden, 1,
                                           n_classes=parts.n_classes)
    alone.load_state_dict(state)
    return alone.to(device).eval()


def _rank_generators(states: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Rank `rank`'s generator states from a checkpoint (rank r > 0 stored as "name@r")."""
    if rank == 0:
        return {k: v for k, v in states.items() if "@" not in k}
    suffix = f"@{rank}"
    return {k[: -len(suffix)]: v for k, v in states.items() if k.endswith(suffix)}


def _all_generators(gens: dict[str, list[torch.Generator]], shard: training.Shard) -> dict[str, torch.Tensor]:
    """Every rank's generator states ("name#seed index"), so that rank 0's checkpoint resumes
    all of them exactly."""
    own = {f"{name}#{k}": g.get_state() for name, per_seed in gens.items() for k, g in enumerate(per_seed)}
    if shard.world == 1:
        return own
    gathered: list = [None] * shard.world
    torch.distributed.all_gather_object(gathered, own)
    return {**gathered[0], **{f"{k}@{r}": v for r, states in enumerate(gathered[1:], 1)
                              for k, v in states.items()}}


def _param_digests(accelerator, net: torch.nn.Module, shard: training.Shard) -> list[str]:
    """sha256 (16 hex) of the trained weights, one per rank (all equal when DDP did its job)."""
    digest = hashlib.sha256()
    for key, value in sorted(_state(accelerator, net).items()):
        digest.update(key.encode())
        digest.update(value.float().numpy().tobytes())
    own = digest.hexdigest()[:16]
    if shard.world == 1:
        return [own]
    gathered: list = [None] * shard.world
    torch.distributed.all_gather_object(gathered, own)
    return gathered


def _state(accelerator, net: torch.nn.Module) -> dict:
    state = {}
    for name, child in net.named_children():
        for key, value in accelerator.unwrap_model(child).state_dict().items():
            state[f"{name}.{key}"] = value.detach().cpu().clone()
    for name, param in net.named_parameters(recurse=False):
        state[name] = param.detach().cpu().clone()
    return state


def class_probabilities(accelerator, net, x: np.ndarray) -> np.ndarray:
    """q(y|x) of every seed of `net`: (S, N, K)."""
    was_training = net.training
    net.eval()
    probs = training.apply(lambda b: net.code(b)[0], torch.from_numpy(x), accelerator.device)
    net.train(was_training)
    return probs


def validation_errors(accelerator, net, data: datasets.Dataset) -> list[float]:
    """Each seed's classification error on the validation split."""
    return [metrics.classification_error(p, data.valid_y)
            for p in class_probabilities(accelerator, net, data.valid_x)]


# -- evaluations of one seed (a one-seed model; each returns {metric: (value, stderr, n)}) --


def evaluate_parzen(config, accelerator, net, parts: Parts, data, streams) -> dict:
    """Table 1's protocol: sigma chosen on validation images, the test split scored once."""
    samples, = training.generate(net.decoder, parts.priors["z"], config.parzen_samples,
                                 [training.generator(streams.evaluation)], accelerator.device)
    validation = data.valid_x[: config.parzen_validation].reshape(config.parzen_validation, -1)
    sigma = metrics.select_parzen_sigma(samples, validation, config.parzen_sigmas)
    valid_ll = metrics.parzen_log_likelihood(samples, validation, sigma)
    n_test = config.parzen_test or len(data.test_x)
    test_ll = metrics.parzen_log_likelihood(samples, data.test_x[:n_test].reshape(n_test, -1), sigma)
    mean, stderr = metrics.parzen_summary(test_ll)
    values = {
        "parzen_ll": (mean, stderr, n_test),
        "parzen_sigma": (float(sigma), math.nan, len(validation)),
        "parzen_validation_ll": (float(np.mean(valid_ll)), math.nan, len(validation)),
    }
    if config.parzen_samples_large:
        values.update(evaluate_parzen_large(config, accelerator, net, parts, data, streams,
                                            validation, n_test))
    return values


def evaluate_parzen_large(config, accelerator, net, parts, data, streams, validation, n_test) -> dict:
    """Table 1's 10M column: samples decoded and consumed chunk by chunk (bounded memory).

    # PAPER-GAP: how the paper chose sigma for 10M samples is not known to us; we choose it on
    # the same validation images with the same number of samples (same stream of draws).
    """
    def chunks():  # the same draws for every sigma: a fresh generator from the same seed
        gen = training.generator(streams.evaluation + 2)
        for start in range(0, config.parzen_samples_large, 10_000):
            n = min(10_000, config.parzen_samples_large - start)
            yield training.generate(net.decoder, parts.priors["z"], n, [gen], accelerator.device)[0]

    scores = {s: float(np.mean(metrics.parzen_log_likelihood_streaming(chunks(), validation, s)))
              for s in config.parzen_sigmas}
    sigma = max(scores, key=lambda s: (scores[s], -s))
    test = data.test_x[:n_test].reshape(n_test, -1)
    mean, stderr = metrics.parzen_summary(metrics.parzen_log_likelihood_streaming(chunks(), test, sigma))
    return {"parzen_ll_10m": (mean, stderr, n_test),
            "parzen_sigma_10m": (float(sigma), math.nan, len(validation))}


def evaluate_classification(config, accelerator, net, parts, data, streams) -> dict:
    """Table 2: error of argmax q(y|x) on the test split (the model chosen on validation)."""
    probs, = class_probabilities(accelerator, net, data.test_x)
    return {"classification_error": (metrics.classification_error(probs, data.test_y), math.nan,
                                     len(data.test_y))}


def evaluate_clustering(config, accelerator, net, parts, data, streams) -> dict:
    """Table 3: each cluster takes the label of its most confident validation example (the
    paper's rule); also the rules other papers use, under their own names."""
    n_train = config.train_examples or len(data.train_x)
    p_valid, = class_probabilities(accelerator, net, data.valid_x)
    p_test, = class_probabilities(accelerator, net, data.test_x)
    p_train, = class_probabilities(accelerator, net, data.train_x[:n_train])
    n = len(data.test_y)
    values = {
        "clustering_error": (metrics.clustering_error(p_valid, data.valid_y, p_test, data.test_y), math.nan, n),
        "clustering_error_majority": (metrics.clustering_error_majority(
            p_train, data.train_y[:n_train], p_test, data.test_y), math.nan, n),
    }
    if parts.n_classes == data.n_classes:
        values["clustering_error_hungarian"] = (metrics.clustering_error_hungarian(p_test, data.test_y), math.nan, n)
    return values


def evaluate_reconstruction(config, accelerator, net, parts, data, streams) -> dict:
    """Squared reconstruction error per test image (summed over pixels)."""
    x = torch.from_numpy(data.test_x)
    y = torch.from_numpy(data.test_y)
    errors = []
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            xb = x[i:i + 1000].to(accelerator.device)
            labels = y[i:i + 1000].to(accelerator.device) if config.variant == "supervised" else None
            errors.append((net.reconstruct(xb, labels)[0].float() - xb).pow(2).flatten(1).sum(1).cpu())
    err = torch.cat(errors).double().numpy()
    return {"reconstruction_error": (float(err.mean()), float(err.std(ddof=1) / math.sqrt(len(err))), len(err))}


EVALUATIONS = {"parzen": evaluate_parzen, "classification": evaluate_classification,
               "clustering": evaluate_clustering, "reconstruction": evaluate_reconstruction}


def save_artifacts(directory: Path, accelerator, net, data: datasets.Dataset, curve: list[dict]) -> None:
    """A one-seed model's weights (loadable with weights_only=True), hold-out latents and the
    training curve."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(_state(accelerator, net), directory / "model.pt")
    x = torch.from_numpy(data.test_x)
    with torch.no_grad():
        if isinstance(net, model.SemiSupervisedAAE):
            (y_probs,), (z,) = training.apply(net.code, x, accelerator.device)
            rep, = training.apply(lambda b: net.representation(*net.code(b)), x, accelerator.device)
            arrays = {"z": z, "y_probs": y_probs, "representation": rep}
        else:
            arrays = {"z": training.apply(net.code, x, accelerator.device)[0]}
    np.savez_compressed(directory / "latents.npz", y=data.test_y, split=np.array("test"),
                        **{k: v.astype(np.float32) for k, v in arrays.items()})
    pd.DataFrame(curve).to_csv(directory / "curve.csv", index=False)
