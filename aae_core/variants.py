"""The variants the paper trains, one flat record each: what a variant is, in one place.

Everything that differs between variants and is not a network shape lives here (which model and
training step, which priors, what the variant sees of the labels, how it is judged, its
defaults), so that configuration, grids, the trial and the figures read a record instead of
comparing variant names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from aae_core import model, training
from aae_core.seeds import initialise

EVALUATIONS = ("parzen", "categorical", "reconstruction")
"""How a variant is judged: "parzen" (Table 1's log-likelihood), "categorical" (q(y|x):
classification error with labels, clustering error without), "reconstruction" (models judged by
their figures; the reconstruction error is recorded)."""

LABEL_USES = ("none", "all", "tagged", "subset")
"""What a variant sees of the training labels: nothing; every label (the supervised decoder);
a labelled subset shown to the discriminator, the rest tagged "unlabelled" (Section 3); a
labelled subset for the classification phase (Section 5)."""

NEEDS = ("", "labels", "clusters", "labels-or-clusters")
"""Which of the config fields `labels` / `clusters` a variant requires ("labels-or-clusters":
exactly one of them)."""


def _frozen(values: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Variant:
    name: str
    section: str
    """Where the paper describes it."""
    model: type[nn.Module]
    step: Callable
    """The training step (aae_core.training): one minibatch through the variant's phases."""
    priors: tuple[str, ...]
    """Priors the code z may take (the categorical prior on y is implied by `categorical`)."""
    evaluation: str
    labels: str = "none"
    needs: str = ""
    categorical: bool = False
    """q(y|x) under a categorical prior with its own discriminator (Sections 5-7)."""
    adversarial: bool = True
    """Trained with a discriminator (every AAE; the VAE baseline is not)."""
    per_class: bool = False
    """The model has an input or output per class (its constructor takes n_classes)."""
    primary_metric: str | None = None
    """The metric a table cell reports, where it is not the evaluation's own."""
    defaults: Mapping[str, object] = field(default_factory=_frozen)
    """Defaults of shared config fields for this variant (code size, prior std)."""
    fields: Mapping[str, object] = field(default_factory=_frozen)
    """Config fields that apply to this variant only, with their defaults (None elsewhere)."""

    def __post_init__(self) -> None:
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation must be one of {', '.join(EVALUATIONS)}; got {self.evaluation!r}")
        if self.labels not in LABEL_USES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_USES)}; got {self.labels!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"needs must be one of {', '.join(repr(n) for n in NEEDS)}; got {self.needs!r}")

    @property
    def takes_labels(self) -> bool:
        """Whether the config field `labels` applies."""
        return "labels" in self.needs

    @property
    def takes_clusters(self) -> bool:
        """Whether the config field `clusters` applies."""
        return "clusters" in self.needs


# PAPER-GAP: the classification phase's optimizer is not known to us (classification_lr,
# classification_momentum); the 0.3 input noise is the reading of Section 5.
_CATEGORICAL_FIELDS = dict(input_noise_std=0.3, classification_lr=0.1, classification_momentum=0.9)
# PAPER-GAP: Section 7's head push (threshold, weight) and the heads' init are not given.
_DIM_REDUCTION_FIELDS = dict(head_threshold=3.0, head_penalty=1.0, head_init_std=1.0)

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("unsupervised", "Section 2, Table 1, Fig. 2a-b", model.UnsupervisedAAE,
            training.step_autoencoder_aae, ("gaussian", "mixture", "swiss-roll"), "parzen",
            defaults=_frozen(dict(z_dim=8, prior_std=5.0))),
    Variant("label-regularized", "Section 3, Fig. 4", model.LabelRegularizedAAE,
            training.step_label_regularized_aae, ("mixture", "swiss-roll"), "reconstruction",
            per_class=True, labels="tagged", needs="labels", defaults=_frozen(dict(z_dim=2))),
    Variant("supervised", "Section 4, Fig. 5-6", model.SupervisedAAE,
            training.step_autoencoder_aae, ("gaussian",), "reconstruction", per_class=True,
            labels="all", defaults=_frozen(dict(z_dim=15, prior_std=1.0))),
    Variant("semi-supervised", "Section 5, Table 2", model.SemiSupervisedAAE,
            training.step_categorical_aae, ("gaussian",), "categorical", per_class=True, labels="subset",
            needs="labels", categorical=True, defaults=_frozen(dict(z_dim=10, prior_std=1.0)),
            fields=_frozen(_CATEGORICAL_FIELDS)),
    Variant("clustering", "Section 6, Table 3, Fig. 9", model.SemiSupervisedAAE,
            training.step_categorical_aae, ("gaussian",), "categorical", per_class=True, needs="clusters",
            categorical=True, defaults=_frozen(dict(z_dim=10, prior_std=1.0)),
            fields=_frozen(_CATEGORICAL_FIELDS)),
    Variant("dim-reduction", "Section 7, Fig. 11", model.DimReductionAAE,
            training.step_dim_reduction_aae, ("gaussian",), "categorical", per_class=True, labels="subset",
            needs="labels-or-clusters", categorical=True, primary_metric="dim_reduction_error",
            defaults=_frozen(dict(z_dim=2, prior_std=0.5)),
            fields=_frozen({**_CATEGORICAL_FIELDS, **_DIM_REDUCTION_FIELDS})),
    # The VAE's KL needs a density: the swiss roll has none here.
    Variant("vae", "Fig. 2c-d (baseline)", model.VAE, training.step_vae, ("gaussian", "mixture"),
            "parzen", adversarial=False, defaults=_frozen(dict(z_dim=8, prior_std=5.0))),
)}


def variant(name: str) -> Variant:
    """The record of variant `name`; an unknown name is one line naming the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def network(name: str, input_shape, z_dim: int, hidden: list[int], seeds: int = 1, *, n_classes: int) -> nn.Module:
    """Variant `name`'s model for `seeds` seeds, weights not drawn (to load a state into);
    `n_classes` reaches only the models that have classes."""
    record = variant(name)
    if record.per_class:
        return record.model(input_shape, z_dim, hidden, seeds, n_classes)
    return record.model(input_shape, z_dim, hidden, seeds)


def build(name: str, input_shape, z_dim: int, hidden: list[int], *, init_std: float,
          init_seeds: Sequence[int] = (0,), n_classes: int = 10, head_init_std: float = 1.0,
          init: str = "normal") -> nn.Module:
    """Variant `name`'s model with one weight copy per entry of `init_seeds`, each drawn from its
    seed under init scheme `init` (aae_core.seeds.initialise)."""
    if not init_seeds:
        raise ValueError("a model needs at least one seed")
    net = network(name, input_shape, z_dim, hidden, len(init_seeds), n_classes=n_classes)
    initialise(net, init_seeds, init_std, head_init_std, init)
    return net
