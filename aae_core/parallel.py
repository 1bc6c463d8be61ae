"""Data parallel training (DDP through Accelerate): what every rank must share, and what is its own.

- Weights: every sub-network is prepared on its own (`prepare`), so DDP averages its gradients
  over the ranks; parameters of a model itself (Section 7's cluster heads) are averaged by a hook.
- Data: the epoch's seeded permutation is the same on every rank; each global minibatch is split
  over the ranks by stride (`Shard`), so the ranks' shards of a step together are exactly the
  minibatch a single worker would see, and the averaged gradient is the same.
- Random streams (`rank_seed`): weight init and data order are shared by every rank; prior
  draws and noise are the rank's own, and so are the labelled-minibatch draws (drawing them from
  the shared data stream would make the data streams, and with them the next epoch's
  permutations, differ between ranks). Rank 0 keeps the trial's streams, so its draws match a
  1-worker run.
- Losses: averaged over the ranks at every step (`mean_over_ranks`), so that all ranks see the
  same numbers; a seed is masked out when its loss is not finite on any rank
  (`finite_on_every_rank`), so every rank masks the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Shard:
    """Which part of every minibatch this process trains on: rank `rank` of `world` takes every
    `world`-th example of each global minibatch (batch_size examples, the paper's 100)."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in 0..{self.world - 1}; got {self.rank}")


def rank_seed(*entropy: int) -> int:
    """A stream seed derived from a trial's stream seed, a rank and an optional tag."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def prepare(accelerator, net: nn.Module, opts: dict) -> None:
    """Prepare each sub-network and optimizer on its own (a prepared parent would bypass DDP).

    The whole model goes to the accelerator's device first: preparing the children moves only
    them, and a parameter or buffer of the parent itself (Section 7's cluster heads) would stay
    on the CPU."""
    net.to(accelerator.device)
    for name, child in list(net.named_children()):
        setattr(net, name, accelerator.prepare(child))
    for name in list(opts):
        opts[name] = accelerator.prepare(opts[name])
    if accelerator.num_processes > 1:
        # Parameters of the parent itself (Section 7's cluster heads) belong to no DDP wrapper:
        # average their gradients over the ranks by hand, or the ranks would drift apart.
        for param in net.parameters(recurse=False):
            param.register_hook(lambda grad: accelerator.reduce(grad.contiguous(), "mean"))


def finite_on_every_rank(accelerator, loss: torch.Tensor, world: int) -> torch.Tensor:
    """(S,) bool: each seed's loss is finite on every rank (every rank must mask the same
    seeds, or their weights drift apart)."""
    finite = torch.isfinite(loss)
    if world > 1:
        finite = accelerator.reduce(finite.float(), "sum") == world
    return finite


def mean_over_ranks(accelerator, losses: torch.Tensor, world: int) -> torch.Tensor:
    """The losses averaged over the ranks, so that every rank records the same numbers."""
    return accelerator.reduce(losses, "mean") if world > 1 else losses
