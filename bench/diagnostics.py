"""Why a trained model failed: what its encoder does on a set of images. Not a metric of the
paper; a look inside a collapsed cell (issue #16: every model trained under the mixture prior
gave one code to nearly every test image).

A deterministic encoder that gives the same code, bit for bit, to inputs that differ can only
do so where its last hidden layer is the same for them: in a ReLU network, in practice, where
all of that layer's units are zero ("dead") for those inputs. Then no gradient reaches the
encoder's lower layers through them, from the reconstruction or the regularization phase, for
those inputs; only units still alive for some input can bring the rest back.
`encoder_activity` counts the units that are ever active; `code_collapse` counts the distinct
codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class LayerActivity:
    """One hidden ReLU layer of an encoder over a set of inputs."""

    layer: int
    """1 for the first hidden layer."""
    units: int
    alive: int
    """Units above zero for at least one input."""
    mean_active: float
    """The mean, over inputs, of the fraction of units above zero."""
    inputs_all_dead: int
    """Inputs for which every unit of the layer is zero."""


@torch.no_grad()
def encoder_activity(encoder: nn.Module, images: torch.Tensor, batch: int = 1000) -> list[LayerActivity]:
    """Per hidden layer of `encoder` (an `aae_core.model.Encoder` of one seed), which units the
    images (N, ...) switch on. The layers are read after each ReLU of `encoder.net`."""
    chunks: list[list[torch.Tensor]] = []  # per batch, per hidden layer: (B, units) bool
    for start in range(0, images.shape[0], batch):
        h = images[start:start + batch].flatten(-len(encoder.input_shape)).float().unsqueeze(0)
        seen = []
        for module in encoder.net:
            h = module(h)
            if isinstance(module, nn.ReLU):
                seen.append(h[0] > 0)
        chunks.append(seen)
    layers = [torch.cat(parts) for parts in zip(*chunks, strict=True)]  # per layer: (N, units)
    return [LayerActivity(i + 1, on.shape[1], int(on.any(0).sum()), float(on.float().mean()),
                          int((~on.any(1)).sum()))
            for i, on in enumerate(layers)]


def code_collapse(codes: np.ndarray) -> tuple[int, float]:
    """(distinct codes, the largest share of inputs that get one code), codes compared bit for
    bit: a healthy encoder gives as many codes as inputs."""
    codes = np.ascontiguousarray(codes)
    _, counts = np.unique(codes.reshape(len(codes), -1), axis=0, return_counts=True)
    return int(len(counts)), float(counts.max() / len(codes))
