"""The networks of "Adversarial Autoencoders" (Makhzani et al., 2015), read top to bottom.

Parts first (an MLP), then the whole (the unsupervised AAE of Section 2 / Table 1).
Every size is an argument: the caller takes the input size from the data set.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(sizes: list[int], init_std: float, out_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear layers with ReLU between them (Appendix A: hidden layers of ReLU units).

    Weights ~ N(0, init_std^2) and zero biases, as third-party readings of the appendix give it.
    # PAPER-GAP: the appendix's init is known to us only through those readings (init_std field).
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear = nn.Linear(n_in, n_out)
        nn.init.normal_(linear.weight, mean=0.0, std=init_std)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z|x): a deterministic encoder (Section 2.1, "deterministic" choice used for Table 1)."""

    def __init__(self, input_shape: tuple[int, ...], z_dim: int, hidden: list[int], init_std: float):
        super().__init__()
        self.net = mlp([math.prod(input_shape), *hidden, z_dim], init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, C*H*W) -> (B, z_dim)


class Decoder(nn.Module):
    """p(x|z): an MLP with a sigmoid output, so pixels lie in [0, 1] like the data."""

    def __init__(self, input_shape: tuple[int, ...], z_dim: int, hidden: list[int], init_std: float):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = mlp([z_dim, *hidden, math.prod(input_shape)], init_std, nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.input_shape)  # (B, C, H, W)


class Discriminator(nn.Module):
    """D(z): one logit for "z came from the prior" (Section 2). No batch norm: public AAE
    code reports that it breaks the discriminator."""

    def __init__(self, z_dim: int, hidden: list[int], init_std: float):
        super().__init__()
        self.net = mlp([z_dim, *hidden, 1], init_std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)  # (B,)


class UnsupervisedAAE(nn.Module):
    """The unsupervised AAE (Section 2, Table 1): autoencoder + a discriminator on its code.

    The three parts stay separate modules so that each can be given its own optimizer and be
    prepared on its own by Accelerate (a prepared parent would bypass the DDP wrappers).
    """

    def __init__(self, input_shape: tuple[int, ...], z_dim: int, hidden: list[int], init_std: float):
        super().__init__()
        self.encoder = Encoder(input_shape, z_dim, hidden, init_std)
        self.decoder = Decoder(input_shape, z_dim, hidden, init_std)
        self.discriminator = Discriminator(z_dim, hidden, init_std)


VARIANTS = {"unsupervised": UnsupervisedAAE}
