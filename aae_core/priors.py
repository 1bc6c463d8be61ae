"""Priors p(z) that the adversarial network imposes on the code (paper, Sections 2-5).

Each prior draws n samples from an explicit `torch.Generator`, on that generator's device, so
the draws of a trial are reproducible from its seed and independent of every other random
stream. Priors that the paper conditions on labels (Section 3, Fig. 4) take `labels`: an int
tensor with the class of each draw, -1 meaning "unlabelled" (draw from the whole prior); labels
on another device are moved to the generator's. `closed_form_kl` says whether the KL of a
diagonal Gaussian from the prior has a closed form (the VAE baseline's KL term).

What does not change between steps (the mixture's centres and stds) is built once per device
(on the CPU, then moved: every device gets the same values) and kept: a step on an accelerator
copies nothing from the host.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch


def _labels_on(labels, n: int, k: int, device: torch.device) -> torch.Tensor | None:
    """`labels` as a long tensor on `device` (the draws' device), checked: shape (n,), values in
    -1..k-1; None stays None.

    CPU labels are checked here (ValueError, one line). Labels on an accelerator are checked
    there without the host waiting for the answer (`torch._assert_async`): a bad label stops
    the process at its next synchronisation, with the same message."""
    if labels is None:
        return None
    labels = torch.as_tensor(labels, dtype=torch.long).to(device)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
    message = f"labels must lie in -1..{k - 1}"
    if labels.device.type != "cpu":
        if labels.numel():
            torch._assert_async(((labels >= -1) & (labels < k)).all(), message)
    elif labels.numel() and (int(labels.max()) >= k or int(labels.min()) < -1):
        raise ValueError(message)
    return labels


def _random_labels(n: int, k: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """The class of each draw: the given label (checked, `_labels_on`), or a uniform class where
    the label is -1 or there are none."""
    drawn = torch.randint(0, k, (n,), generator=generator, device=generator.device)
    if labels is None:
        return drawn
    return torch.where(labels >= 0, labels, drawn)


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """torch.tensor(values) (float32) on `device`, made once (read only)."""
    return torch.tensor(values, device="cpu").to(device)


@functools.lru_cache(maxsize=64)
def _mixture_frame(components: int, radius: float, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture's centres (k, 2) and their unit vectors (k, 2) in `dtype` on `device`, made
    once (read only). Computed on the CPU, the way CPU runs always computed them, then moved."""
    centres = GaussianMixture(components, radius).centres().to(dtype)
    return centres.to(device), (centres / radius).to(device)


@dataclass(frozen=True)
class Gaussian:
    """N(0, std^2 I) of any dimension (Section 2; Table 1 uses dim 8, std 5)."""

    dim: int
    std: float = 1.0
    closed_form_kl: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"Gaussian prior: dim must be >= 1, got {self.dim}")
        if not self.std > 0:
            raise ValueError(f"Gaussian prior: std must be > 0, got {self.std}")

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=generator, device=generator.device) * self.std  # (n, dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return (-0.5 * (z / self.std).pow(2) - math.log(self.std * math.sqrt(2 * math.pi))).sum(1)


@dataclass(frozen=True)
class GaussianMixture:
    """A mixture of k 2-D Gaussians on a circle; component j serves label j (Fig. 2, Fig. 4).

    Centre j at `radius` (cos a_j, sin a_j), a_j = 2 pi j / k, elongated along the radius.
    # PAPER-GAP: the paper gives no constants; radius 1.4, std 0.5 along the radius and 0.05
    # across it are the parametrization public AAE code shares. All three are config fields.
    """

    components: int = 10
    radius: float = 1.4
    std_radial: float = 0.5
    std_tangential: float = 0.05
    dim: int = 2
    closed_form_kl: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.dim != 2:
            raise ValueError(f"mixture prior is 2-D; got dim {self.dim} (set z_dim 2)")
        if self.components < 1 or not self.radius > 0:
            raise ValueError("mixture prior: components >= 1 and radius > 0 required")
        if not (self.std_radial > 0 and self.std_tangential > 0):
            raise ValueError("mixture prior: both stds must be > 0")

    def centres(self) -> torch.Tensor:
        """The centres (k, 2), float32, on the CPU (a new tensor)."""
        angle = 2 * math.pi * torch.arange(self.components, dtype=torch.float64, device="cpu") / self.components
        return (self.radius * torch.stack([angle.cos(), angle.sin()], 1)).float()  # (k, 2)

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        k = _random_labels(n, self.components, _labels_on(labels, n, self.components, generator.device),
                           generator)
        stds = _constant((self.std_radial, self.std_tangential), generator.device)
        noise = torch.randn(n, 2, generator=generator, device=generator.device) * stds
        angle = 2 * math.pi * k.double() / self.components
        radial = torch.stack([angle.cos(), angle.sin()], 1).float()  # (n, 2) unit vectors
        tangential = torch.stack([-radial[:, 1], radial[:, 0]], 1)  # (n, 2)
        return self.radius * radial + noise[:, :1] * radial + noise[:, 1:] * tangential

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), equal weights (the VAE baseline's KL needs it)."""
        centres, radial = _mixture_frame(self.components, self.radius, z.device, z.dtype)  # (k, 2) each
        d = z[:, None, :] - centres[None]  # (n, k, 2)
        a = (d * radial).sum(-1)  # (n, k) along the radius
        b = d[..., 1] * radial[:, 0] - d[..., 0] * radial[:, 1]  # (n, k) across it
        log_component = (-0.5 * ((a / self.std_radial) ** 2 + (b / self.std_tangential) ** 2)
                         - math.log(2 * math.pi * self.std_radial * self.std_tangential))
        return torch.logsumexp(log_component, 1) - math.log(self.components)


@dataclass(frozen=True)
class SwissRoll:
    """A 2-D swiss roll; label j occupies the slice [j/k, (j+1)/k) of its parameter u (Fig. 4).

    r = 3 sqrt(u), theta = 4 pi sqrt(u).
    # PAPER-GAP: the paper's own constants are unknown to us; these are the issue's reading.
    """

    classes: int = 10
    dim: int = 2
    closed_form_kl: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.dim != 2:
            raise ValueError(f"swiss-roll prior is 2-D; got dim {self.dim} (set z_dim 2)")
        if self.classes < 1:
            raise ValueError(f"swiss-roll prior needs >= 1 class; got {self.classes}")

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        within = torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device)
        if labels is None:
            u = within
        else:
            labels = _labels_on(labels, n, self.classes, generator.device)
            k = _random_labels(n, self.classes, labels, generator).double()
            u = torch.where(labels < 0, within, (k + within) / self.classes)
        r, theta = 3 * u.sqrt(), 4 * math.pi * u.sqrt()
        return torch.stack([r * theta.cos(), r * theta.sin()], 1).float()  # (n, 2)


@dataclass(frozen=True)
class Categorical:
    """One-hot vectors over `dim` classes, uniform (Section 5: the prior on y)."""

    dim: int
    closed_form_kl: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.dim < 2:
            raise ValueError(f"categorical prior needs >= 2 classes; got {self.dim}")

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        k = _random_labels(n, self.dim, _labels_on(labels, n, self.dim, generator.device), generator)
        return torch.nn.functional.one_hot(k, self.dim).float()  # (n, dim)


PRIORS = {
    "gaussian": Gaussian,
    "mixture": GaussianMixture,
    "swiss-roll": SwissRoll,
    "categorical": Categorical,
}


def make_prior(name: str, **params):
    """Build a prior by name; an unknown name gets one line listing the valid ones."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; valid: {', '.join(sorted(PRIORS))}")
    return PRIORS[name](**params)
