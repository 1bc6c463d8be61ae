"""Training: the paper's phases per minibatch, for every variant (Sections 2-7).

1. Reconstruction: encoder and decoder minimise the reconstruction error.
2. Regularization: each discriminator learns to tell prior samples from codes, then the
   encoder (the "generator") learns to fool it.
3. Semi-supervised classification (Section 5 only): cross-entropy of q(y|x) on a labelled
   minibatch.

Everything runs through an `accelerate.Accelerator` (device, precision). Random streams are
explicit `torch.Generator`s so that a seed fixes the data order, prior draws and noise exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aae_core import model as models


class DivergedError(RuntimeError):
    """A loss became NaN or infinite: the run is over and is recorded as `diverged`."""


@dataclass(frozen=True)
class SGD:
    """SGD with momentum, the optimizer of the paper's appendix (as third-party readings give it)."""

    lr: float
    momentum: float


@dataclass(frozen=True)
class StepSchedule:
    """Multiply every learning rate by factors[i] from epoch epochs[i] on (0-based counts of
    completed epochs: (50,) means epochs 0-49 at the base rate, 50 onwards reduced)."""

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

    def for_rank(self, rank: int) -> RandomStreams:
        """The streams of data-parallel rank `rank`: weight init and data order are shared by
        every rank (same weights, same epoch permutation, sharded); prior draws and noise are
        the rank's own. Rank 0 keeps the trial's streams, so its draws match a 1-worker run."""
        if rank == 0:
            return self
        prior, evaluation = (int(np.random.SeedSequence([s, rank]).generate_state(1)[0])
                             for s in (self.prior, self.evaluation))
        return RandomStreams(init=self.init, data=self.data, prior=prior, evaluation=evaluation)

    def labelled(self, rank: int) -> int:
        """Data parallel only: the seed of rank `rank`'s labelled-minibatch draws (with one
        worker they come from the data stream, as they always have)."""
        return int(np.random.SeedSequence([self.data, rank, 1]).generate_state(1)[0])


@dataclass(frozen=True)
class Shard:
    """Which part of every minibatch this process trains on. Data parallel: the epoch's seeded
    permutation is the same on every rank; each global minibatch (batch_size examples, the
    paper's 100) is split over the ranks by stride, so the ranks' shards of a step together are
    exactly the minibatch a single worker would see and the averaged gradient is the same."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in 0..{self.world - 1}; got {self.rank}")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class PhaseSettings:
    """How the phases run; each is a config field of the trial."""

    reduction: str = "sum"
    input_noise_std: float = 0.0
    """Section 5: Gaussian noise on the encoder's input (semi-supervised: 0.3)."""
    head_threshold: float = 0.0
    """Section 7: pairs of cluster heads closer than this are pushed apart."""
    head_penalty: float = 0.0
    """Section 7: weight of that push in the reconstruction phase."""


@dataclass
class TrainingData:
    """What one epoch iterates over. `y` holds the labels the model may see (-1 = unlabelled;
    None when the variant sees none); `labelled_x/y` feed the classification phase."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    labelled_x: torch.Tensor | None = None
    labelled_y: torch.Tensor | None = None


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


# -- optimizers -------------------------------------------------------------------------


def make_optimizers(variant: str, net: nn.Module, recon: SGD, adversarial: SGD,
                    classification: SGD | None = None) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per phase. Reconstruction: encoder + decoder (+ cluster heads);
    discriminator: every discriminator; generator and classification: the encoder."""

    def sgd(params, settings: SGD):
        return torch.optim.SGD(list(params), lr=settings.lr, momentum=settings.momentum)

    own = [p for name, p in net.named_parameters(recurse=False)]  # cluster heads
    opts = {"reconstruction": sgd([*net.encoder.parameters(), *net.decoder.parameters(), *own], recon)}
    if variant == "vae":
        return opts
    discriminators = [m for name, m in net.named_children() if name.startswith("discriminator")]
    opts["discriminator"] = sgd([p for d in discriminators for p in d.parameters()], adversarial)
    opts["generator"] = sgd(net.encoder.parameters(), adversarial)
    if classification is not None:
        opts["classification"] = sgd(net.encoder.parameters(), classification)
    return opts


def base_rates(opts: dict, recon: SGD, adversarial: SGD, classification: SGD | None) -> dict[str, float]:
    rates = {"reconstruction": recon.lr, "discriminator": adversarial.lr, "generator": adversarial.lr,
             "classification": classification.lr if classification else 0.0}
    return {name: rates[name] for name in opts}


def set_learning_rates(opts: dict, rates: dict[str, float], factor: float) -> None:
    for name, opt in opts.items():
        for group in opt.param_groups:
            group["lr"] = rates[name] * factor


