import dataclasses

import pytest

from bench.config import PARZEN_SIGMAS, ConfigError, TrialConfig, config_from_dict
from bench.grids import GRIDS, grid_configs


def make(**overrides) -> TrialConfig:
    return TrialConfig(**{"grid": "table1", "profile": "smoke", "seed": 0, **overrides})


def test_trial_id_is_stable_and_depends_on_every_field():
    base = make()
    assert base.trial_id == make().trial_id
    assert len(base.trial_id) == 16
    for f in dataclasses.fields(TrialConfig):
        value = getattr(base, f.name)
        if isinstance(value, bool) or f.name in ("grid", "profile", "variant", "prior", "dataset",
                                                  "precision", "recon_reduction"):
            continue
        if value is None:
            continue  # does not apply to this variant (tested below)
        if f.name.startswith("lr_decay"):
            continue  # the pair must keep equal lengths; covered below
        if isinstance(value, tuple):
            changed = value[:-1] if len(value) > 1 else value * 2
        elif isinstance(value, float):
            changed = value / 2
        else:
            changed = value + 1
        other = dataclasses.replace(base, **{f.name: changed})
        assert other.trial_id != base.trial_id, f.name
    assert dataclasses.replace(base, lr_decay_factors=(0.2, 0.01)).trial_id != base.trial_id


def test_trial_id_pinned():
    # A regression pin: trial ids name rows already committed in results/; a change here
    # orphans them (the next run would redo those trials).
    assert [c.trial_id for c in grid_configs("table1", "quick", 3, ("mnist",))] == [
        "7dca3f8eaf75763a", "a6e6c28a5578d680", "3977fcecda7ea7d7"]  # #14 part 3: no grid, profile
    assert config_from_dict(make(seed=2).as_dict()).trial_id == make(seed=2).trial_id


def test_fields_set_to_none_do_not_change_the_id():
    from bench.config import config_hash

    values = make().as_dict()
    assert config_hash({**values, "added_later": None}) == config_hash(values)
    assert config_hash({**values, "added_later": 3}) != config_hash(values)


def test_parzen_sigmas_are_the_protocol_grid():
    assert len(PARZEN_SIGMAS) == 10
    assert PARZEN_SIGMAS[0] == pytest.approx(0.1)
    assert PARZEN_SIGMAS[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("field,value,words", [
    ("profile", "huge", "smoke, quick, long, paper"),
    ("variant", "nope", "unsupervised"),
    ("prior", "uniform", "gaussian"),
    ("precision", "fp16", "no, bf16"),
    ("seed", -1, ">= 0"),
    ("epochs", 0, ">= 1"),
    ("recon_lr", 0.0, "> 0"),
    ("adv_momentum", 1.0, "[0, 1)"),
])
def test_bad_values_get_one_line_naming_valid_choices(field, value, words):
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    message = str(info.value)
    assert "\n" not in message
    assert field in message and words in message


def test_roundtrip_through_dict_and_id_check():
    config = make(seed=3, lr_decay_epochs=(5,), lr_decay_factors=(0.5,))
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in config.as_dict().items()}
    assert config_from_dict(values) == config
    with pytest.raises(ConfigError, match="does not match"):
        config_from_dict({**values, "trial_id": "0" * 16})
    with pytest.raises(ConfigError, match="unknown config fields: bogus"):
        config_from_dict({**values, "bogus": 1})


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("profile", ["smoke", "quick", "long", "paper"])
def test_every_grid_builds_distinct_trials(grid, profile):
    configs = grid_configs(grid, profile, 3)
    assert len({c.trial_id for c in configs}) == len(configs)
    assert [c.seed for c in configs][:3] == [0, 1, 2]
    # growing the seeds keeps the earlier trial ids
    assert {c.trial_id for c in configs} <= {c.trial_id for c in grid_configs(grid, profile, 5)}


def test_grid_rejects_bad_names():
    with pytest.raises(ConfigError, match="valid: table1"):
        grid_configs("table9", "smoke", 1)
    with pytest.raises(ConfigError, match="smoke, quick, long, paper"):
        grid_configs("table1", "medium", 1)
    with pytest.raises(ConfigError, match="--seeds"):
        grid_configs("table1", "smoke", -2)


def test_table1_is_the_paper_cell():
    config, tfd = grid_configs("table1", "paper", 1)
    # one TFD model per seed, trained on the unlabelled images and scored on every fold
    assert tfd.dataset == "tfd" and tfd.fold is None and tfd.parzen_validation == 0
    assert config.parzen_samples_large == 10_000_000
    assert (config.variant, config.dataset, config.prior) == ("unsupervised", "mnist", "gaussian")
    assert (config.z_dim, config.prior_std, config.hidden_units, config.hidden_layers) == (8, 5.0, 1000, 2)
    assert (config.recon_lr, config.recon_momentum, config.adv_lr, config.adv_momentum) == (0.01, 0.9, 0.1, 0.1)
    assert config.batch_size == 100 and config.init_std == 0.01
    assert config.parzen_samples == 10_000 and config.parzen_validation == 1_000
    assert config.train_examples == 0 and config.parzen_test == 0


@pytest.mark.parametrize("overrides,words", [
    (dict(variant="semi-supervised"), "needs labels"),
    (dict(variant="clustering"), "needs clusters"),
    (dict(variant="dim-reduction"), "exactly one of labels or clusters"),
    (dict(variant="dim-reduction", labels=100, clusters=20), "exactly one of labels or clusters"),
    (dict(variant="unsupervised", prior="mixture"), "z_dim must be 2"),
    (dict(variant="semi-supervised", prior="mixture", labels=100), "prior for variant semi-supervised"),
    (dict(variant="vae", prior="swiss-roll", z_dim=2), "prior for variant vae"),
    (dict(variant="unsupervised", labels=100), "labels does not apply"),
    (dict(variant="unsupervised", head_penalty=1.0), "head_penalty does not apply"),
    (dict(variant="clustering", clusters=1), "clusters must be >= 2"),
])
def test_impossible_combinations_are_refused(overrides, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        make(**overrides)


def test_variant_defaults_are_filled_and_recorded():
    semi = make(variant="semi-supervised", labels=100, z_dim=10)
    assert semi.input_noise_std == 0.3 and semi.classification_lr is not None
    assert semi.parzen_samples is None and semi.head_threshold is None
    mix = make(prior="mixture", z_dim=2)
    assert (mix.mixture_radius, mix.mixture_std_radial, mix.mixture_std_tangential) == (1.4, 0.5, 0.05)
    assert make(variant="dim-reduction", clusters=20, z_dim=2).head_threshold is not None
    # rebuilt from its row, a filled-in config has the same id
    assert config_from_dict(semi.as_dict()).trial_id == semi.trial_id


def test_long_profile_is_the_paper_schedule_cut_at_100_epochs():
    long, paper = grid_configs("table2", "long", 1)[0], grid_configs("table2", "paper", 1)[0]
    assert long.epochs == 100
    # the schedule is the paper profile's, and its first step (epoch 50) falls inside the run
    assert (long.lr_decay_epochs, long.lr_decay_factors) == (paper.lr_decay_epochs, paper.lr_decay_factors)
    assert 0 < long.lr_decay_epochs[0] < long.epochs
    # the 10M-sample Parzen column stays a paper-profile measurement
    assert all(c.parzen_samples_large is None for c in grid_configs("table1", "long", 1))
