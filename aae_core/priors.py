"""Priors p(z) that the adversarial network imposes on the code (paper, Section 2).

Each prior draws samples from an explicit `torch.Generator`, so the draws of a trial are
reproducible from its seed and independent of any other random stream (data order, init).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Gaussian:
    """N(0, std^2 I) of any dimension (Section 2; Table 1 uses dim 8, std 5)."""

    dim: int
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"Gaussian prior: dim must be >= 1, got {self.dim}")
        if not self.std > 0:
            raise ValueError(f"Gaussian prior: std must be > 0, got {self.std}")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=generator) * self.std  # (n, dim)


PRIORS = {"gaussian": Gaussian}


def make_prior(name: str, **params) -> Gaussian:
    """Build a prior by name; an unknown name gets one line listing the valid ones."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; valid: {', '.join(sorted(PRIORS))}")
    return PRIORS[name](**params)
