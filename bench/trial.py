"""One trial: config -> trained model (through aae_core and Accelerate) -> evaluated rows.

`run_trial` is the only place that holds an Accelerator; the runner maps it over a grid and
`aae-bench train` calls it directly. It returns rows and writes nothing but its artifacts.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aae_core import datasets, model, priors, training
from bench import metrics, provenance
from bench.config import TrialConfig

log = logging.getLogger("aae_bench.trial")

PRIMARY_METRICS = {"unsupervised": ["parzen_ll"]}


@dataclass
class TrialState:
    """What a checkpoint holds: enough to continue a trial exactly where it stopped."""

    epoch: int
    curve: list[dict]
    model: dict
    optimizers: list[dict]
    generators: dict[str, torch.Tensor]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_state(state: TrialState, directory: str | os.PathLike) -> Path:
    path = Path(directory) / "state.pt"
    torch.save(state.__dict__, path)
    return path


def load_state(directory: str | os.PathLike) -> TrialState:
    return TrialState(**torch.load(Path(directory) / "state.pt", weights_only=True))


def run_trial(
    config: TrialConfig,
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
) -> list[dict]:
    """Train and evaluate one config; return its rows (status done, or diverged with the reason).

    `on_epoch(state, losses)` is called after every epoch (the runner checkpoints there);
    `resume` continues from such a state. Errors other than divergence propagate.
    """
    from accelerate import Accelerator

    started, t0 = _now(), time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    if data is None:
        data = datasets.load(config.dataset, data_dir)
    accelerator = Accelerator(cpu=cpu, mixed_precision=config.precision)

    streams = training.RandomStreams.from_seed(config.seed)
    torch.manual_seed(streams.init)  # the only use of the global stream: weight init
    aae = model.VARIANTS[config.variant](data.image_shape, config.z_dim, config.hidden,
                                         config.init_std)
    prior = priors.make_prior(config.prior, dim=config.z_dim, std=config.prior_std)
    recon = training.SGD(config.recon_lr, config.recon_momentum)
    adversarial = training.SGD(config.adv_lr, config.adv_momentum)
    opts = training.make_optimizers(aae.encoder, aae.decoder, aae.discriminator, recon, adversarial)
    schedule = training.StepSchedule(config.lr_decay_epochs, config.lr_decay_factors)
    gens = {"data": training.generator(streams.data), "prior": training.generator(streams.prior)}
    curve: list[dict] = []
    first_epoch = 0
    if resume is not None:
        aae.load_state_dict(resume.model)
        for opt, opt_state in zip(opts.all(), resume.optimizers, strict=True):
            opt.load_state_dict(opt_state)
        for name, gen_state in resume.generators.items():
            gens[name].set_state(gen_state)
        curve, first_epoch = list(resume.curve), resume.epoch
    # Each sub-network and optimizer prepared on its own (a prepared parent would bypass DDP).
    aae.encoder, aae.decoder, aae.discriminator, opts.reconstruction, opts.discriminator, \
        opts.generator = accelerator.prepare(aae.encoder, aae.decoder, aae.discriminator,
                                             *opts.all())

    train_x = torch.from_numpy(data.train_x)
    if config.train_examples:
        train_x = train_x[: config.train_examples]

    context = {
        "trial_id": config.trial_id, "grid": config.grid, "profile": config.profile,
        "seed": config.seed, "threads": torch.get_num_threads(), "workers": workers,
        "device": str(accelerator.device), "node": socket.gethostname(),
        "precision_used": str(accelerator.mixed_precision),
        "evaluator_version": metrics.METRICS_VERSION, "data_source": data.source,
        "data_split": data.split, "subset_hash": "", "started_at": started, "command": command,
        **config.as_dict(), **provenance.code_version(), **provenance.environment(),
    }

    def rows(status: str, values: dict[str, tuple[float, float, int]], error: str = "") -> list[dict]:
        finished = {"finished_at": _now(), "wall_s": round(time.perf_counter() - t0, 3),
                    "epochs_done": len(curve), "status": status, "error": error}
        return [{**context, **finished, "metric": name, "value": value, "stderr": stderr, "n": n}
                for name, (value, stderr, n) in values.items()]

    try:
        for epoch in range(first_epoch, config.epochs):
            training.set_learning_rates(opts, recon, adversarial, schedule.factor(epoch))
            t_epoch = time.perf_counter()
            losses = training.train_epoch(
                accelerator, aae, prior, opts, train_x, batch_size=config.batch_size,
                reduction=config.recon_reduction, data_generator=gens["data"],
                prior_generator=gens["prior"], epoch=epoch)
            losses = {"epoch": epoch + 1, **losses, "seconds": round(time.perf_counter() - t_epoch, 3)}
            curve.append(losses)
            log.info("trial %s epoch %d/%d recon %.4f disc %.4f gen %.4f (%.1fs)", config.trial_id,
                     epoch + 1, config.epochs, losses["loss_reconstruction"],
                     losses["loss_discriminator"], losses["loss_generator"], losses["seconds"])
            if on_epoch is not None:
                on_epoch(TrialState(epoch + 1, list(curve), _unwrapped_state(accelerator, aae),
                                    [copy.deepcopy(o.state_dict()) for o in opts.all()],
                                    {k: g.get_state() for k, g in gens.items()}), losses)
    except training.DivergedError as exc:
        nan = (math.nan, math.nan, 0)
        return rows("diverged", {m: nan for m in PRIMARY_METRICS[config.variant]}, str(exc))

    values = evaluate_parzen(config, accelerator, aae, prior, data, streams)
    last = curve[-1] if curve else {}
    for name in ("loss_reconstruction", "loss_discriminator", "loss_generator"):
        values[name] = (last.get(name, math.nan), math.nan, len(train_x))
    if artifacts_dir is not None:
        save_artifacts(Path(artifacts_dir) / config.trial_id, accelerator, aae, data, curve)
    return rows("done", values)


def _unwrapped_state(accelerator, aae: torch.nn.Module) -> dict:
    parts = {name: accelerator.unwrap_model(getattr(aae, name)).state_dict()
             for name in ("encoder", "decoder", "discriminator")}
    return {f"{name}.{k}": v.detach().cpu().clone() for name, sd in parts.items() for k, v in sd.items()}


def evaluate_parzen(config: TrialConfig, accelerator, aae, prior, data: datasets.Dataset,
                    streams: training.RandomStreams) -> dict[str, tuple[float, float, int]]:
    """Table 1's protocol: sigma chosen on validation images, the test split scored once."""
    aae.eval()
    samples = training.generate(aae.decoder, prior, config.parzen_samples,
                                training.generator(streams.evaluation), accelerator.device)
    validation = data.valid_x[: config.parzen_validation].reshape(config.parzen_validation, -1)
    sigma = metrics.select_parzen_sigma(samples, validation, config.parzen_sigmas)
    valid_ll = metrics.parzen_log_likelihood(samples, validation, sigma)
    n_test = config.parzen_test or len(data.test_x)
    test_ll = metrics.parzen_log_likelihood(samples, data.test_x[:n_test].reshape(n_test, -1), sigma)
    mean, stderr = metrics.parzen_summary(test_ll)
    aae.train()
    return {
        "parzen_ll": (mean, stderr, n_test),
        "parzen_sigma": (float(sigma), math.nan, len(validation)),
        "parzen_validation_ll": (float(np.mean(valid_ll)), math.nan, len(validation)),
    }


def save_artifacts(directory: Path, accelerator, aae, data: datasets.Dataset, curve: list[dict]) -> None:
    """Weights (loadable with weights_only=True), hold-out latents and the training curve."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(_unwrapped_state(accelerator, aae), directory / "model.pt")
    encoder = accelerator.unwrap_model(aae.encoder)
    z = training.encode(encoder, torch.from_numpy(data.test_x), accelerator.device)
    np.savez_compressed(directory / "latents.npz", z=z.astype(np.float32), y=data.test_y,
                        split=np.array("test"))
    import pandas as pd

    pd.DataFrame(curve).to_csv(directory / "curve.csv", index=False)
