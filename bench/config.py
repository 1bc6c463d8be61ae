"""TrialConfig: everything that defines one trial, as one frozen, validated dataclass.

`dataclasses.asdict(config)` is what goes into every result row, so every choice the paper
leaves open is a recorded field here, never a silent constant in the code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from aae_core import datasets, priors, variants
from bench.parzen import PARZEN_SIGMAS, parzen_sigma_grid

PROFILES = ("smoke", "quick", "long", "paper")
VARIANTS = tuple(variants.VARIANTS)
# Priors on z; the categorical prior is the prior on y of the semi-supervised family.
PRIORS = tuple(p for p in priors.PRIORS if p != "categorical")
DATASETS = tuple(datasets.DATASETS)
# Which priors on z each variant can use: derived from aae_core.variants (`Variant.priors`).
VARIANT_PRIORS = {v.name: v.priors for v in variants.VARIANTS.values()}
# Defaults of fields that apply to some priors or variants only; None elsewhere, so other trial
# ids stay. The variants' own fields and defaults are on their records (`Variant.fields`).
MIXTURE_DEFAULTS = dict(mixture_radius=1.4, mixture_std_radial=0.5, mixture_std_tangential=0.05)
VARIANT_FIELDS = tuple(dict.fromkeys(name for v in variants.VARIANTS.values() for name in v.fields))
PARZEN_FIELDS = ("parzen_samples", "parzen_validation", "parzen_test", "parzen_sigmas", "parzen_samples_large",
                 "parzen_sigmas_large")
PRECISIONS = ("no", "bf16")
RECON_REDUCTIONS = ("sum", "mean")
# The alternatives of the sensitivity study (bench/sensitivity.py). Each field's None is our
# default, and its default's name is accepted too and stored as None (one computation, one
# trial id): (field, the default's name, the alternatives).
ALTERNATIVES = (
    ("disc_loss", "joined-mean", ("sum-of-means",)),
    ("denoise_target", "clean", ("noisy",)),
    ("init", "normal", ("pytorch",)),
)


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the valid choices."""


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, valid))}; got {value!r}")


