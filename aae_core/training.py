"""Training of the unsupervised AAE: the paper's two phases per minibatch (Section 2).

1. Reconstruction: encoder and decoder minimise the reconstruction error.
2. Regularization: the discriminator learns to tell prior samples from codes, then the
   encoder (the "generator") learns to fool it.

Everything runs through an `accelerate.Accelerator` (device, precision). Random streams are
explicit `torch.Generator`s so that a seed fixes the data order and the prior draws exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DivergedError(RuntimeError):
    """A loss became NaN or infinite: the run is over and is recorded as `diverged`."""


@dataclass(frozen=True)
class SGD:
    """SGD with momentum, the optimizer of the paper's appendix (as third-party readings give it)."""

    lr: float
    momentum: float


@dataclass(frozen=True)
class StepSchedule:
    """Multiply every learning rate by factors[i] from epoch epochs[i] on (epochs are 0-based counts
    of completed epochs, so (50,) means: epochs 0-49 at the base rate, 50 onwards reduced)."""

    epochs: tuple[int, ...] = ()
    factors: tuple[float, ...] = ()

    def factor(self, epoch: int) -> float:
        f = 1.0
        for start, factor in zip(self.epochs, self.factors, strict=True):
            if epoch >= start:
                f = factor
        return f


@dataclass(frozen=True)
class RandomStreams:
    """Seeds of the independent random streams of one run, all derived from the trial seed."""

    init: int
    data: int
    prior: int
    evaluation: int

    @staticmethod
    def from_seed(seed: int) -> RandomStreams:
        children = np.random.SeedSequence(seed).spawn(4)
        init, data, prior, evaluation = (int(c.generate_state(1)[0]) for c in children)
        return RandomStreams(init=init, data=data, prior=prior, evaluation=evaluation)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, reduction: str) -> torch.Tensor:
    """Euclidean (squared error) reconstruction cost (Section 2).

    # PAPER-GAP: the paper says "Euclidean" without the reduction. "sum" = squared error summed
    # over pixels, averaged over the batch; "mean" = averaged over pixels too (as most public
    # code does). The two differ by a factor C*H*W in the effective learning rate.
    """
    per_example = (x_hat - x).pow(2).flatten(1).sum(1)  # (B,)
    if reduction == "sum":
        return per_example.mean()
    if reduction == "mean":
        return per_example.mean() / x[0].numel()
    raise ValueError(f"unknown reconstruction reduction {reduction!r}; valid: mean, sum")


@dataclass
class Optimizers:
    """One optimizer per phase: reconstruction (encoder + decoder), discriminator, generator (encoder)."""

    reconstruction: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    generator: torch.optim.Optimizer

    def all(self) -> list[torch.optim.Optimizer]:
        return [self.reconstruction, self.discriminator, self.generator]


def make_optimizers(encoder: nn.Module, decoder: nn.Module, discriminator: nn.Module,
                    recon: SGD, adversarial: SGD) -> Optimizers:
    return Optimizers(
        reconstruction=torch.optim.SGD([*encoder.parameters(), *decoder.parameters()],
                                       lr=recon.lr, momentum=recon.momentum),
        discriminator=torch.optim.SGD(discriminator.parameters(), lr=adversarial.lr,
                                      momentum=adversarial.momentum),
        generator=torch.optim.SGD(encoder.parameters(), lr=adversarial.lr,
                                  momentum=adversarial.momentum),
    )


def set_learning_rates(opts: Optimizers, recon: SGD, adversarial: SGD, factor: float) -> None:
    for group in opts.reconstruction.param_groups:
        group["lr"] = recon.lr * factor
    for opt in (opts.discriminator, opts.generator):
        for group in opt.param_groups:
            group["lr"] = adversarial.lr * factor


def reconstruction_phase(accelerator, encoder, decoder, opt, x, reduction: str) -> torch.Tensor:
    """Phase 1: update encoder and decoder on the reconstruction error."""
    opt.zero_grad(set_to_none=True)
    with accelerator.autocast():
        loss = reconstruction_loss(decoder(encoder(x)).float(), x, reduction)
    accelerator.backward(loss)
    opt.step()
    return loss.detach()


def regularization_phase(accelerator, encoder, discriminator, prior, opts: Optimizers, x,
                         prior_generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase 2: a discriminator step (prior samples are "real", codes are "fake"), then a
    generator step that updates the encoder to make its codes look like prior samples."""
    z_real = prior.sample(x.shape[0], prior_generator).to(x.device)  # (B, z_dim)
    with torch.no_grad():
        z_fake = encoder(x)  # detached: this step trains the discriminator only
    opts.discriminator.zero_grad(set_to_none=True)
    with accelerator.autocast():
        logits = discriminator(torch.cat([z_real, z_fake.to(z_real.dtype)]))  # (2B,)
        targets = torch.cat([torch.ones(x.shape[0]), torch.zeros(x.shape[0])]).to(logits.device)
        loss_d = F.binary_cross_entropy_with_logits(logits.float(), targets)
    accelerator.backward(loss_d)
    opts.discriminator.step()

    opts.generator.zero_grad(set_to_none=True)
    with accelerator.autocast():
        logits = discriminator(encoder(x))
        loss_g = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits.float()))
    accelerator.backward(loss_g)
    opts.generator.step()
    return loss_d.detach(), loss_g.detach()


def train_epoch(accelerator, model, prior, opts: Optimizers, train_x: torch.Tensor, *,
                batch_size: int, reduction: str, data_generator: torch.Generator,
                prior_generator: torch.Generator, epoch: int) -> dict[str, float]:
    """One pass over `train_x` in a seeded random order; returns the mean loss of each phase.

    Raises DivergedError as soon as a loss is not finite, naming the epoch and phase.
    """
    n = train_x.shape[0]
    order = torch.randperm(n, generator=data_generator)
    sums = torch.zeros(3, dtype=torch.float64)
    steps = 0
    for start in range(0, n, batch_size):
        x = train_x[order[start:start + batch_size]].to(accelerator.device)
        recon = reconstruction_phase(accelerator, model.encoder, model.decoder,
                                     opts.reconstruction, x, reduction)
        loss_d, loss_g = regularization_phase(accelerator, model.encoder, model.discriminator,
                                              prior, opts, x, prior_generator)
        losses = torch.stack([recon, loss_d, loss_g]).double().cpu()
        if not torch.isfinite(losses).all():
            phase = ["reconstruction", "discriminator", "generator"][
                int((~torch.isfinite(losses)).nonzero()[0])]
            raise DivergedError(f"non-finite {phase} loss at epoch {epoch}, step {steps}")
        sums += losses
        steps += 1
    mean = (sums / max(steps, 1)).tolist()
    return {"loss_reconstruction": mean[0], "loss_discriminator": mean[1], "loss_generator": mean[2]}


@torch.no_grad()
def generate(decoder, prior, n: int, prior_generator: torch.Generator, device,
             batch_size: int = 1000) -> np.ndarray:
    """Decode n prior draws: the model's samples, as the Parzen estimate of Table 1 uses them."""
    out = []
    for start in range(0, n, batch_size):
        z = prior.sample(min(batch_size, n - start), prior_generator).to(device)
        out.append(decoder(z).float().flatten(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def encode(encoder, x: torch.Tensor, device, batch_size: int = 1000) -> np.ndarray:
    """Codes of `x` (hold-out latents, for figures and two-sample checks)."""
    return np.concatenate([encoder(x[i:i + batch_size].to(device)).float().cpu().numpy()
                           for i in range(0, x.shape[0], batch_size)])


def is_finite(value: float) -> bool:
    return math.isfinite(value)
