"""Training: the paper's phases per minibatch, for every variant (Sections 2-7).

1. Reconstruction: encoder and decoder minimise the reconstruction error.
2. Regularization: each discriminator learns to tell prior samples from codes, then the
   encoder (the "generator") learns to fool it.
3. Semi-supervised classification (Section 5 only): cross-entropy of q(y|x) on a labelled
   minibatch.

Each step function below runs them as plain statements in that order: a forward pass under the
accelerator's autocast giving one loss per seed, then `masked_step` (one optimizer update).
Everything runs through an `accelerate.Accelerator` (device, precision). Random streams are
explicit `torch.Generator`s so that a seed fixes the data order, prior draws and noise exactly.

Seeds. A model holds S >= 1 seeds (see `aae_core.seeds`); S = 1 is the plain run. Each seed has
its own generators, so it sees its own data order, prior draws and noise, exactly those it sees
alone; every loss has shape (S,). All seeds of one config share the learning-rate schedule (a
function of the epoch alone). Data parallel training: see `aae_core.parallel`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aae_core import parallel
from aae_core.model import one_hot_with_unlabelled
from aae_core.parallel import Shard, prepare  # noqa: F401  (prepare: bench/trial.py reads it from here)
from aae_core.seeds import masked_step, per_seed, seedwise


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

    @property
    def noise(self) -> int:
        """Section 5's input noise (`StepContext.noise_generators`). Equal to the
        `evaluation + 1` that bench/trial.py derived before it had a name, so rows stay
        bit-identical."""
        return self.evaluation + 1

    @property
    def parzen_large(self) -> int:
        """The generated samples of Table 1's 10M column. Equal to the earlier `evaluation + 2`,
        so rows stay bit-identical."""
        return self.evaluation + 2

    @property
    def curve(self) -> int:
        """The generated samples of the validation curves (bench.validation): a stream of its
        own, so recording a curve draws nothing from a training or evaluation stream."""
        return self.evaluation + 3

    def for_rank(self, rank: int) -> RandomStreams:
        """The streams of data-parallel rank `rank` (see `aae_core.parallel`): init and data
        are shared by every rank, prior and evaluation (and with it noise) are the rank's own;
        rank 0 keeps the trial's streams."""
        if rank == 0:
            return self
        prior, evaluation = (parallel.rank_seed(s, rank) for s in (self.prior, self.evaluation))
        return RandomStreams(init=self.init, data=self.data, prior=prior, evaluation=evaluation)

    def labelled(self, rank: int) -> int:
        """Data parallel only: the seed of rank `rank`'s labelled-minibatch draws (with one
        worker they come from the data stream, as they always have)."""
        return parallel.rank_seed(self.data, rank, 1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def device_generators(streams: list[torch.Generator], device) -> list[torch.Generator]:
    """One generator on `device` per seed, seeded by one draw from that seed's CPU stream.

    # DEVIATION: runs on an accelerator draw their prior samples, noise and labelled picks
    # from these (reseeded from the CPU streams every epoch, so a checkpoint's CPU states
    # still resume them exactly, and each seed keeps its own stream: a pack equals its seeds
    # alone on that device). GPU and CPU runs of one seed therefore differ in their draws, as
    # they differ in their kernels anyway; CPU runs draw exactly as before."""
    return [torch.Generator(device=device).manual_seed(int(torch.randint(0, 2 ** 62, (), generator=g)))
            for g in streams]


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
    disc_loss: str = "joined-mean"
    """The discriminator's loss (`discriminator_loss`)."""
    denoise_target: str = "clean"
    """What a noisy input's reconstruction is compared with: "clean" (the image) or "noisy"."""


UINT8_ABOVE_BYTES = 1 << 30
"""Training pixels whose float32 copy is larger than this are kept on the device as uint8."""


def as_uint8_pixels(x: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """float32 pixels (each exactly k / 255) as uint8 k; raises ValueError where one is not.
    Checked chunk by chunk on the CPU (float32 division is correctly rounded on every device)."""
    out = torch.empty(x.shape, dtype=torch.uint8)
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk].cpu()
        k = torch.round(part * 255).clamp_(0, 255).to(torch.uint8)
        if not torch.equal(pixels(k), part):
            raise ValueError("pixels are not all k / 255: cannot keep them as uint8 exactly")
        out[start:start + chunk] = k
    return out


def pixels(x: torch.Tensor) -> torch.Tensor:
    """float32 pixels of a minibatch: uint8 k -> k / 255, the way `aae_core.datasets` divides
    (a true division by a tensor: CUDA turns a division by a Python scalar into a multiplication
    by its reciprocal, which rounds differently); float32 as it is."""
    if x.dtype != torch.uint8:
        return x
    return x.float() / _255(x.device)


@functools.lru_cache(maxsize=8)
def _255(device: torch.device) -> torch.Tensor:
    return torch.full((1,), 255.0, device=device)


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

    _resident: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("y", "labelled_index", "labelled_y"):
            value = getattr(self, name)
            if value is not None and value.dim() != 2:
                raise ValueError(f"TrainingData.{name} must be (seeds, n); got shape {tuple(value.shape)}")

    def on(self, device, uint8_above_bytes: int = UINT8_ABOVE_BYTES) -> TrainingData:
        """This data on `device`, moved there once and kept (the device loop gathers its
        minibatches there). Pixels whose float32 copy exceeds `uint8_above_bytes` are kept as
        uint8 (SVHN with its extra set: 7.4 GB as float32, 1.9 GB as uint8) and turned back
        into float32 per minibatch (`pixels`), bit for bit: only where every pixel is exactly
        some k / 255 (checked here), as `aae_core.datasets` makes them. Smaller sets (MNIST)
        stay float32."""
        key = (torch.device(device), uint8_above_bytes)
        if key not in self._resident:
            x = self.x
            if x.dtype == torch.float32 and x.numel() * 4 > uint8_above_bytes:
                x = as_uint8_pixels(x)
            moved = [None if t is None else t.to(device) for t in (self.y, self.labelled_index, self.labelled_y)]
            self._resident[key] = TrainingData(x.to(device), *moved)
        return self._resident[key]


# -- the losses (one per seed, shape (S,)) ---------------------------------------------------


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


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the batch of each seed: (S, B) -> (S,)."""
    return seedwise(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none").mean(-1),
                    logits, targets)


DISC_LOSSES = ("joined-mean", "sum-of-means")


def discriminator_loss(discriminators, reals, fakes, form: str = "joined-mean") -> torch.Tensor:
    """Each discriminator on prior samples ("real", 1) against codes ("fake", 0), summed over
    the discriminators.

    # PAPER-GAP: the paper does not give the form. "joined-mean" (ours): one cross-entropy mean
    # over the joined batch of draws and codes; "sum-of-means": the mean over the draws plus the
    # mean over the codes (twice ours for equal halves: a doubled discriminator step).
    """
    if form not in DISC_LOSSES:
        raise ValueError(f"unknown discriminator loss {form!r}; valid: {', '.join(DISC_LOSSES)}")
    total = 0.0
    for disc, real, fake in zip(discriminators, reals, fakes, strict=True):
        logits = disc(torch.cat([real, fake.to(real.dtype)], 1)).float()  # (S, 2B)
        if form == "sum-of-means":
            b = real.shape[1]
            total = total + bce(logits[:, :b], torch.ones_like(logits[:, :b])) \
                + bce(logits[:, b:], torch.zeros_like(logits[:, b:]))
            continue
        targets = real_fake_targets(real.shape[1], fake.shape[1], logits.device)
        total = total + bce(logits, targets.expand_as(logits))
    return total


@functools.lru_cache(maxsize=32)
def real_fake_targets(n_real: int, n_fake: int, device: torch.device) -> torch.Tensor:
    """[1] * n_real + [0] * n_fake on `device`, built once per size (read only)."""
    return torch.cat([torch.ones(n_real, device=device), torch.zeros(n_fake, device=device)])


def generator_loss(discriminators, fakes) -> torch.Tensor:
    """How well the codes pass as prior samples ("real", 1), summed over the discriminators."""
    total = 0.0
    for disc, fake in zip(discriminators, fakes, strict=True):
        logits = disc(fake).float()  # (S, B)
        total = total + bce(logits, torch.ones_like(logits))
    return total


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of q(y|x), averaged over the batch of each seed: (S, B, K), (S, B) -> (S,)."""
    per_example = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return per_example.view(labels.shape).mean(-1)


def head_penalty(heads: torch.Tensor, threshold: float) -> torch.Tensor:
    """Section 7: a cost on every pair of cluster heads closer than `threshold`, per seed:
    heads (S, K, n) -> (S,).

    # PAPER-GAP: the exact form is not known to us; a hinge, sum_{i<j} max(0, threshold - d_ij).
    """
    distances = torch.cdist(heads, heads)  # (S, K, K)
    rows, cols = upper_pairs(heads.shape[1], heads.device)
    # Two heads that coincide exactly get no push (the cost is symmetric in them, so its
    # gradient vanishes there); the heads start from a continuous random init, where that has
    # probability zero.
    return F.relu(threshold - distances[:, rows, cols]).sum(-1)


@functools.lru_cache(maxsize=32)
def upper_pairs(k: int, device: torch.device) -> torch.Tensor:
    """(2, k(k-1)/2): the pairs i < j in row-major order, the order a boolean upper-triangle
    mask selects them in (so the sum's bits are the mask's), built once on `device`: indexing
    with a mask would wait on the host for its size at every step."""
    return torch.triu_indices(k, k, 1, device=device)


def kl_divergence(mean, logvar, z, prior) -> torch.Tensor:
    """Per-example KL(q(z|x) || p(z)) for a diagonal Gaussian q: (..., z_dim) -> (...). Exact
    where the prior says it has a closed form (N(0, s^2 I)), else a one-sample Monte Carlo
    estimate from its log density."""
    if prior.closed_form_kl:
        var_p = prior.std ** 2
        return 0.5 * (logvar.exp() / var_p + mean.pow(2) / var_p - 1 - logvar + math.log(var_p)).sum(-1)
    log_q = (-0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)
    return log_q - prior.log_prob(z.flatten(0, -2)).view(z.shape[:-1])


# -- optimizers -------------------------------------------------------------------------


def make_optimizers(net: nn.Module, recon: SGD, adversarial: SGD | None,
                    classification: SGD | None = None) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per phase. Reconstruction: encoder + decoder (+ cluster heads);
    discriminator: every discriminator, and generator: the encoder (AAEs only, `adversarial`
    None for the VAE); classification: the encoder."""

    def sgd(params, settings: SGD):
        return torch.optim.SGD(list(params), lr=settings.lr, momentum=settings.momentum)

    own = [p for name, p in net.named_parameters(recurse=False)]  # cluster heads
    opts = {"reconstruction": sgd([*net.encoder.parameters(), *net.decoder.parameters(), *own], recon)}
    if adversarial is None:
        return opts
    discriminators = [m for name, m in net.named_children() if name.startswith("discriminator")]
    opts["discriminator"] = sgd([p for d in discriminators for p in d.parameters()], adversarial)
    opts["generator"] = sgd(net.encoder.parameters(), adversarial)
    if classification is not None:
        opts["classification"] = sgd(net.encoder.parameters(), classification)
    return opts


def base_rates(opts: dict, recon: SGD, adversarial: SGD | None, classification: SGD | None) -> dict[str, float]:
    rates = {"reconstruction": recon.lr}
    if adversarial is not None:
        rates.update(discriminator=adversarial.lr, generator=adversarial.lr)
    if classification is not None:
        rates["classification"] = classification.lr
    return {name: rates[name] for name in opts}


def set_learning_rates(opts: dict, rates: dict[str, float], factor: float) -> None:
    for name, opt in opts.items():
        for group in opt.param_groups:
            group["lr"] = rates[name] * factor


# -- one step per variant ---------------------------------------------------------------


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
    device_loop: bool | None = None
    """Run the hot loop the accelerator's way: the data set, each epoch's order, the draws
    (`device_generators`) and the loss records stay on the device, and the host waits once
    per epoch. None: wherever the device is not the CPU. True on a CPU runs that path's logic
    there (tests); False (the CPU's way) keeps every bit of the runs made before it existed."""
    prior_draws: list[torch.Generator] | None = None
    """The generators the steps draw prior samples from: the CPU streams themselves, or on
    the device loop one device generator per seed, reseeded each epoch (`reseed_draws`)."""
    noise_draws: list[torch.Generator] | None = None
    """Likewise for the input noise."""

    def __post_init__(self) -> None:
        if len(self.prior_generators) != len(self.noise_generators):
            raise ValueError("one prior and one noise generator per seed")
        if self.alive is None:  # a resumed run's dead seeds stay dead
            self.alive = torch.tensor([k not in self.diverged for k in range(self.seeds)],
                                      device=self.accelerator.device)
        if self.device_loop is None:
            self.device_loop = torch.device(self.accelerator.device).type != "cpu"
        if not self.device_loop:
            self.prior_draws, self.noise_draws = self.prior_generators, self.noise_generators

    def reseed_draws(self) -> None:
        """Device loop: fresh device generators from the CPU streams, at the start of an epoch
        (a checkpoint holds the CPU streams' states at an epoch's end, so resuming is exact)."""
        if self.device_loop:
            device = self.accelerator.device
            self.prior_draws = device_generators(self.prior_generators, device)
            self.noise_draws = device_generators(self.noise_generators, device)

    @property
    def seeds(self) -> int:
        return len(self.prior_generators)


def noisy(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    """x plus Section 5's Gaussian input noise, each seed's from its own noise stream."""
    if not ctx.settings.input_noise_std:
        return x
    noise = per_seed(lambda gen, k: torch.randn(x.shape[1:], generator=gen, device=gen.device), ctx.noise_draws,
                     x.device)
    return x + ctx.settings.input_noise_std * noise


def sample_prior(ctx: StepContext, name: str, n: int, device, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n draws of prior `name` for every seed, from each seed's own stream: (S, n, d).
    `labels` (S, n): each seed's labels, for label-conditioned priors."""
    prior = ctx.priors[name]
    if labels is None:
        return per_seed(lambda gen, k: on_generator_device(gen, prior.sample, n, gen), ctx.prior_draws, device)
    # Label-conditioned draws come from the same generators as the others, with the labels
    # where they are (the device loop: its device generators, no host sync); a CPU run draws
    # from its CPU streams with CPU labels, exactly as before.
    return per_seed(lambda gen, k: on_generator_device(gen, prior.sample, n, gen, labels[k]),
                    ctx.prior_draws, device)


def on_generator_device(gen: torch.Generator, fn, *args):
    """fn(*args) with new tensors made on the device of `gen` (the priors draw on the
    default device)."""
    with made_on(gen.device):
        return fn(*args)


def made_on(device) -> contextlib.AbstractContextManager:
    """New tensors are made on `device` inside (nothing changes for the CPU)."""
    device = torch.device(device)
    return contextlib.nullcontext() if device.type == "cpu" else device


def step_autoencoder_aae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """Unsupervised (Section 2) and supervised (Section 4: the decoder also reads the label y)."""
    net, opts, autocast = ctx.net, ctx.opts, ctx.accelerator.autocast
    # 1. Reconstruction.
    with autocast():
        loss = reconstruction_loss(net.reconstruct(x, y).float(), x, ctx.settings.reduction)
    recon = masked_step(ctx, opts["reconstruction"], loss)
    # 2. Regularization: the discriminator learns prior draws against codes, ...
    real = sample_prior(ctx, "z", x.shape[1], x.device)
    with torch.no_grad():
        fake = net.code(x)
    with autocast():
        loss = discriminator_loss([net.discriminator], [real], [fake], ctx.settings.disc_loss)
    loss_d = masked_step(ctx, opts["discriminator"], loss)
    # ... then the encoder learns to fool it.
    with autocast():
        loss = generator_loss([net.discriminator], [net.code(x)])
    loss_g = masked_step(ctx, opts["generator"], loss)
    return {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}


def step_label_regularized_aae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """Section 3: as the unsupervised step, but the discriminator sees (code, one-hot label or
    "unlabelled"), and a labelled example's prior draw comes from its label's part of the prior."""
    net, opts, autocast = ctx.net, ctx.opts, ctx.accelerator.autocast
    # 1. Reconstruction.
    with autocast():
        loss = reconstruction_loss(net.reconstruct(x, y).float(), x, ctx.settings.reduction)
    recon = masked_step(ctx, opts["reconstruction"], loss)
    # 2. Regularization: the discriminator, ...
    tag = one_hot_with_unlabelled(y, net.n_classes).to(x.device)  # (S, B, K + 1)
    real = torch.cat([sample_prior(ctx, "z", x.shape[1], x.device, labels=y), tag], -1)
    with torch.no_grad():
        fake = torch.cat([net.code(x), tag], -1)
    with autocast():
        loss = discriminator_loss([net.discriminator], [real], [fake], ctx.settings.disc_loss)
    loss_d = masked_step(ctx, opts["discriminator"], loss)
    # ... then the generator.
    with autocast():
        loss = generator_loss([net.discriminator], [torch.cat([net.code(x), tag], -1)])
    loss_g = masked_step(ctx, opts["generator"], loss)
    return {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}


def step_categorical_aae(ctx: StepContext, x, y, labelled=None, *, cluster_heads: bool = False
                         ) -> dict[str, torch.Tensor]:
    """Semi-supervised (Section 5) and clustering (Section 6): y under a categorical prior and z
    under a Gaussian, a discriminator for each; with `labelled` (x_l, y_l), the classification
    phase. `cluster_heads`: Section 7's model (see `step_dim_reduction_aae`)."""
    net, opts, s, autocast = ctx.net, ctx.opts, ctx.settings, ctx.accelerator.autocast
    x_in = noisy(ctx, x)
    target = x_in if s.denoise_target == "noisy" else x  # PAPER-GAP: the paper does not say
    # 1. Reconstruction (Section 7: with the push that keeps the cluster heads apart).
    with autocast():
        loss = reconstruction_loss(net.decoder(net.representation(*net.code(x_in))).float(), target, s.reduction)
        if cluster_heads and s.head_penalty:
            loss = loss + s.head_penalty * head_penalty(net.cluster_heads, s.head_threshold)
    recon = masked_step(ctx, opts["reconstruction"], loss)
    # 2. Regularization: the discriminators of y and z, ...
    discriminators = [net.discriminator_y, net.discriminator_z]
    b = x.shape[1]
    reals = [sample_prior(ctx, "y", b, x.device), sample_prior(ctx, "z", b, x.device)]
    with torch.no_grad():
        fakes = list(net.code(x_in))
    with autocast():
        loss = discriminator_loss(discriminators, reals, fakes, s.disc_loss)
    loss_d = masked_step(ctx, opts["discriminator"], loss)
    # ... then the generator.
    with autocast():
        loss = generator_loss(discriminators, list(net.code(x_in)))
    loss_g = masked_step(ctx, opts["generator"], loss)
    losses = {"reconstruction": recon, "discriminator": loss_d, "generator": loss_g}
    # 3. Semi-supervised classification.
    if labelled is not None:
        x_l, y_l = labelled  # (S, B, ...), (S, B)
        x_l_in = noisy(ctx, x_l)
        with autocast():
            loss = classification_loss(net.split(x_l_in)[0].float(), y_l)  # logits (S, B, K)
        losses["classification"] = masked_step(ctx, opts["classification"], loss)
    return losses


def step_dim_reduction_aae(ctx: StepContext, x, y, labelled=None) -> dict[str, torch.Tensor]:
    """Section 7: the categorical step of a model whose representation is W_C y + z; the
    reconstruction phase also pushes apart cluster heads closer than the threshold."""
    return step_categorical_aae(ctx, x, y, labelled, cluster_heads=True)


def step_vae(ctx: StepContext, x, y) -> dict[str, torch.Tensor]:
    """The VAE baseline: reconstruction + KL(q(z|x) || p(z)), one optimizer."""
    net, prior = ctx.net, ctx.priors["z"]
    with ctx.accelerator.autocast():
        mean, logvar = net.posterior(x)  # (S, B, z_dim) each
        eps = per_seed(lambda gen, k: torch.randn(mean.shape[1:], generator=gen, device=gen.device),
                       ctx.prior_draws, mean.device)
        z = mean + seedwise(lambda lv: (0.5 * lv).exp(), logvar) * eps
        recon = reconstruction_loss(net.decoder(z).float(), x, ctx.settings.reduction)
        with made_on(mean.device):  # the mixture's log density builds its centres there, not on the CPU
            kl = seedwise(lambda m, lv, zz: kl_divergence(m, lv, zz, prior), mean.float(), logvar.float(),
                          z.float())  # (S, B)
        loss = recon + kl.mean(-1)
    return {"reconstruction": masked_step(ctx, ctx.opts["reconstruction"], loss)}


# -- an epoch ---------------------------------------------------------------------------


Batch = tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]


def minibatches(data: TrainingData, batch_size: int, data_generators: list[torch.Generator],
                labelled_generators: list[torch.Generator], shard: Shard, device, *,
                device_loop: bool = False) -> Iterator[Batch]:
    """One epoch's steps, (x, y, labelled) for every seed: x (S, B, ...); y (S, B), or None
    when the variant sees no labels; labelled (x_l, y_l) of shapes (S, B, ...), (S, B), a
    minibatch of each seed's labelled examples drawn with replacement, or None.

    Each seed goes through `data.x` in its own random order (a permutation from its data
    generator); this rank takes its stride of every minibatch (`Shard`).

    `device_loop`: the data set stays on the device (`TrainingData.on`), the epoch's order
    (the same permutations) is moved there once, every minibatch is gathered there, and the
    labelled picks come from device generators seeded from `labelled_generators`."""
    n = data.x.shape[0]
    orders = torch.stack([torch.randperm(n, generator=gen) for gen in data_generators])  # (S, n)
    if device_loop:
        yield from _minibatches_on_device(data.on(device), batch_size, orders.to(device),
                                          device_generators(labelled_generators, device), shard)
        return
    for start in range(0, n, batch_size):
        index = orders[:, start:start + batch_size]  # (S, B)
        if shard.world > 1:
            if index.shape[1] < shard.world:
                # DEVIATION: a last minibatch smaller than the number of workers is dropped
                # (every rank must take part in every step).
                return
            index = index[:, shard.rank::shard.world]  # (S, batch_size / world)
        x = data.x[index].to(device)  # (S, B, ...)
        y = data.y.gather(1, index).to(device) if data.y is not None else None
        labelled = None
        if data.labelled_index is not None:
            size, b = data.labelled_index.shape[1], index.shape[1]
            pick = per_seed(lambda gen, k, size=size, b=b: torch.randint(0, size, (b,), generator=gen),
                            labelled_generators, "cpu")  # (S, B)
            labelled = (data.x[data.labelled_index.gather(1, pick)].to(device),
                        data.labelled_y.gather(1, pick).to(device))
        yield x, y, labelled


def _minibatches_on_device(data: TrainingData, batch_size: int, orders: torch.Tensor,
                           labelled_generators: list[torch.Generator], shard: Shard) -> Iterator[Batch]:
    """`minibatches` of the device loop: `data` and `orders` (S, n) are on the device."""
    for start in range(0, orders.shape[1], batch_size):
        index = orders[:, start:start + batch_size]  # (S, B)
        if shard.world > 1:
            if index.shape[1] < shard.world:
                return  # DEVIATION: as in `minibatches`
            index = index[:, shard.rank::shard.world]
        x = pixels(data.x[index])
        y = data.y.gather(1, index) if data.y is not None else None
        labelled = None
        if data.labelled_index is not None:
            size, b = data.labelled_index.shape[1], index.shape[1]
            pick = per_seed(lambda gen, k, size=size, b=b: torch.randint(0, size, (b,), generator=gen,
                                                                         device=gen.device),
                            labelled_generators, orders.device)  # (S, B)
            labelled = (pixels(data.x[data.labelled_index.gather(1, pick)]), data.labelled_y.gather(1, pick))
        yield x, y, labelled


def record_divergence(ctx: StepContext, names: list[str], losses: torch.Tensor, alive: torch.Tensor,
                      where: str) -> None:
    """Note why each newly masked seed was masked (its first non-finite phase, `where`) in
    `ctx.diverged`; raise DivergedError once no seed is left. losses (phases, S)."""
    for k in range(ctx.seeds):
        if not alive[k] and k not in ctx.diverged:
            bad = next((nm for nm, v in zip(names, losses[:, k], strict=True) if not math.isfinite(v)), names[0])
            ctx.diverged[k] = f"non-finite {bad} loss at {where}"
    raise_when_none_left(ctx)


def raise_when_none_left(ctx: StepContext) -> None:
    if len(ctx.diverged) == ctx.seeds:
        raise DivergedError(ctx.diverged[0] if ctx.seeds == 1 else
                            "every seed diverged: " + "; ".join(f"seed index {k}: {why}"
                                                                for k, why in sorted(ctx.diverged.items())))


def train_epoch(ctx: StepContext, step: Callable, data: TrainingData, *, batch_size: int,
                data_generators: list[torch.Generator], epoch: int, shard: Shard = Shard(),  # noqa: B008 (frozen)
                labelled_generators: list[torch.Generator] | None = None) -> list[dict[str, float]]:
    """One pass over `data.x` for every seed, each in its own seeded random order, through
    `step` (a variant's step, `aae_core.variants.VARIANTS[name].step`); returns the mean loss of
    each phase, one dict per seed (NaN for a seed masked out this epoch or before).

    Data parallel (`shard.world` > 1): this rank trains on its stride of every minibatch, draws
    labelled minibatches from `labelled_generators` (its own streams; see `aae_core.parallel`),
    and the losses are averaged over the ranks at every step.

    A seed whose loss is not finite is recorded in `ctx.diverged` (epoch, step and phase) and
    masked out; raises DivergedError when no seed is left. The device loop (`ctx.device_loop`,
    see `_train_epoch_on_device`) records the same, at the epoch's end.
    """
    seeds = ctx.seeds
    if len(data_generators) != seeds:
        raise ValueError(f"{seeds} seeds need {seeds} data generators; got {len(data_generators)}")
    if shard.world > 1 and data.labelled_index is not None and labelled_generators is None:
        raise ValueError("data parallel training with labelled minibatches needs labelled_generators")
    if ctx.device_loop:
        ctx.reseed_draws()
        batches = minibatches(data, batch_size, data_generators, labelled_generators or data_generators, shard,
                              ctx.accelerator.device, device_loop=True)
        return _train_epoch_on_device(ctx, step, batches, epoch)
    batches = minibatches(data, batch_size, data_generators, labelled_generators or data_generators, shard,
                          ctx.accelerator.device)
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(seeds, dtype=torch.float64)
    for i, (x, y, labelled) in enumerate(batches):
        losses = step(ctx, x, y) if labelled is None else step(ctx, x, y, labelled)
        names = list(losses)
        stacked = torch.stack([losses[k].float() for k in names])  # (phases, S)
        stacked = parallel.mean_over_ranks(ctx.accelerator, stacked, shard.world).double().cpu()
        alive = ctx.alive.cpu()  # the one host sync of a step
        for name, values in zip(names, stacked, strict=True):
            sums[name] = sums.get(name, torch.zeros(seeds, dtype=torch.float64)) + torch.where(alive, values, 0.0)
        counts += alive.double()
        record_divergence(ctx, names, stacked, alive, f"epoch {epoch}, step {i}")
    return [{f"loss_{name}": (float(total[k] / counts[k]) if k not in ctx.diverged and counts[k] else math.nan)
             for name, total in sums.items()} for k in range(seeds)]


def _train_epoch_on_device(ctx: StepContext, step: Callable, batches: Iterator[Batch],
                           epoch: int) -> list[dict[str, float]]:
    """`train_epoch`'s loop with its records on the device: the loss sums, the counts, and per
    seed the step and phase of its first non-finite loss (`torch.where`, no host sync), read
    back in one copy at the epoch's end; the divergence messages are `record_divergence`'s.
    A pack whose seeds all died trains on, masked, to the epoch's end before it raises."""
    seeds, device = ctx.seeds, ctx.accelerator.device
    names: list[str] = []
    sums: torch.Tensor | None = None  # (phases, S) float64
    counts = torch.zeros(seeds, dtype=torch.float64, device=device)
    # The step of each seed's first non-finite loss: -1 none yet, -2 masked out before this epoch.
    first_bad = torch.tensor([-2 if k in ctx.diverged else -1 for k in range(seeds)], device=device)
    bad_phase = torch.zeros(seeds, dtype=torch.long, device=device)
    for i, (x, y, labelled) in enumerate(batches):
        losses = step(ctx, x, y) if labelled is None else step(ctx, x, y, labelled)
        names = list(losses)
        stacked = torch.stack([losses[k].float() for k in names])  # (phases, S)
        stacked = parallel.mean_over_ranks(ctx.accelerator, stacked, ctx.world).double()
        alive = ctx.alive
        if sums is None:
            sums = torch.zeros(stacked.shape, dtype=torch.float64, device=device)
        sums = sums + torch.where(alive, stacked, 0.0)
        counts = counts + alive.double()
        newly = ~alive & (first_bad == -1)
        first_bad = torch.where(newly, i, first_bad)
        # the first phase whose loss is not finite (argmax of a bool gives the first True; 0 if none)
        bad_phase = torch.where(newly, (~torch.isfinite(stacked)).long().argmax(0), bad_phase)
    if sums is None:
        return [{} for _ in range(seeds)]
    host = torch.cat([sums, counts[None], first_bad[None].double(), bad_phase[None].double()]).cpu()
    sums, counts, first_bad, bad_phase = host[:-3], host[-3], host[-2].long(), host[-1].long()
    for k in range(seeds):
        if first_bad[k] >= 0:
            ctx.diverged[k] = f"non-finite {names[bad_phase[k]]} loss at epoch {epoch}, step {int(first_bad[k])}"
    raise_when_none_left(ctx)
    return [{f"loss_{name}": (float(total[k] / counts[k]) if k not in ctx.diverged and counts[k] else math.nan)
             for name, total in zip(names, sums, strict=True)} for k in range(seeds)]


# -- using a trained model --------------------------------------------------------------


@torch.no_grad()
def decoded_batches(decoder, prior, n: int, prior_generators: list[torch.Generator], device,
                    batch_size: int = 1000):
    """Decode n prior draws per seed, each seed from its own stream, batch by batch: float32
    tensors (S, b, C*H*W) left on `device` (a GPU evaluator scores them there)."""
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = per_seed(lambda gen, k, b=b: prior.sample(b, gen), prior_generators, device)  # (S, b, d)
        yield decoder(z).float().flatten(2)


@torch.no_grad()
def generate(decoder, prior, n: int, prior_generators: list[torch.Generator], device,
             batch_size: int = 1000) -> np.ndarray:
    """The model's samples, as the Parzen estimate of Table 1 uses them, on the host:
    (S, n, C*H*W)."""
    out = [batch.cpu().numpy() for batch in
           decoded_batches(decoder, prior, n, prior_generators, device, batch_size)]
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