@dataclass(frozen=True)
class TrialConfig:
    # -- what is studied --------------------------------------------------------------
    grid: str
    """The grid (paper table or figure) that asked for this trial, e.g. "table1" (a label: not
    part of the trial id, see LABEL_FIELDS)."""
    profile: str
    """Scale: "smoke" (seconds, tests), "quick" (minutes on a laptop CPU), "paper" (the paper's).
    A label too: the fields it sets are what the trial id sees."""
    seed: int
    """Seeds init, data order and prior draws (three streams derived from it)."""
    variant: str = "unsupervised"
    """Which model of the paper (aae_core.variants.VARIANTS)."""
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
    disc_loss: str | None = None
    """Discriminator loss. None ("joined-mean", ours): one binary cross-entropy mean over the
    joined batch of B prior draws and B codes; "sum-of-means": the mean over the draws plus the
    mean over the codes (twice ours for equal halves, i.e. a doubled discriminator step).
    PAPER-GAP: the paper does not state it."""
    init: str | None = None
    """Weight initialisation. None ("normal", ours): weights ~ N(0, init_std^2), biases 0;
    "pytorch": nn.Linear's default (weights kaiming-uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)),
    biases U(+-1/sqrt(fan_in))), drawn per seed from its init stream. PAPER-GAP: the appendix's
    initialisation is known to us through third-party readings only."""
    train_examples: int = 0
    """Use only the first N training examples (0 = the whole training split). Smoke runs only."""
    precision: str = "no"
    """Accelerate mixed precision: "no" (fp32, the default; the CLI's `--precision fp32`) or
    "bf16": every GEMM of the models in bf16 on a bf16 copy of the weights cast once per
    optimizer step (aae_core.seeds.SeedLinear), while losses, master weights and optimizer
    state stay fp32; the final evaluations (Parzen included) run the fp32 weights in fp32 (the
    per-epoch validation pass of model selection runs through the prepared, autocast model).
    fp16 is refused: on CPU Accelerate silently runs it in fp32. Part of the trial id, as
    every field."""

    # -- variant-specific (None = does not apply to this variant) ------------------------
    fold: int | None = None
    """Retired (#14): always None. A TFD trial trains on TFD's unlabelled images, the same for
    every fold, and is scored on all 5 folds (rows parzen_ll_fold0..4, parzen_ll = their mean),
    so no config picks a fold. Kept as a field until bench/cli.py, bench/runner.py and
    bench/artifacts.py stop reading `config.fold`; None leaves every trial id as it was."""
    labels: int | None = None
    """Labelled training examples (class-balanced, seeded, from the training split only):
    semi-supervised and dim-reduction (100, 1000; 0 = every training label), label-regularized
    (Fig. 4: 10,000). None for variants that see no labels (supervised sees them all)."""
    clusters: int | None = None
    """Number of clusters K: clustering (Table 3: 16, 30) and unsupervised dim-reduction (20)."""
    mixture_radius: float | None = None
    """Mixture prior: radius of the circle of centres. PAPER-GAP: public AAE code uses 1.4."""
    mixture_std_radial: float | None = None
    """Mixture prior: std along the radius. PAPER-GAP: public AAE code uses 0.5."""
    mixture_std_tangential: float | None = None
    """Mixture prior: std across the radius. PAPER-GAP: public AAE code uses 0.05."""
    input_noise_std: float | None = None
    """Gaussian noise on the encoder input (semi-supervised family; the issue's reading: 0.3)."""
    denoise_target: str | None = None
    """What the decoder reconstructs when the encoder's input is noisy: None ("clean", ours)
    the clean image, "noisy" the noisy input itself. PAPER-GAP: the paper does not say.
    Only where the variant takes input noise (the semi-supervised family)."""
    classification_lr: float | None = None
    """Classification-phase SGD learning rate. PAPER-GAP: not known to us; 0.1."""
    classification_momentum: float | None = None
    """Classification-phase SGD momentum. PAPER-GAP: not known to us; 0.9."""
    head_threshold: float | None = None
    """Dim-reduction: cluster heads closer than this are pushed apart. PAPER-GAP: 3.0."""
    head_penalty: float | None = None
    """Dim-reduction: weight of that push. PAPER-GAP: 1.0."""
    head_init_std: float | None = None
    """Dim-reduction: cluster heads start ~ N(0, head_init_std^2). PAPER-GAP: 1.0."""

    # -- evaluation -------------------------------------------------------------------
    parzen_samples: int | None = 10_000
    """Generated samples in the Parzen window (Table 1's 10K column)."""
    parzen_validation: int | None = 1_000
    """Validation images used to choose sigma: the first N of the validation split, 0 = all of it
    (GAN paper protocol: 1,000 on MNIST; on TFD each fold's whole validation split, so Table 1's
    TFD cell sets 0, and N applies to each fold's split)."""
    parzen_test: int | None = 0
    """Test images scored (0 = the whole test split, 10,000 for MNIST; TFD: of each fold's)."""
    parzen_sigmas: tuple[float, ...] | None = field(default=PARZEN_SIGMAS)
    """Candidate window widths (GAN paper protocol: numpy.logspace(-1, 0, 10))."""
    parzen_samples_large: int | None = None
    """Samples for Table 1's 10M column (None: not computed). Streamed in chunks, so memory stays
    bounded; sigma is chosen again on the validation images with as many samples."""
    parzen_sigmas_large: tuple[float, ...] | None = None
    """Candidate window widths for the 10M column; filled with
    bench.parzen.parzen_sigma_grid(parzen_samples_large) (0.01 to 1, 19 widths) when that column
    is computed, None when it is not (so configs without the column keep their trial ids).
    PAPER-GAP: neither paper gives the 10M column's grid; the best sigma shrinks with the sample
    count (0.169 at 10K, 0.151 at 50K on real MNIST), so the protocol's grid, which stops at 0.1,
    goes on down a decade with the same log step (bench/parzen.py)."""

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILES)
        _choice("variant", self.variant, VARIANTS)
        _choice("prior", self.prior, PRIORS)
        _choice("dataset", self.dataset, DATASETS)
        _choice(f"prior for variant {self.variant}", self.prior, variants.variant(self.variant).priors)
        self._fill_variant_defaults()
        self._check_variant()
        _choice("precision", self.precision, PRECISIONS)
        _choice("recon_reduction", self.recon_reduction, RECON_REDUCTIONS)
        self._check_alternatives()
        def given(names):
            return [n for n in names if getattr(self, n) is not None]

        for name in given(["z_dim", "hidden_units", "hidden_layers", "epochs", "batch_size",
                           "parzen_samples", "parzen_samples_large"]):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        for name in given(["seed", "train_examples", "parzen_validation", "parzen_test"]):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        for name in given(["prior_std", "init_std", "recon_lr", "adv_lr", "mixture_radius",
                           "mixture_std_radial", "mixture_std_tangential", "classification_lr",
                           "head_threshold", "head_init_std"]):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)!r}")
        for name in given(["input_noise_std", "head_penalty"]):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        for name in given(["recon_momentum", "adv_momentum", "classification_momentum"]):
            if not 0 <= float(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {getattr(self, name)!r}")
        if len(self.lr_decay_epochs) != len(self.lr_decay_factors):
            raise ConfigError("lr_decay_epochs and lr_decay_factors must have the same length")
        for name in given(["parzen_sigmas", "parzen_sigmas_large"]):
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be a non-empty list of positive widths")
        self._fill_parzen_large()

    def _fill_parzen_large(self) -> None:
        # The 10M column's grid follows its sample count unless given; without the column there
        # is no grid (a dataclasses.replace that drops the column drops its grid too).
        if self.parzen_samples_large is None:
            object.__setattr__(self, "parzen_sigmas_large", None)
        elif self.parzen_sigmas_large is None:
            grid = parzen_sigma_grid(int(self.parzen_samples_large))
            object.__setattr__(self, "parzen_sigmas_large", grid)

    def _check_alternatives(self) -> None:
        for name, default, alternatives in ALTERNATIVES:
            value = getattr(self, name)
            if value == default:  # our default by its name: the same trial as None
                object.__setattr__(self, name, None)
            elif value is not None:
                _choice(name, value, (default, *alternatives))
        if self.denoise_target is not None and self.input_noise_std is None:
            raise ConfigError(f"denoise_target does not apply to variant {self.variant} "
                              "(it takes no input noise)")

    def _fill_variant_defaults(self) -> None:
        # Frozen: defaults that depend on the variant are set once, here, so rows record them.
        record = variants.variant(self.variant)

        def fill(defaults: dict, applies: bool) -> None:
            for name, value in defaults.items():
                current = getattr(self, name)
                if applies and current is None:
                    object.__setattr__(self, name, value)
                elif not applies and current is not None:
                    raise ConfigError(f"{name} does not apply to variant {self.variant} "
                                      f"with prior {self.prior}")

        fill(MIXTURE_DEFAULTS, self.prior == "mixture")
        fill(dict(record.fields), True)
        fill({name: None for name in VARIANT_FIELDS if name not in record.fields}, False)
        if record.evaluation != "parzen":
            for name in PARZEN_FIELDS:
                object.__setattr__(self, name, None)

    def _check_variant(self) -> None:
        v, record = self.variant, variants.variant(self.variant)
        if self.prior in ("mixture", "swiss-roll") and self.z_dim != 2:
            raise ConfigError(f"prior {self.prior} is 2-D: z_dim must be 2; got {self.z_dim}")
        if record.needs == "labels" and self.labels is None:
            raise ConfigError(f"variant {v} needs labels (a count, e.g. 100; 0 = all)")
        if record.needs == "clusters" and self.clusters is None:
            raise ConfigError(f"variant {v} needs clusters (e.g. 16)")
        if record.needs == "labels-or-clusters" and (self.labels is None) == (self.clusters is None):
            raise ConfigError(f"variant {v} needs exactly one of labels or clusters")
        if not record.takes_labels and self.labels is not None:
            raise ConfigError(f"labels does not apply to variant {v}")
        if not record.takes_clusters and self.clusters is not None:
            raise ConfigError(f"clusters does not apply to variant {v}")
        if self.fold is not None:
            raise ConfigError(f"fold is retired: a TFD trial trains on the unlabelled images and is "
                              f"scored on all 5 folds; got fold={self.fold!r} (leave it None)")
        if self.labels is not None and self.labels < 0:
            raise ConfigError(f"labels must be >= 0 (0 = all); got {self.labels}")
        if self.clusters is not None and self.clusters < 2:
            raise ConfigError(f"clusters must be >= 2; got {self.clusters}")

    @property
    def hidden(self) -> list[int]:
        return [self.hidden_units] * self.hidden_layers

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def trial_id(self) -> str:
        """Stable hash of what the trial computes: every field but LABEL_FIELDS (grids grow
        without renaming existing trials, and two grids asking for one config share its trial)."""
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


# Fields that say who asked for a trial, not what it computes: the grid that lists it and the
# profile it was asked at. They are left out of the trial id, so that a figure grid asking for a
# table's config (figure9 / table3, figure11 / dim_reduction) finds that trial done, with its rows
# and artifacts. A profile changes the numbers only through the fields it sets (epochs,
# train_examples, the Parzen sizes), which are in the id: two configs equal in every other field
# compute the same numbers, whichever profile named them.
LABEL_FIELDS = ("grid", "profile")


def config_hash(values: dict) -> str:
    """Hash of the config, without its LABEL_FIELDS. Fields set to None ("does not apply") are
    left out, so that a field added later with a None default leaves the ids of existing
    trials, and their rows, valid."""
    values = {k: v for k, v in values.items() if v is not None and k not in LABEL_FIELDS}
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
