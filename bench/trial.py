"""One trial: config -> trained model (through aae_core and Accelerate) -> evaluated rows.

`run_trial` is the only place that holds an Accelerator; the runner maps it over a grid and
`aae-bench train` calls it directly. It returns rows and writes nothing but its artifacts.
It reads as its four steps: `start` (build, or restore from a TrialState), `train` (with
model selection and per-epoch checkpoints), `evaluate_seed` (bench.evaluate), and the rows
(bench.results.trial_rows).
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aae_core import datasets, priors, training, variants
from bench import metrics, provenance, results, validation
from bench.config import TrialConfig
from bench.evaluate import (
    EVALUATION_METRICS,
    EVALUATIONS,
    TrainedSeed,
    evaluation_kind,
    primary_metric,
    validation_errors,
)

log = logging.getLogger("aae_bench.trial")


@dataclass(frozen=True)
class TrialSettings:
    """How a trial runs, beside its config: where its files are, its threads and device (losses
    change bitwise with either, so every row records them) and what its rows record of where
    and how it ran."""

    data_dir: str | os.PathLike | None = None
    """Where the data files are, when `run_trial` is not given the data set."""
    artifacts_dir: str | os.PathLike | None = None
    """Each seed's weights, config, latents and curve go to <artifacts_dir>/<trial_id>; None: none."""
    threads: int | None = None
    """torch threads (None: torch's default)."""
    cpu: bool = True
    """Accelerate on the CPU; False: on the process's GPU."""
    command: str = ""
    """The command line that ran the trial (recorded in its rows)."""
    workers: int = 1
    """Data-parallel workers the runner started for the trial (recorded in its rows)."""
    node: Mapping[str, str] = field(default_factory=dict)
    """Where it runs (the Ray node id and IP), recorded in its rows."""


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
    wall_s: float | None = None
    """Wall-clock seconds the trial had run when this checkpoint was taken, summed over its
    processes; None in the checkpoints of older code (they did not record it)."""
    wall_s_from_epoch: int = 0
    """The first epoch `wall_s` covers: 0 unless an older code's checkpoint came before."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_state(state: TrialState, directory: str | os.PathLike) -> Path:
    path = Path(directory) / "state.pt"
    torch.save(state.__dict__, path)
    return path


def load_state(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrialState:
    """A checkpoint's state, every tensor on `map_location`. The CPU by default: without it the
    optimizer state saved on a GPU would come back on the GPU it was saved from (cuda:0 on every
    data-parallel rank, or a crash where there is none); `start` loads it into the model built
    on the CPU and Accelerate's prepare then moves it to the rank's own device."""
    return TrialState(**torch.load(Path(directory) / "state.pt", weights_only=True,
                                   map_location=map_location))


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


# -- building: the model, priors, optimizers and data of a config or pack ---------------


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
    record = variants.variant(config.variant)
    k = n_categories(config, data)
    net = variants.build(config.variant, data.image_shape, config.z_dim, config.hidden,
                      init_std=config.init_std, n_classes=k, head_init_std=config.head_init_std or 1.0,
                      init_seeds=[training.RandomStreams.from_seed(c.seed).init for c in pack],
                      init=config.init or "normal")
    if config.prior == "gaussian":
        z_prior = priors.Gaussian(config.z_dim, config.prior_std)
    elif config.prior == "mixture":
        z_prior = priors.GaussianMixture(data.n_classes, config.mixture_radius,
                                         config.mixture_std_radial, config.mixture_std_tangential)
    else:
        z_prior = priors.SwissRoll(data.n_classes)
    prior_set = {"z": z_prior}
    if record.categorical:
        prior_set["y"] = priors.Categorical(k)

    recon = training.SGD(config.recon_lr, config.recon_momentum)
    adversarial = training.SGD(config.adv_lr, config.adv_momentum) if record.adversarial else None
    classification = (training.SGD(config.classification_lr, config.classification_momentum)
                      if evaluation_kind(config) == "classification" else None)
    opts = training.make_optimizers(net, recon, adversarial, classification)
    settings = training.PhaseSettings(config.recon_reduction, config.input_noise_std or 0.0,
                                      config.head_threshold or 0.0, config.head_penalty or 0.0,
                                      config.disc_loss or "joined-mean", config.denoise_target or "clean")
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
    uses = variants.variant(config.variant).labels
    n = config.train_examples or len(data.train_x)
    x, y = torch.from_numpy(data.train_x[:n]), data.train_y[:n]
    if uses == "all":
        return training.TrainingData(x, torch.from_numpy(y).expand(seeds, n)), [""] * seeds
    if config.labels is None:
        return training.TrainingData(x), [""] * seeds
    index = np.stack([np.arange(n) if config.labels == 0
                      else datasets.labelled_subset(y, config.labels, c.seed, data.n_classes) for c in pack])
    subsets = [datasets.subset_hash(i) for i in index]
    if uses == "tagged":
        visible = np.full((seeds, n), -1, dtype=np.int64)  # -1: "unlabelled" (Section 3)
        for k in range(seeds):
            visible[k, index[k]] = y[index[k]]
        return training.TrainingData(x, torch.from_numpy(visible)), subsets
    return training.TrainingData(x, None, torch.from_numpy(index), torch.from_numpy(y[index])), subsets


# -- the trial ---------------------------------------------------------------------------


def run_trial(
    configs: TrialConfig | Sequence[TrialConfig],
    settings: TrialSettings | None = None,
    *,
    data: datasets.Dataset | None = None,
    resume: TrialState | None = None,
    on_epoch: Callable[[TrialState | None, dict], None] | None = None,
    **fields,
) -> list[dict]:
    """Train and evaluate one config, or a pack of configs that differ in their seed only (one
    seed-batched model); return the rows of every seed (status done, or diverged with the
    reason). Each seed's rows carry its own trial id, the same as when it runs alone.

    `settings` says how it runs; keyword `fields` of TrialSettings are a shorthand for it
    (`run_trial(config, data=d, threads=1)`). `on_epoch(state, losses)` is called after every
    epoch (the runner checkpoints there; `losses` are averaged over the seeds still training);
    `resume` continues from such a state. Errors other than divergence propagate.

    Data parallel: the same call runs on every rank of a torch.distributed group (Ray Train
    sets RANK / WORLD_SIZE, Accelerate picks them up). Each rank trains on its shard of every
    minibatch (`training.Shard`); `on_epoch` is called on every rank, with the state on rank 0
    only (holding every rank's random streams) and None elsewhere; only rank 0 evaluates and
    returns rows, the others return [].
    """
    from accelerate import Accelerator

    settings = dataclasses.replace(settings or TrialSettings(), **fields)
    pack = as_pack(configs)
    config = pack[0]
    started, t0 = _now(), time.perf_counter()
    pin_numerics()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if data is None:
        data = datasets.load(config.dataset, settings.data_dir)
    _allow_precision(config.precision)
    accelerator = Accelerator(cpu=settings.cpu, mixed_precision=config.precision)
    if settings.threads:  # again: a multi-process Accelerator sets its own thread count
        torch.set_num_threads(settings.threads)
    run = start(pack, data, accelerator, resume, t0)

    shared = {
        "threads": torch.get_num_threads(), "workers": max(settings.workers, run.shard.world),
        "seeds_per_trial": len(pack), "resumed_from_epoch": run.first_epoch,
        "wall_s_from_epoch": run.wall_from_epoch,
        "device": str(accelerator.device), "node": socket.gethostname(), **settings.node,
        "precision_used": str(accelerator.mixed_precision),
        "evaluator_version": metrics.METRICS_VERSION, "data_source": data.source,
        "data_split": data.split, "started_at": started, "command": settings.command,
        **provenance.code_version(), **provenance.environment(),
    }

    def rows(k: int, status: str, values: dict, error: str = "") -> list[dict]:
        context = results.RunContext(_now(), shared, run.parts.subset_hashes[k],
                                     round(run.wall_s(), 3), len(run.curve[k]))
        return results.trial_rows(pack[k], context, status, values, error)

    def diverged_rows(k: int) -> list[dict]:
        return rows(k, "diverged", {primary_metric(config): (math.nan, math.nan, 0)}, run.ctx.diverged[k])

    try:
        train(run, on_epoch)
    except training.DivergedError:
        if run.shard.rank != 0:
            return []
        return [row for k in range(len(pack)) for row in diverged_rows(k)]

    digests = _param_digests(accelerator, run.parts.net, run.shard)
    if len(set(digests)) > 1:
        # DDP that silently skipped an all-reduce would leave the ranks with different models.
        raise RuntimeError(f"parameters differ across data-parallel ranks: {digests}")
    if run.shard.rank != 0:
        return []
    shared["param_digests"] = json.dumps(digests)

    run.parts.net.eval()
    trained = _state(accelerator, run.parts.net)
    out: list[dict] = []
    for k, c in enumerate(pack):
        if k in run.ctx.diverged:
            out += diverged_rows(k)
            continue
        alone, values = evaluate_seed(run, k, trained)
        if settings.artifacts_dir is not None:
            save_artifacts(Path(settings.artifacts_dir) / c.trial_id, accelerator, alone, c, run.parts,
                           data, run.curve[k])
        out += rows(k, "done", values)
    return out


@dataclass
class Run:
    """A trial in progress in this process: its pack, built parts and random generators, and
    what it has recorded so far (seed index k of the pack: `curve[k]`, `best[k]`)."""

    pack: tuple[TrialConfig, ...]
    data: datasets.Dataset
    accelerator: object
    shard: training.Shard
    streams: list[training.RandomStreams]
    """Each seed's streams on this rank."""
    parts: Parts
    gens: dict[str, list[torch.Generator]]
    ctx: training.StepContext
    curve: list[list[dict]]
    best: list[dict | None]
    """Classification: each seed's model chosen on the validation split, and when."""
    first_epoch: int
    wall_before_s: float = 0.0
    """Wall-clock seconds of the trial's earlier processes, up to the checkpoint this one
    resumed from (counted from epoch `wall_from_epoch`)."""
    wall_from_epoch: int = 0
    t0: float = field(default_factory=time.perf_counter)
    """When this process's part of the trial began (time.perf_counter)."""

    def wall_s(self) -> float:
        """The trial's wall-clock seconds so far, over every process it ran in: a resumed trial
        counts each earlier process up to its last checkpoint (an epoch redone after a kill is
        counted once, in the process that finished it)."""
        return self.wall_before_s + time.perf_counter() - self.t0


def start(pack: tuple[TrialConfig, ...], data: datasets.Dataset, accelerator,
          resume: TrialState | None, t0: float | None = None) -> Run:
    """Build the pack's model and generators, restored from `resume` when given; `t0` is when
    this process's part of the trial began (time.perf_counter; now by default)."""
    shard = training.Shard(accelerator.process_index, accelerator.num_processes)
    base_streams = [training.RandomStreams.from_seed(c.seed) for c in pack]
    streams = [s.for_rank(shard.rank) for s in base_streams]
    parts = build(pack, data)
    gens = {"data": [training.generator(s.data) for s in streams],
            "prior": [training.generator(s.prior) for s in streams],
            "noise": [training.generator(s.noise) for s in streams]}
    if shard.world > 1:
        gens["labelled"] = [training.generator(s.labelled(shard.rank)) for s in base_streams]
    curve: list[list[dict]] = [[] for _ in pack]
    best: list[dict | None] = [None] * len(pack)
    first_epoch, diverged = 0, {}
    if resume is not None:
        parts.net.load_state_dict(resume.model)
        for name, opt_state in resume.optimizers.items():
            parts.opts[name].load_state_dict(opt_state)
        for key, gen_state in _rank_generators(resume.generators, shard.rank).items():
            name, k = key.split("#")
            if name in gens:
                gens[name][int(k)].set_state(gen_state)
        curve, first_epoch = [list(c) for c in resume.curve], resume.epoch
        best, diverged = list(resume.best or best), dict(resume.diverged or {})
    training.prepare(accelerator, parts.net, parts.opts)
    ctx = training.StepContext(accelerator, parts.net, parts.opts, parts.priors, parts.settings,
                               gens["prior"], gens["noise"], world=shard.world, diverged=diverged)
    wall_before, wall_from = 0.0, 0
    if resume is not None:
        # A checkpoint of older code has no wall time: this trial's wall_s then starts at its epoch.
        wall_before, wall_from = ((resume.wall_s, resume.wall_s_from_epoch) if resume.wall_s is not None
                                  else (0.0, resume.epoch))
    return Run(pack, data, accelerator, shard, streams, parts, gens, ctx, curve, best, first_epoch,
               wall_before, wall_from, time.perf_counter() if t0 is None else t0)


def train(run: Run, on_epoch: Callable[[TrialState | None, dict], None] | None) -> None:
    """The remaining epochs of `run`: each trains every live seed, records its losses, picks
    the classifiers' models on the validation split and hands a checkpoint to `on_epoch`.
    Raises training.DivergedError when no seed is left."""
    config, seeds = run.pack[0], len(run.pack)
    opts, ctx = run.parts.opts, run.ctx
    step = variants.variant(config.variant).step
    schedule = training.StepSchedule(config.lr_decay_epochs, config.lr_decay_factors)
    selects = evaluation_kind(config) == "classification"
    for epoch in range(run.first_epoch, config.epochs):
        training.set_learning_rates(opts, run.parts.rates, schedule.factor(epoch))
        t_epoch = time.perf_counter()
        losses = training.train_epoch(ctx, step, run.parts.data,
                                      batch_size=config.batch_size,
                                      data_generators=run.gens["data"], epoch=epoch, shard=run.shard,
                                      labelled_generators=run.gens.get("labelled"))
        seconds = round(time.perf_counter() - t_epoch, 3)
        live = [k for k in range(seeds) if k not in ctx.diverged]
        for k in live:
            run.curve[k].append({"epoch": epoch + 1, **losses[k], "seconds": seconds})
        if run.shard.rank == 0:
            errors = _select_models(run, live, epoch) if selects else None
            _record_validation(run, live, errors)
        summary = {"epoch": epoch + 1, **_mean_over(run.curve[k][-1] for k in live), "seconds": seconds}
        if seeds > 1:
            summary["seeds_live"] = len(live)
        log.info("trial %s epoch %d/%d %s", config.trial_id if seeds == 1 else
                 f"{config.trial_id}+{seeds - 1}", epoch + 1, config.epochs,
                 " ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "epoch"))
        if on_epoch is not None:
            on_epoch(_checkpoint(run, epoch + 1), summary)


def _select_models(run: Run, live: list[int], epoch: int) -> list[float]:
    """Model selection on the validation split only (never on test), seed by seed; returns
    every seed's validation error."""
    errors = validation_errors(run.parts.net, run.data, run.accelerator.device)
    improved = [k for k in live if run.best[k] is None or errors[k] < run.best[k]["validation_error"]]
    trained = _state(run.accelerator, run.parts.net) if improved else {}  # one copy for all seeds
    for k in improved:
        run.best[k] = {"validation_error": errors[k], "epoch": epoch + 1,
                       "model": _seed_state(trained, k)}
    return errors


def _record_validation(run: Run, live: list[int], errors: list[float] | None) -> None:
    """This epoch's validation metrics of every live seed, into its curve (bench.validation)."""
    config, t0 = run.pack[0], time.perf_counter()
    entries = validation.curve_entries(run.parts.net, config, evaluation_kind(config),
                                       run.parts.priors["z"], run.data,
                                       [s.curve for s in run.streams], run.accelerator.device,
                                       torch.get_num_threads(), errors, live)
    seconds = round(time.perf_counter() - t0, 3)  # the curve's cost, apart from the epoch's
    for k in live:
        run.curve[k][-1].update(entries[k], validation_seconds=seconds)


def _checkpoint(run: Run, epoch: int) -> TrialState | None:
    """The state after `epoch` epochs on rank 0 (None on the other ranks); collective when
    data parallel (rank 0's state holds every rank's generators)."""
    generators = _all_generators(run.gens, run.shard)
    if run.shard.rank != 0:
        return None
    return TrialState(epoch, [list(c) for c in run.curve], _state(run.accelerator, run.parts.net),
                      {k: copy.deepcopy(o.state_dict()) for k, o in run.parts.opts.items()},
                      generators, list(run.best), dict(run.ctx.diverged), run.wall_s(),
                      run.wall_from_epoch)


def evaluate_seed(run: Run, k: int, trained: dict) -> tuple[torch.nn.Module, dict]:
    """Seed k on its own (a plain S = 1 model: the evaluations are those of a lone seed): the
    model (the one chosen on validation, where there is a choice) and its metrics, with the
    selection and the last epoch's losses."""
    config = run.pack[k]
    kind = evaluation_kind(config)
    chosen = run.best[k] if kind == "classification" else None
    alone = seed_model(config, run.parts, run.data, chosen["model"] if chosen else _seed_state(trained, k),
                       run.accelerator.device)
    # The trial's own threads for a CPU Parzen evaluation (the default would count the host's).
    seed = TrainedSeed(config, alone, run.parts.priors["z"], run.parts.n_classes, run.streams[k],
                       run.accelerator.device, threads=torch.get_num_threads())
    values = EVALUATIONS[kind](seed, run.data)
    if chosen is not None:
        values["classification_error_validation"] = (chosen["validation_error"], math.nan,
                                                     len(run.data.valid_x))
        values["selected_epoch"] = (float(chosen["epoch"]), math.nan, 0)
    own = variants.variant(config.variant).primary_metric
    if own:
        values[own] = values[EVALUATION_METRICS[kind]]
    last = run.curve[k][-1] if run.curve[k] else {}
    for name in sorted(m for m in last if m.startswith("loss_")):
        values[name] = (last[name], math.nan, len(run.parts.data.x))
    return alone, values


CUBLAS_WORKSPACE = ":4096:8"


def pin_numerics() -> None:
    """The float32 arithmetic of every trial, whatever the process had: IEEE fp32 matmuls
    ("highest"; some container images set "high", i.e. TF32 on CUDA), so fp32 rows mean fp32 and
    bf16 trials (autocast chooses bf16 itself) run their fp32 remainder in fp32 too. And cuBLAS's
    fixed workspace for repeatable GPU sums: PyTorch reads CUBLAS_WORKSPACE_CONFIG once, at the
    process's first cuBLAS call, so it is set here, before the trial's first CUDA call; a value
    the user set stays. torch.use_deterministic_algorithms is left off: it raises on CUDA ops
    without a deterministic kernel, and the CUDA path has not run yet. Rows record the
    precision (bench.provenance.numerics)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_float32_matmul_precision("highest")


def _allow_precision(precision: str) -> None:
    """Accelerate keeps one process-wide state and refuses an Accelerator of another precision
    in the same process (a pytest run, a reused Ray worker given trials of both precisions, a
    cost calibration before the trial). One process, one trial at a time: reset it. With
    several processes the launcher fixes the precision of every rank anyway."""
    from accelerate.state import AcceleratorState

    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and current != precision and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)

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
    alone = variants.network(config.variant, data.image_shape, config.z_dim, config.hidden, 1,
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


# -- artifacts ---------------------------------------------------------------------------


def model_args(config: TrialConfig, parts: Parts, data: datasets.Dataset) -> dict:
    """The arguments of `aae_core.variants.build` that give a saved model's shapes (nanoGPT's
    model_args): figures rebuild the model from them, never from weight shapes."""
    return {"variant": config.variant, "input_shape": list(data.image_shape), "z_dim": config.z_dim,
            "hidden": list(config.hidden), "n_classes": parts.n_classes}


def save_artifacts(directory: Path, accelerator, net, config: TrialConfig, parts: Parts,
                   data: datasets.Dataset, curve: list[dict]) -> None:
    """A one-seed model's weights (loadable with weights_only=True) with the arguments that
    build it and its config, hold-out latents and the training curve."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(_state(accelerator, net), directory / "model.pt")
    (directory / "model_args.json").write_text(json.dumps(model_args(config, parts, data), indent=1))
    (directory / "config.json").write_text(json.dumps(config.as_dict(), indent=1))
    x = torch.from_numpy(data.test_x)
    with torch.no_grad():
        if variants.variant(config.variant).categorical:
            (y_probs,), (z,) = training.apply(net.code, x, accelerator.device)
            rep, = training.apply(lambda b: net.representation(*net.code(b)), x, accelerator.device)
            arrays = {"z": z, "y_probs": y_probs, "representation": rep}
        else:
            arrays = {"z": training.apply(net.code, x, accelerator.device)[0]}
    np.savez_compressed(directory / "latents.npz", y=data.test_y, split=np.array("test"),
                        **{k: v.astype(np.float32) for k, v in arrays.items()})
    pd.DataFrame(curve).to_csv(directory / "curve.csv", index=False)