def prepare(accelerator, net: nn.Module, opts: dict) -> None:
    """Prepare each sub-network and optimizer on its own (a prepared parent would bypass DDP)."""
    for name, child in list(net.named_children()):
        setattr(net, name, accelerator.prepare(child))
    for name in list(opts):
        opts[name] = accelerator.prepare(opts[name])
    if accelerator.num_processes > 1:
        # Parameters of the parent itself (Section 7's cluster heads) belong to no DDP wrapper:
        # average their gradients over the ranks by hand, or the ranks would drift apart.
        for param in net.parameters(recurse=False):
            param.register_hook(lambda grad: accelerator.reduce(grad.contiguous(), "mean"))


# -- the phases -------------------------------------------------------------------------


def _update(accelerator, opt, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    with accelerator.autocast():
        loss = loss_fn().float()
    accelerator.backward(loss)
    opt.step()
    return loss.detach()


def discriminator_phase(accelerator, opt, discriminators, reals, fakes) -> torch.Tensor:
    """Each discriminator learns prior samples ("real", 1) against codes ("fake", 0)."""

    def loss():
        total = 0.0
        for disc, real, fake in zip(discriminators, reals, fakes, strict=True):
            logits = disc(torch.cat([real, fake.to(real.dtype)])).float()  # (2B,)
            targets = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(logits.device)
            total = total + F.binary_cross_entropy_with_logits(logits, targets)
        return total

    return _update(accelerator, opt, loss)


def generator_phase(accelerator, opt, discriminators, fakes_fn) -> torch.Tensor:
    """The encoder learns to make its codes pass as prior samples."""

    def loss():
        total = 0.0
        for disc, fake in zip(discriminators, fakes_fn(), strict=True):
            logits = disc(fake).float()
            total = total + F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return total

    return _update(accelerator, opt, loss)


def head_penalty(heads: torch.Tensor, threshold: float) -> torch.Tensor:
    """Section 7: a cost on every pair of cluster heads closer than `threshold`.

    # PAPER-GAP: the exact form is not known to us; a hinge, sum_{i<j} max(0, threshold - d_ij).
    """
    distances = torch.cdist(heads, heads)  # (K, K)
    upper = torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)
    # Two heads that coincide exactly get no push (the cost is symmetric in them, so its
    # gradient vanishes there); the heads start from a continuous random init, where that has
    # probability zero.
    return F.relu(threshold - distances[upper]).sum()


@dataclass
class StepContext:
    accelerator: object
    net: nn.Module
    opts: dict
    priors: dict
    settings: PhaseSettings
    prior_generator: torch.Generator
    noise_generator: torch.Generator


