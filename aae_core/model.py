"""The networks of "Adversarial Autoencoders" (Makhzani et al., 2015), read top to bottom.

Parts first (a seed-batched linear layer, an MLP, encoder, decoder, discriminator), then the
whole models, one per variant the paper trains. Every size is an argument; the caller takes
the input shape from the data. Sub-networks stay separate attributes so that each gets its own
optimizer and is prepared on its own by Accelerate (a prepared parent module would bypass the
DDP wrappers).

Seeds. Every model holds S >= 1 independent copies of its weights, one per training seed,
stacked along a leading seed dimension: a weight of shape (S, out, in). Every tensor that flows
through a model carries that dimension first, (S, B, ...), and each seed's slice only ever
meets its own weights (batched matrix products), so S seeds train as one model at little more
than the cost of one. S = 1 is the plain, single-seed model. Seed k's weights are drawn from
its own generator (`init_seeds[k]`) in the same order whatever S is, so seed k of a batched
model starts from exactly the weights it gets alone. An input without the seed dimension (an
evaluation batch, a grid of codes) is shared by every seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# -- parts ------------------------------------------------------------------------------


class _PerSeedGemm(torch.autograd.Function):
    """(S, B, in) -> (S, B, out) as one plain GEMM per seed, written into (S, ...) buffers.

    On a CPU, MKL's plain GEMM (what nn.Linear calls) runs about 1.3x faster than its batched
    one at the paper's sizes (tests/benchmarks/test_bench_seeds.py measures the training loop),
    and a GEMM per seed gives every seed exactly the bits it gets alone."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        out = x.new_empty(x.shape[0], x.shape[1], weight.shape[1])
        for k in range(weight.shape[0]):
            torch.addmm(bias[k], x[k], weight[k].t(), out=out[k])
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        grad_x = x.new_empty(x.shape) if need_x else None
        grad_weight = torch.empty_like(weight) if need_weight else None
        for k in range(weight.shape[0]):  # seed by seed, while its slices are in cache
            if need_x:
                torch.mm(grad[k], weight[k], out=grad_x[k])
            if need_weight:
                torch.mm(grad[k].t(), x[k], out=grad_weight[k])
        return grad_x, grad_weight, grad.sum(1) if need_bias else None


