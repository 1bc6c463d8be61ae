"""The networks of "Adversarial Autoencoders" (Makhzani et al., 2015), read top to bottom.

Parts first (encoder, decoder, discriminator), then the whole models, one per variant the paper
trains. Every size is an argument; the caller takes the input shape from the data. Sub-networks
stay separate attributes so that each gets its own optimizer and is prepared on its own by
Accelerate (a prepared parent module would bypass the DDP wrappers).

Every model holds S >= 1 independent copies of its weights, one per training seed, and every
tensor carries that seed dimension first, (S, B, ...): see `aae_core.seeds`, whose layers these
networks are made of. S = 1 is the plain, single-seed model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aae_core.seeds import SeedwiseSigmoid, mlp

# -- parts ------------------------------------------------------------------------------


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
# Each takes its sizes and the number of seeds S (and the number of classes, where it has
# classes); `aae_core.variants.build` draws the weights.


class UnsupervisedAAE(nn.Module):
    """Section 2, Table 1, Fig. 2 a-b: an autoencoder whose code z is matched to the prior."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int):
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

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int, n_classes: int):
        super().__init__(input_shape, z_dim, hidden, seeds)
        self.n_classes = n_classes
        self.discriminator = Discriminator(z_dim + n_classes + 1, hidden, seeds)


class SupervisedAAE(UnsupervisedAAE):
    """Section 4, Fig. 5-6: the decoder receives the one-hot label beside z, so z is left to
    carry the style only."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int, n_classes: int):
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

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int, n_classes: int):
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

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int, n_classes: int):
        super().__init__(input_shape, z_dim, hidden, seeds, n_classes)
        self.cluster_heads = nn.Parameter(torch.empty(seeds, n_classes, z_dim))  # (S, K, n)

    def code_dim(self, z_dim: int) -> int:
        return z_dim

    def representation(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return y @ self.cluster_heads + z  # ([S,] B, K) @ (S, K, n) + ([S,] B, n) -> (S, B, n)


class VAE(nn.Module):
    """The baseline of Fig. 2 c-d: a variational autoencoder with the same networks, whose
    encoder gives the mean and log-variance of a Gaussian q(z|x)."""

    def __init__(self, input_shape, z_dim: int, hidden: list[int], seeds: int):
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