def _noisy(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    if not ctx.settings.input_noise_std:
        return x
    noise = torch.randn(x.shape, generator=ctx.noise_generator).to(x.device)
    return x + ctx.settings.input_noise_std * noise


def step_autoencoder_aae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """Unsupervised (Section 2), label-regularized (Section 3) and supervised (Section 4)."""
    net, acc = ctx.net, ctx.accelerator
    recon = _update(acc, ctx.opts["reconstruction"],
                    lambda: reconstruction_loss(net.reconstruct(x, y).float(), x, ctx.settings.reduction))
    label_regularized = isinstance(net, models.LabelRegularizedAAE)
    real = ctx.priors["z"].sample(len(x), ctx.prior_generator,
                                  labels=y if label_regularized else None).to(x.device)
    if label_regularized:  # the discriminator sees (code, one-hot label or "unlabelled")
        tag = models.one_hot_with_unlabelled(y, net.n_classes).to(x.device)  # (B, K + 1)
        real = torch.cat([real, tag], 1)
        def fakes():
            return [torch.cat([net.code(x), tag], 1)]
    else:
        def fakes():
            return [net.code(x)]
    with torch.no_grad():
        fixed = fakes()
    loss_d = discriminator_phase(acc, ctx.opts["discriminator"], [net.discriminator], [real], fixed)
    loss_g = generator_phase(acc, ctx.opts["generator"], [net.discriminator], fakes)
    return {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}


def step_categorical_aae(ctx: StepContext, x, y, labelled=None) -> dict[str, torch.Tensor]:
    """Semi-supervised (Section 5), clustering (Section 6), dimensionality reduction (Section 7):
    y under a categorical prior and z under a Gaussian, a discriminator for each."""
    net, acc, s = ctx.net, ctx.accelerator, ctx.settings
    x_in = _noisy(ctx, x)

    def recon_loss():
        loss = reconstruction_loss(net.decoder(net.representation(*net.code(x_in))).float(), x, s.reduction)
        if isinstance(net, models.DimReductionAAE) and s.head_penalty:
            loss = loss + s.head_penalty * head_penalty(net.cluster_heads, s.head_threshold)
        return loss

    recon = _update(acc, ctx.opts["reconstruction"], recon_loss)
    discriminators = [net.discriminator_y, net.discriminator_z]
    reals = [ctx.priors["y"].sample(len(x), ctx.prior_generator).to(x.device),
             ctx.priors["z"].sample(len(x), ctx.prior_generator).to(x.device)]
    with torch.no_grad():
        fixed = list(net.code(x_in))
    loss_d = discriminator_phase(acc, ctx.opts["discriminator"], discriminators, reals, fixed)
    loss_g = generator_phase(acc, ctx.opts["generator"], discriminators, lambda: list(net.code(x_in)))
    losses = {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}
    if labelled is not None:
        x_l, y_l = labelled
        x_l_in = _noisy(ctx, x_l)
        losses["classification"] = _update(
            acc, ctx.opts["classification"], lambda: F.cross_entropy(net.split(x_l_in)[0].float(), y_l))
    return losses


def step_vae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """The VAE baseline: reconstruction + KL(q(z|x) || p(z)), one optimizer.

    KL is exact for the Gaussian prior and a one-sample Monte Carlo estimate for the others.
    """
    net, prior = ctx.net, ctx.priors["z"]

    def loss():
        mean, logvar = net.posterior(x)
        eps = torch.randn(mean.shape, generator=ctx.prior_generator).to(mean.device)
        z = mean + (0.5 * logvar).exp() * eps
        recon = reconstruction_loss(net.decoder(z).float(), x, ctx.settings.reduction)
        return recon + kl_divergence(mean.float(), logvar.float(), z.float(), prior).mean()

    return {"reconstruction": _update(ctx.accelerator, ctx.opts["reconstruction"], loss)}


def kl_divergence(mean, logvar, z, prior) -> torch.Tensor:
    """Per-example KL(q(z|x) || p(z)) for a diagonal Gaussian q."""
    if hasattr(prior, "std") and not hasattr(prior, "components"):  # Gaussian N(0, s^2 I)
        var_p = prior.std ** 2
        return 0.5 * (logvar.exp() / var_p + mean.pow(2) / var_p - 1 - logvar + math.log(var_p)).sum(1)
    log_q = (-0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
    return log_q - prior.log_prob(z)


STEPS = {
    "unsupervised": step_autoencoder_aae,
    "label-regularized": step_autoencoder_aae,
    "supervised": step_autoencoder_aae,
    "semi-supervised": step_categorical_aae,
    "clustering": step_categorical_aae,
    "dim-reduction": step_categorical_aae,
    "vae": step_vae,
}


def train_epoch(ctx: StepContext, variant: str, data: TrainingData, *, batch_size: int,
                data_generator: torch.Generator, epoch: int, shard: Shard = Shard(),
                labelled_generator: torch.Generator | None = None) -> dict[str, float]:
    """One pass over `data.x` in a seeded random order; returns the mean loss of each phase.

    Data parallel (`shard.world` > 1): this rank trains on its stride of every minibatch (see
    `Shard`), draws labelled minibatches from `labelled_generator` (its own stream, so the data
    stream, and with it the next epoch's permutation, stays the same on every rank), and the
    losses are averaged over the ranks at every step, so that all ranks see the same numbers
    and stop together when one is not finite.

    Raises DivergedError as soon as a loss is not finite, naming the epoch and phase.
    """
    n = data.x.shape[0]
    order = torch.randperm(n, generator=data_generator)
    step = STEPS[variant]
    device = ctx.accelerator.device
    distributed = shard.world > 1
    if distributed and data.labelled_x is not None and labelled_generator is None:
        raise ValueError("data parallel training with labelled minibatches needs a labelled_generator")
    sums: dict[str, float] = {}
    steps = 0
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if distributed:
            if len(index) < shard.world:
                # DEVIATION: a last minibatch smaller than the number of workers is dropped
                # (every rank must take part in every step).
                break
            index = index[shard.rank::shard.world]  # (batch_size / world,)
        x = data.x[index].to(device)
        y = data.y[index].to(device) if data.y is not None else None
        if data.labelled_x is not None:
            pick = torch.randint(0, len(data.labelled_x), (len(index),),
                                 generator=labelled_generator or data_generator)
            losses = step(ctx, x, y, (data.labelled_x[pick].to(device), data.labelled_y[pick].to(device)))
        else:
            losses = step(ctx, x, y)
        if distributed:
            names = list(losses)
            mean = ctx.accelerator.reduce(torch.stack([losses[k].float() for k in names]), "mean")
            losses = dict(zip(names, mean, strict=True))
        values = {name: float(v) for name, v in losses.items()}
        for name, value in values.items():
            if not math.isfinite(value):
                raise DivergedError(f"non-finite {name} loss at epoch {epoch}, step {steps}")
            sums[name] = sums.get(name, 0.0) + value
        steps += 1
    return {f"loss_{name}": total / max(steps, 1) for name, total in sums.items()}


# -- using a trained model --------------------------------------------------------------


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
def apply(fn, x: torch.Tensor, device, batch_size: int = 1000):
    """fn over x in batches, results concatenated as numpy arrays (a tuple for tuple outputs)."""
    parts = [fn(x[i:i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[k].float().cpu().numpy() for p in parts]) for k in range(len(parts[0])))
    return np.concatenate([p.float().cpu().numpy() for p in parts])