def seedwise(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over (S, ...) tensors, on a CPU one seed's slices at a time.

    Vectorised exp, log and sigmoid round the last bit differently in a tensor's scalar tail
    than in its vector body, so in one stacked call a slice's bits would depend on where it
    sits (e.g. 2 x 100 logits: seed 0's last 8 are in the body, alone they are the tail).
    Seed by seed, every slice gets exactly the bits it gets alone. On a GPU, one call."""
    if tensors[0].device.type != "cpu" or tensors[0].shape[0] == 1:
        return fn(*tensors)
    return torch.stack([fn(*parts) for parts in zip(*(t.unbind(0) for t in tensors), strict=True)])


class SeedwiseSigmoid(nn.Module):
    """The decoder's output sigmoid, seed by seed on a CPU (see `seedwise`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seedwise(torch.sigmoid, x)


class SeedLinear(nn.Module):
    """S independent linear layers applied to their own slices: (S, B, in) -> (S, B, out).

    Weight (S, out, in), bias (S, out): nn.Linear's layout with a seed dimension in front.
    On an accelerator the S products are one batched kernel (`baddbmm`), which is where
    batching seeds pays; on a CPU they are S plain GEMMs (see `_PerSeedGemm`).
    """

    def __init__(self, n_in: int, n_out: int, seeds: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(seeds, n_out, n_in))
        self.bias = nn.Parameter(torch.empty(seeds, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (B, in): shared by every seed
            x = x.expand(self.weight.shape[0], *x.shape)
        if x.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and x.dtype == self.weight.dtype:
            return _PerSeedGemm.apply(x, self.weight, self.bias)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def extra_repr(self) -> str:
        seeds, n_out, n_in = self.weight.shape
        return f"in={n_in}, out={n_out}, seeds={seeds}"


def mlp(sizes: list[int], seeds: int, out_activation: nn.Module | None = None) -> nn.Sequential:
    """Seed-batched linear layers with ReLU between them (Appendix A: hidden ReLU layers).
    Weights are drawn by `initialise`."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(SeedLinear(n_in, n_out, seeds))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


@torch.no_grad()
def initialise(net: nn.Module, init_seeds: Sequence[int], init_std: float, head_init_std: float = 1.0) -> None:
    """Seed k's weights from generator `init_seeds[k]`, parameter by parameter in registration
    order: linear weights ~ N(0, init_std^2), biases 0, Section 7's cluster heads
    ~ N(0, head_init_std^2).

    # PAPER-GAP: the appendix's initialisation is known to us through third-party readings
    # only (the init_std config field); the heads' initialisation is not given at all.
    """
    for k, seed in enumerate(init_seeds):
        gen = torch.Generator().manual_seed(int(seed))
        for name, param in net.named_parameters():
            if name.endswith("bias"):
                param[k].zero_()
            elif name == "cluster_heads":
                param[k].copy_(torch.randn(param.shape[1:], generator=gen) * head_init_std)
            else:
                param[k].copy_(torch.randn(param.shape[1:], generator=gen) * init_std)


def n_seeds(net: nn.Module) -> int:
    return next(net.parameters()).shape[0]


class Encoder(nn.Module):
    """A deterministic encoder q(.|x) (Section 2.1: the "deterministic" choice). Its last layer
    holds every head a variant needs (code z, class logits, VAE log-variances) side by side."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: list[int], seeds: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = mlp([math.prod(input_shape), *hidden, out_dim], seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ([S,] B, C, H, W) -> ([S,] B, C*H*W) -> (S, B, out_dim)
        return self.net(x.flatten(-len(self.input_shape)))


class Decoder(nn.Module):
    """p(x|code): an MLP with a sigmoid output, so pixels lie in [0, 1] like the data."""

    def __init__(self, input_shape: tuple[int, ...], code_dim: int, hidden: list[int], seeds: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = mlp([code_dim, *hidden, math.prod(input_shape)], seeds, SeedwiseSigmoid())

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        out = self.net(code)  # (S, B, C*H*W)
        return out.view(*out.shape[:-1], *self.input_shape)  # (S, B, C, H, W)


class Discriminator(nn.Module):
    """D(.): one logit for "this came from the prior" (Section 2). No batch norm: public AAE
    code reports that it breaks the discriminator."""

    def __init__(self, in_dim: int, hidden: list[int], seeds: int):
        super().__init__()
        self.net = mlp([in_dim, *hidden, 1], seeds)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v).squeeze(-1)  # (S, B)


def one_hot_with_unlabelled(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Section 3: a one-hot label with an extra class meaning "unlabelled" (label -1)."""
    index = torch.where(labels >= 0, labels, torch.full_like(labels, n_classes))
    return F.one_hot(index, n_classes + 1).float()  # (..., n_classes + 1)


def beside(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a, b] along the features; an `a` without the seed dimension is shared by every seed."""
    if a.dim() < b.dim():
        a = a.expand(*b.shape[:-1], a.shape[-1])
    return torch.cat([a, b], -1)


# -- the models -------------------------------------------------------------------------
# Each takes its sizes and the number of seeds S; `build` draws the weights.


class UnsupervisedAAE(nn.Module):
    """Section 2, Table 1, Fig. 2 a-b: an autoencoder whose code z is matched to the prior."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, **_):
        super().__init__()
        self.encoder = Encoder(input_shape, z_dim, hidden, seeds)
        self.decoder = Decoder(input_shape, z_dim, hidden, seeds)
        self.discriminator = Discriminator(z_dim, hidden, seeds)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (S, B, z_dim)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class LabelRegularizedAAE(UnsupervisedAAE):
    """Section 3, Fig. 4: the discriminator also sees the label (one-hot, plus an "unlabelled"
    class), so labelled codes are pushed to their label's part of the prior."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, n_classes: int = 10, **_):
        super().__init__(input_shape, z_dim, hidden, seeds)
        self.n_classes = n_classes
        self.discriminator = Discriminator(z_dim + n_classes + 1, hidden, seeds)


class SupervisedAAE(UnsupervisedAAE):
    """Section 4, Fig. 5-6: the decoder receives the one-hot label beside z, so z is left to
    carry the style only."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, n_classes: int = 10, **_):
        super().__init__(input_shape, z_dim, hidden, seeds)
        self.n_classes = n_classes
        self.decoder = Decoder(input_shape, n_classes + z_dim, hidden, seeds)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        y = F.one_hot(labels, self.n_classes).float()  # ([S,] B, n_classes)
        return self.decoder(beside(y, self.encoder(x)))  # (S, B, n_classes + z_dim)


class SemiSupervisedAAE(nn.Module):
    """Section 5, Table 2 (and Section 6, Table 3, with K clusters and no labels): the encoder
    gives a softmax y under a categorical prior and a style z under a Gaussian prior; one
    discriminator for each; the decoder sees both."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, n_classes: int = 10, **_):
        super().__init__()
        self.n_classes = n_classes
        self.encoder = Encoder(input_shape, n_classes + z_dim, hidden, seeds)
        self.decoder = Decoder(input_shape, self.code_dim(z_dim), hidden, seeds)
        self.discriminator_y = Discriminator(n_classes, hidden, seeds)
        self.discriminator_z = Discriminator(z_dim, hidden, seeds)

    def code_dim(self, z_dim: int) -> int:
        return self.n_classes + z_dim

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (S, B, n_classes + z_dim)
        return h[..., : self.n_classes], h[..., self.n_classes:]  # logits (S, B, K), z (S, B, z_dim)

    def code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, z = self.split(x)
        return logits.softmax(-1), z

    def representation(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return beside(y, z)  # (S, B, K + z_dim)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.representation(*self.code(x)))


class DimReductionAAE(SemiSupervisedAAE):
    """Section 7, Fig. 11: the n-D representation W_C y + z, with one learned cluster head per
    class or cluster (the rows of W_C); the decoder sees only that representation."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, n_classes: int = 10, **_):
        super().__init__(input_shape, z_dim, hidden, seeds, n_classes)
        self.cluster_heads = nn.Parameter(torch.empty(seeds, n_classes, z_dim))  # (S, K, n)

    def code_dim(self, z_dim: int) -> int:
        return z_dim

    def representation(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return y @ self.cluster_heads + z  # ([S,] B, K) @ (S, K, n) + ([S,] B, n) -> (S, B, n)


class VAE(nn.Module):
    """The baseline of Fig. 2 c-d: a variational autoencoder with the same networks, whose
    encoder gives the mean and log-variance of a Gaussian q(z|x)."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, **_):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = Encoder(input_shape, 2 * z_dim, hidden, seeds)
        self.decoder = Decoder(input_shape, z_dim, hidden, seeds)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, -1)  # (S, B, z_dim) each
        return mean, logvar

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.code(x))


VARIANTS = {
    "unsupervised": UnsupervisedAAE,
    "label-regularized": LabelRegularizedAAE,
    "supervised": SupervisedAAE,
    "semi-supervised": SemiSupervisedAAE,
    "clustering": SemiSupervisedAAE,
    "dim-reduction": DimReductionAAE,
    "vae": VAE,
}


def build(variant: str, input_shape, z_dim: int, hidden: list[int], *, init_std: float,
          init_seeds: Sequence[int] = (0,), n_classes: int = 10, head_init_std: float = 1.0) -> nn.Module:
    """A variant's model with one weight copy per entry of `init_seeds`, each drawn from its seed."""
    if not init_seeds:
        raise ValueError("a model needs at least one seed")
    net = VARIANTS[variant](input_shape, z_dim, hidden, len(init_seeds), n_classes=n_classes)
    initialise(net, init_seeds, init_std, head_init_std)
    return net
