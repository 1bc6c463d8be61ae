"""TrialConfig: everything that defines one trial, as one frozen, validated dataclass.

`dataclasses.asdict(config)` is what goes into every result row, so every choice the paper
leaves open is a recorded field here, never a silent constant in the code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

PROFILES = ("smoke", "quick", "paper")
VARIANTS = ("unsupervised",)
PRIORS = ("gaussian",)
DATASETS = ("mnist",)
PRECISIONS = ("no", "bf16")
RECON_REDUCTIONS = ("sum", "mean")

# The Parzen protocol of the GAN paper's public code (goodfeli/adversarial, parzen_ll.py).
PARZEN_SIGMAS = tuple(float(s) for s in np.logspace(-1, 0, 10))


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the valid choices."""


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, valid))}; got {value!r}")


@dataclass(frozen=True)
class TrialConfig:
    # -- what is studied --------------------------------------------------------------
    grid: str
    """The grid (paper table or figure) this trial belongs to, e.g. "table1"."""
    profile: str
    """Scale: "smoke" (seconds, tests), "quick" (minutes on a laptop CPU), "paper" (the paper's)."""
    seed: int
    """Seeds init, data order and prior draws (three streams derived from it)."""
    variant: str = "unsupervised"
    """Which model of the paper (aae_core.model.VARIANTS)."""
    dataset: str = "mnist"
    """Data set name (aae_core.datasets)."""
    prior: str = "gaussian"
    """Prior imposed on the code (aae_core.priors.PRIORS)."""

    # -- model ------------------------------------------------------------------------
    z_dim: int = 8
    """Code size. Table 1 MNIST: 8 (Section 3 / Appendix A)."""
    prior_std: float = 5.0
    """Std of the Gaussian prior: N(0, 5^2 I) for Table 1 (third-party readings of Appendix A)."""
    hidden_units: int = 1000
    """Width of each hidden layer of encoder, decoder and discriminator (Appendix A: 1000)."""
    hidden_layers: int = 2
    """Number of hidden layers of each network (Appendix A: 2)."""
    init_std: float = 0.01
    """Weights ~ N(0, init_std^2) (third-party readings of Appendix A)."""

    # -- optimisation -----------------------------------------------------------------
    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 100
    """Minibatch size (third-party readings of Appendix A: 100)."""
    recon_lr: float = 0.01
    """Reconstruction-phase SGD learning rate (third-party readings of Appendix A)."""
    recon_momentum: float = 0.9
    """Reconstruction-phase SGD momentum (third-party readings of Appendix A)."""
    adv_lr: float = 0.1
    """Regularization-phase SGD learning rate, discriminator and generator (third-party readings)."""
    adv_momentum: float = 0.1
    """Regularization-phase SGD momentum (third-party readings of Appendix A)."""
    lr_decay_epochs: tuple[int, ...] = (50, 1000)
    """Epochs from which every learning rate is multiplied by the matching lr_decay_factors."""
    lr_decay_factors: tuple[float, ...] = (0.1, 0.01)
    """Divided by 10 after 50 epochs and by 100 after 1000 (third-party readings of Appendix A)."""
    recon_reduction: str = "sum"
    """Euclidean loss summed over pixels ("sum") or averaged ("mean"). PAPER-GAP: unstated;
    with the appendix's lr 0.01, "mean" does not learn in 10 epochs (measured), "sum" does."""
    train_examples: int = 0
    """Use only the first N training examples (0 = the whole training split). Smoke runs only."""
    precision: str = "no"
    """Accelerate mixed precision: "no" (fp32) or "bf16". fp16 is refused: on CPU Accelerate
    silently runs it in fp32."""

    # -- evaluation -------------------------------------------------------------------
    parzen_samples: int = 10_000
    """Generated samples in the Parzen window (Table 1's 10K column)."""
    parzen_validation: int = 1_000
    """Validation images used to choose sigma (GAN paper protocol: 1,000)."""
    parzen_test: int = 0
    """Test images scored (0 = the whole test split, 10,000 for MNIST)."""
    parzen_sigmas: tuple[float, ...] = field(default=PARZEN_SIGMAS)
    """Candidate window widths (GAN paper protocol: numpy.logspace(-1, 0, 10))."""

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILES)
        _choice("variant", self.variant, VARIANTS)
        _choice("prior", self.prior, PRIORS)
        _choice("dataset", self.dataset, DATASETS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("recon_reduction", self.recon_reduction, RECON_REDUCTIONS)
        positive = ["z_dim", "hidden_units", "hidden_layers", "epochs", "batch_size",
                    "parzen_samples", "parzen_validation"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        for name in ["seed", "train_examples", "parzen_test"]:
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        for name in ["prior_std", "init_std", "recon_lr", "adv_lr"]:
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)!r}")
        for name in ["recon_momentum", "adv_momentum"]:
            if not 0 <= float(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {getattr(self, name)!r}")
        if len(self.lr_decay_epochs) != len(self.lr_decay_factors):
            raise ConfigError("lr_decay_epochs and lr_decay_factors must have the same length")
        if not self.parzen_sigmas or min(self.parzen_sigmas) <= 0:
            raise ConfigError("parzen_sigmas must be a non-empty list of positive widths")

    @property
    def hidden(self) -> list[int]:
        return [self.hidden_units] * self.hidden_layers

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def trial_id(self) -> str:
        """Stable hash of the whole config (grids grow without renaming existing trials)."""
        return config_hash(self.as_dict())


def _canonical(value):
    # Floats at 12 significant digits: numpy.logspace may differ in the last bit across
    # platforms, and a trial id must not.
    if isinstance(value, float):
        return format(value, ".12g")
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def config_hash(values: dict) -> str:
    canonical = json.dumps(_canonical(values), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_from_dict(values: dict) -> TrialConfig:
    """Rebuild a config from `as_dict()` output (tuples come back from lists)."""
    values = dict(values)
    expected_id = values.pop("trial_id", None)
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    unknown = set(values) - fields
    if unknown:
        raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")
    config = TrialConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    if expected_id is not None and expected_id != config.trial_id:
        raise ConfigError(f"trial id {expected_id} does not match its config ({config.trial_id})")
    return config
