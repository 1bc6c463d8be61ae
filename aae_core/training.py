"""Training: the paper's phases per minibatch, for every variant (Sections 2-7).

1. Reconstruction: encoder and decoder minimise the reconstruction error.
2. Regularization: each discriminator learns to tell prior samples from codes, then the
   encoder (the "generator") learns to fool it.
3. Semi-supervised classification (Section 5 only): cross-entropy of q(y|x) on a labelled
   minibatch.

Everything runs through an `accelerate.Accelerator` (device, precision). Random streams are
explicit `torch.Generator`s so that a seed fixes the data order, prior draws and noise exactly.

Seeds. A model holds S >= 1 seeds (see `aae_core.model`); S = 1 is the plain run. Each seed has
its own generators, so it sees its own data order, prior draws and noise, exactly those it sees
alone. Every loss is computed per seed, shape (S,), and the seeds' losses are summed for one
backward pass: the seeds share no weights, so each gets exactly its own gradient. SGD's
momentum is elementwise, so each seed's optimizer state is its own slice of the state, and all
seeds of one config share the learning-rate schedule (a function of the epoch alone). A seed
whose loss stops being finite is masked out from that step on: its loss leaves the sum and its
gradients are zeroed, while the other seeds go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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
    """What one epoch iterates over, for S seeds. `x` (N, ...) is shared; `y` (S, N) holds the
    labels each seed's model may see (-1 = unlabelled; None when the variant sees none);
    `labelled_index` (S, L) picks each seed's labelled examples (its own class-balanced subset)
    and `labelled_y` (S, L) their labels, for the classification phase."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    labelled_index: torch.Tensor | None = None
    labelled_y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("y", "labelled_index", "labelled_y"):
            value = getattr(self, name)
            if value is not None and value.dim() != 2:
                raise ValueError(f"TrainingData.{name} must be (seeds, n); got shape {tuple(value.shape)}")


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, reduction: str) -> torch.Tensor:
    """Euclidean (squared error) reconstruction cost (Section 2).

    # PAPER-GAP: the paper says "Euclidean" without the reduction. "sum" = squared error summed
    # over pixels, averaged over the batch; "mean" = averaged over pixels too (as most public
    # code does). The two differ by a factor C*H*W in the effective learning rate.
    """
    per_example = (x_hat - x).pow(2).flatten(2).sum(-1)  # (S, B)
    if reduction == "sum":
        return per_example.mean(-1)  # (S,)
    if reduction == "mean":
        return per_example.mean(-1) / x_hat[0, 0].numel()  # x_hat always has the seed dimension
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


def _update(ctx: StepContext, opt, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One optimizer step on the sum of the live seeds' losses; returns the losses (S,).

    A seed whose loss is not finite (on any rank) is marked dead in `ctx.alive` before the
    backward pass: its loss leaves the sum and its gradients are zeroed, so that nothing
    non-finite reaches the live seeds or its own optimizer state."""
    accelerator = ctx.accelerator
    opt.zero_grad(set_to_none=True)
    with accelerator.autocast():
        loss = loss_fn().float()  # (S,)
    finite = torch.isfinite(loss)
    if ctx.world > 1:  # every rank must mask the same seeds, or their weights drift apart
        finite = accelerator.reduce(finite.float(), "sum") == ctx.world
    ctx.alive = ctx.alive & finite
    accelerator.backward(torch.where(ctx.alive, loss, torch.zeros_like(loss)).sum())
    # On a GPU the mask is applied always (no host sync stalls the queue); on a CPU only once a
    # seed has died (the check is free there, the masking is not).
    if ctx.seeds > 1 and (loss.device.type != "cpu" or not bool(ctx.alive.all())):
        for group in opt.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    dead = ~ctx.alive.view(-1, *[1] * (param.grad.dim() - 1))
                    param.grad.masked_fill_(dead, 0.0)
    opt.step()
    return loss.detach()


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the batch of each seed: (S, B) -> (S,)."""
    return models.seedwise(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none").mean(-1),
                           logits, targets)


def discriminator_phase(ctx, opt, discriminators, reals, fakes) -> torch.Tensor:
    """Each discriminator learns prior samples ("real", 1) against codes ("fake", 0)."""

    def loss():
        total = 0.0
        for disc, real, fake in zip(discriminators, reals, fakes, strict=True):
            logits = disc(torch.cat([real, fake.to(real.dtype)], 1)).float()  # (S, 2B)
            b = real.shape[1]
            targets = torch.cat([torch.ones(b), torch.zeros(fake.shape[1])]).to(logits.device)
            total = total + bce(logits, targets.expand_as(logits))
        return total

    return _update(ctx, opt, loss)


def generator_phase(ctx, opt, discriminators, fakes_fn) -> torch.Tensor:
    """The encoder learns to make its codes pass as prior samples."""

    def loss():
        total = 0.0
        for disc, fake in zip(discriminators, fakes_fn(), strict=True):
            logits = disc(fake).float()  # (S, B)
            total = total + bce(logits, torch.ones_like(logits))
        return total

    return _update(ctx, opt, loss)


def head_penalty(heads: torch.Tensor, threshold: float) -> torch.Tensor:
    """Section 7: a cost on every pair of cluster heads closer than `threshold`, per seed:
    heads (S, K, n) -> (S,).

    # PAPER-GAP: the exact form is not known to us; a hinge, sum_{i<j} max(0, threshold - d_ij).
    """
    distances = torch.cdist(heads, heads)  # (S, K, K)
    upper = torch.triu(torch.ones(distances.shape[-2:], dtype=torch.bool, device=heads.device), diagonal=1)
    # Two heads that coincide exactly get no push (the cost is symmetric in them, so its
    # gradient vanishes there); the heads start from a continuous random init, where that has
    # probability zero.
    return F.relu(threshold - distances[:, upper]).sum(-1)


@dataclass
class StepContext:
    """What every phase of a step needs; one generator per seed for each stream."""

    accelerator: object
    net: nn.Module
    opts: dict
    priors: dict
    settings: PhaseSettings
    prior_generators: list[torch.Generator]
    noise_generators: list[torch.Generator]
    alive: torch.Tensor | None = None
    """(S,) bool: the seeds still training (the others diverged)."""
    world: int = 1
    diverged: dict[int, str] = field(default_factory=dict)
    """seed index -> why it was masked out (the first non-finite loss)."""

    def __post_init__(self) -> None:
        if len(self.prior_generators) != len(self.noise_generators):
            raise ValueError("one prior and one noise generator per seed")
        if self.alive is None:  # a resumed run's dead seeds stay dead
            self.alive = torch.tensor([k not in self.diverged for k in range(self.seeds)],
                                      device=self.accelerator.device)

    @property
    def seeds(self) -> int:
        return len(self.prior_generators)


def per_seed(draw: Callable[[torch.Generator, int], torch.Tensor], generators: list[torch.Generator],
             device) -> torch.Tensor:
    """Stack one draw per seed, each from that seed's own generator: (S, ...)."""
    return torch.stack([draw(gen, k) for k, gen in enumerate(generators)]).to(device)


def _noisy(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    if not ctx.settings.input_noise_std:
        return x
    noise = per_seed(lambda gen, k: torch.randn(x.shape[1:], generator=gen), ctx.noise_generators, x.device)
    return x + ctx.settings.input_noise_std * noise


def sample_prior(ctx: StepContext, name: str, n: int, device, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n draws of prior `name` for every seed, from each seed's own stream: (S, n, d).
    `labels` (S, n): each seed's labels, for label-conditioned priors."""
    prior = ctx.priors[name]
    if labels is None:
        return per_seed(lambda gen, k: prior.sample(n, gen), ctx.prior_generators, device)
    labels = labels.cpu()
    return per_seed(lambda gen, k: prior.sample(n, gen, labels=labels[k]), ctx.prior_generators, device)


def step_autoencoder_aae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """Unsupervised (Section 2), label-regularized (Section 3) and supervised (Section 4)."""
    net = ctx.net
    recon = _update(ctx, ctx.opts["reconstruction"],
                    lambda: reconstruction_loss(net.reconstruct(x, y).float(), x, ctx.settings.reduction))
    label_regularized = isinstance(net, models.LabelRegularizedAAE)
    real = sample_prior(ctx, "z", x.shape[1], x.device, labels=y if label_regularized else None)
    if label_regularized:  # the discriminator sees (code, one-hot label or "unlabelled")
        tag = models.one_hot_with_unlabelled(y, net.n_classes).to(x.device)  # (S, B, K + 1)
        real = torch.cat([real, tag], -1)
        def fakes():
            return [torch.cat([net.code(x), tag], -1)]
    else:
        def fakes():
            return [net.code(x)]
    with torch.no_grad():
        fixed = fakes()
    loss_d = discriminator_phase(ctx, ctx.opts["discriminator"], [net.discriminator], [real], fixed)
    loss_g = generator_phase(ctx, ctx.opts["generator"], [net.discriminator], fakes)
    return {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}


def step_categorical_aae(ctx: StepContext, x, y, labelled=None) -> dict[str, torch.Tensor]:
    """Semi-supervised (Section 5), clustering (Section 6), dimensionality reduction (Section 7):
    y under a categorical prior and z under a Gaussian, a discriminator for each."""
    net, s = ctx.net, ctx.settings
    x_in = _noisy(ctx, x)

    def recon_loss():
        loss = reconstruction_loss(net.decoder(net.representation(*net.code(x_in))).float(), x, s.reduction)
        if isinstance(net, models.DimReductionAAE) and s.head_penalty:
            loss = loss + s.head_penalty * head_penalty(net.cluster_heads, s.head_threshold)
        return loss

    recon = _update(ctx, ctx.opts["reconstruction"], recon_loss)
    discriminators = [net.discriminator_y, net.discriminator_z]
    b = x.shape[1]
    reals = [sample_prior(ctx, "y", b, x.device), sample_prior(ctx, "z", b, x.device)]
    with torch.no_grad():
        fixed = list(net.code(x_in))
    loss_d = discriminator_phase(ctx, ctx.opts["discriminator"], discriminators, reals, fixed)
    loss_g = generator_phase(ctx, ctx.opts["generator"], discriminators, lambda: list(net.code(x_in)))
    losses = {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}
    if labelled is not None:
        x_l, y_l = labelled  # (S, B, ...), (S, B)
        x_l_in = _noisy(ctx, x_l)

        def classification_loss():
            logits = net.split(x_l_in)[0].float()  # (S, B, K)
            per_example = F.cross_entropy(logits.flatten(0, 1), y_l.flatten(), reduction="none")
            return per_example.view(y_l.shape).mean(-1)  # (S,)

        losses["classification"] = _update(ctx, ctx.opts["classification"], classification_loss)
    return losses


def step_vae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """The VAE baseline: reconstruction + KL(q(z|x) || p(z)), one optimizer.

    KL is exact for the Gaussian prior and a one-sample Monte Carlo estimate for the others.
    """
    net, prior = ctx.net, ctx.priors["z"]

    def loss():
        mean, logvar = net.posterior(x)  # (S, B, z_dim) each
        eps = per_seed(lambda gen, k: torch.randn(mean.shape[1:], generator=gen), ctx.prior_generators,
                       mean.device)
        z = mean + models.seedwise(lambda lv: (0.5 * lv).exp(), logvar) * eps
        recon = reconstruction_loss(net.decoder(z).float(), x, ctx.settings.reduction)
        kl = models.seedwise(lambda m, lv, zz: kl_divergence(m, lv, zz, prior), mean.float(), logvar.float(),
                             z.float())  # (S, B)
        return recon + kl.mean(-1)

    return {"reconstruction": _update(ctx, ctx.opts["reconstruction"], loss)}


def kl_divergence(mean, logvar, z, prior) -> torch.Tensor:
    """Per-example KL(q(z|x) || p(z)) for a diagonal Gaussian q: (..., z_dim) -> (...)."""
    if hasattr(prior, "std") and not hasattr(prior, "components"):  # Gaussian N(0, s^2 I)
        var_p = prior.std ** 2
        return 0.5 * (logvar.exp() / var_p + mean.pow(2) / var_p - 1 - logvar + math.log(var_p)).sum(-1)
    log_q = (-0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)
    return log_q - prior.log_prob(z.flatten(0, -2)).view(z.shape[:-1])


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
                data_generators: list[torch.Generator], epoch: int, shard: Shard = Shard(),
                labelled_generators: list[torch.Generator] | None = None) -> list[dict[str, float]]:
    """One pass over `data.x` for every seed, each in its own seeded random order; returns the
    mean loss of each phase, one dict per seed (NaN for a seed masked out this epoch or before).

    Data parallel (`shard.world` > 1): this rank trains on its stride of every minibatch (see
    `Shard`), draws labelled minibatches from `labelled_generators` (its own streams, so the
    data streams, and with them the next epoch's permutations, stay the same on every rank),
    and the losses are averaged over the ranks at every step, so that all ranks see the same
    numbers and mask the same seeds.

    A seed whose loss is not finite is recorded in `ctx.diverged` (epoch, step and phase) and
    masked out; raises DivergedError when no seed is left.
    """
    n = data.x.shape[0]
    seeds = ctx.seeds
    if len(data_generators) != seeds:
        raise ValueError(f"{seeds} seeds need {seeds} data generators; got {len(data_generators)}")
    orders = torch.stack([torch.randperm(n, generator=gen) for gen in data_generators])  # (S, n)
    step = STEPS[variant]
    device = ctx.accelerator.device
    distributed = shard.world > 1
    if distributed and data.labelled_index is not None and labelled_generators is None:
        raise ValueError("data parallel training with labelled minibatches needs labelled_generators")
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(seeds, dtype=torch.float64)
    steps = 0
    for start in range(0, n, batch_size):
        index = orders[:, start:start + batch_size]  # (S, B)
        if distributed:
            if index.shape[1] < shard.world:
                # DEVIATION: a last minibatch smaller than the number of workers is dropped
                # (every rank must take part in every step).
                break
            index = index[:, shard.rank::shard.world]  # (S, batch_size / world)
        x = data.x[index].to(device)  # (S, B, ...)
        y = data.y.gather(1, index).to(device) if data.y is not None else None
        if data.labelled_index is not None:
            size, b = data.labelled_index.shape[1], index.shape[1]
            pick = per_seed(lambda gen, k, size=size, b=b: torch.randint(0, size, (b,), generator=gen),
                            labelled_generators or data_generators, "cpu")  # (S, B)
            labelled = (data.x[data.labelled_index.gather(1, pick)].to(device),
                        data.labelled_y.gather(1, pick).to(device))
            losses = step(ctx, x, y, labelled)
        else:
            losses = step(ctx, x, y)
        names = list(losses)
        stacked = torch.stack([losses[k].float() for k in names])  # (phases, S)
        if distributed:
            stacked = ctx.accelerator.reduce(stacked, "mean")
        stacked = stacked.double().cpu()
        alive = ctx.alive.cpu()  # the one host sync of a step
        for k in range(seeds):
            if not alive[k] and k not in ctx.diverged:
                bad = next((nm for nm, v in zip(names, stacked[:, k], strict=True)
                            if not math.isfinite(v)), names[0])
                ctx.diverged[k] = f"non-finite {bad} loss at epoch {epoch}, step {steps}"
        for name, values in zip(names, stacked, strict=True):
            sums[name] = sums.get(name, torch.zeros(seeds, dtype=torch.float64)) + torch.where(alive, values, 0.0)
        counts += alive.double()
        steps += 1
        if len(ctx.diverged) == seeds:
            raise DivergedError(ctx.diverged[0] if seeds == 1 else
                                "every seed diverged: " + "; ".join(f"seed index {k}: {why}"
                                                                    for k, why in sorted(ctx.diverged.items())))
    return [{f"loss_{name}": (float(total[k] / counts[k]) if k not in ctx.diverged and counts[k] else math.nan)
             for name, total in sums.items()} for k in range(seeds)]


# -- using a trained model --------------------------------------------------------------


@torch.no_grad()
def generate(decoder, prior, n: int, prior_generators: list[torch.Generator], device,
             batch_size: int = 1000) -> np.ndarray:
    """Decode n prior draws per seed, each seed from its own stream: the model's samples, as
    the Parzen estimate of Table 1 uses them. Returns (S, n, C*H*W)."""
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = per_seed(lambda gen, k, b=b: prior.sample(b, gen), prior_generators, device)  # (S, b, d)
        out.append(decoder(z).float().flatten(2).cpu().numpy())
    if not out:
        return np.zeros((len(prior_generators), 0, 0), dtype=np.float32)
    return np.concatenate(out, 1)


@torch.no_grad()
def apply(fn, x: torch.Tensor, device, batch_size: int = 1000):
    """fn over x (N, ...) in batches shared by every seed; the (S, b, ...) results concatenated
    along the examples as numpy arrays (S, N, ...) (a tuple for tuple outputs)."""
    parts = [fn(x[i:i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[k].float().cpu().numpy() for p in parts], 1) for k in range(len(parts[0])))
    return np.concatenate([p.float().cpu().numpy() for p in parts], 1)
