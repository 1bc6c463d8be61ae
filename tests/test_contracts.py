"""Contract tests over every supported (variant, prior) combination of bench.config.VARIANT_PRIORS:
one smoke epoch each on real MNIST through bench.trial.run_trial, its rows, artifacts and model
outputs; bit-for-bit determinism per variant; and `aae-bench train` in-process.

A combination added to VARIANT_PRIORS is under test the moment it is added; a new variant that
needs labels or clusters fails here until EXTRAS says which.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from aae_core import model, variants
from bench import cli, grids, trial
from bench.config import VARIANT_PRIORS

# The labels / clusters each variant needs (dim-reduction: both ways); the rest need neither.
EXTRAS = {
    "semi-supervised": [dict(labels=100)],
    "label-regularized": [dict(labels=100)],
    "clustering": [dict(clusters=16)],
    "dim-reduction": [dict(labels=100), dict(clusters=20)],
}
# The phases each family trains (train_epoch reports loss_<phase>).
ADVERSARIAL = {"reconstruction", "discriminator", "generator"}


def _cases():
    for variant, priors in VARIANT_PRIORS.items():
        for prior in priors:
            for extra in EXTRAS.get(variant, [{}]):
                tag = "-".join([variant, prior, *(f"{k}{v}" for k, v in extra.items())])
                yield pytest.param(variant, prior, extra, id=tag)


CASES = list(_cases())


def config_for(variant: str, prior: str, extra: dict):
    return grids.single_trial(variant, "mnist", prior, profile="smoke", **extra)


def expected_phases(config) -> set[str]:
    if config.variant == "vae":
        return {"reconstruction"}
    if trial.evaluation_kind(config) == "classification":
        return ADVERSARIAL | {"classification"}
    return set(ADVERSARIAL)


def hexes(rows: list[dict]) -> dict[str, str]:
    return {r["metric"]: float(r["value"]).hex() for r in rows}


# -- one smoke epoch of every combination ---------------------------------------------------


def test_every_variant_and_prior_is_covered():
    """Every model of aae_core has its priors listed, and every listed prior is a case."""
    assert set(VARIANT_PRIORS) == set(variants.VARIANTS)
    assert {(c.values[0], c.values[1]) for c in CASES} == {
        (v, p) for v, priors in VARIANT_PRIORS.items() for p in priors}


def check_outputs(net, config, n_categories: int, x: torch.Tensor) -> None:
    """Shapes of a one-seed model's outputs on a batch (shared by the seeds), by family: every
    output carries the seed dimension (1) first."""
    b, z_dim = len(x), config.z_dim
    with torch.no_grad():
        if isinstance(net, model.VAE):
            mean, logvar = net.posterior(x)
            assert mean.shape == logvar.shape == (1, b, z_dim)
            assert net.code(x).shape == (1, b, z_dim)
        elif isinstance(net, model.SemiSupervisedAAE):
            probs, z = net.code(x)
            assert probs.shape == (1, b, n_categories) and z.shape == (1, b, z_dim)
            torch.testing.assert_close(probs.sum(-1), torch.ones(1, b))
            rep = net.representation(probs, z)
            width = z_dim if isinstance(net, model.DimReductionAAE) else n_categories + z_dim
            assert rep.shape == (1, b, width)
            assert net.discriminator_y(probs).shape == (1, b) and net.discriminator_z(z).shape == (1, b)
            if isinstance(net, model.DimReductionAAE):
                assert net.cluster_heads.shape == (1, n_categories, z_dim)
        else:
            z = net.code(x)
            assert z.shape == (1, b, z_dim)
            if isinstance(net, model.LabelRegularizedAAE):
                tag = model.one_hot_with_unlabelled(torch.full((1, b), -1), n_categories)  # (1, B, K + 1)
                assert net.discriminator(torch.cat([z, tag], -1)).shape == (1, b)
            else:
                assert net.discriminator(z).shape == (1, b)
        labels = torch.arange(b) % n_categories if config.variant == "supervised" else None
        x_hat = net.reconstruct(x, labels)
        assert x_hat.shape == (1, *x.shape)
        assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


@pytest.mark.parametrize("variant,prior,extra", CASES)
def test_smoke_epoch_rows_artifacts_and_outputs(mnist, tmp_path, variant, prior, extra):
    config = config_for(variant, prior, extra)
    assert config.epochs == 1
    rows = trial.run_trial(config, data=mnist, threads=1, artifacts_dir=tmp_path)

    assert rows and {r["status"] for r in rows} == {"done"}
    values = {r["metric"]: r["value"] for r in rows}
    primary = trial.primary_metric(config)
    assert primary in values and math.isfinite(values[primary])
    losses = {m[len("loss_"):]: v for m, v in values.items() if m.startswith("loss_")}
    assert set(losses) == expected_phases(config)
    assert all(math.isfinite(v) for v in losses.values()), losses

    directory = tmp_path / config.trial_id
    latents = np.load(directory / "latents.npz")
    assert latents["z"].shape == (10_000, config.z_dim) and latents["z"].dtype == np.float32
    np.testing.assert_array_equal(latents["y"], mnist.test_y)
    assert np.all(np.isfinite(latents["z"]))
    state = torch.load(directory / "model.pt", weights_only=True)
    assert all(v.shape[0] == 1 for v in state.values())  # a one-seed model

    parts = trial.build(config, mnist)  # a fresh model of the config takes the saved weights
    parts.net.load_state_dict(state, strict=True)
    parts.net.eval()
    check_outputs(parts.net, config, parts.n_classes, torch.from_numpy(mnist.test_x[:5]))
    if isinstance(parts.net, model.SemiSupervisedAAE):
        assert latents["y_probs"].shape == (10_000, parts.n_classes)
        np.testing.assert_allclose(latents["y_probs"].sum(1), 1.0, atol=1e-5)
        width = config.z_dim if variant == "dim-reduction" else parts.n_classes + config.z_dim
        assert latents["representation"].shape == (10_000, width)
        with torch.no_grad():  # the saved codes are the saved model's codes
            _, z = parts.net.code(torch.from_numpy(mnist.test_x[:5]))
    else:
        with torch.no_grad():
            z = parts.net.code(torch.from_numpy(mnist.test_x[:5]))
    np.testing.assert_allclose(latents["z"][:5], z[0].numpy(), rtol=1e-4, atol=1e-5)


# -- determinism ----------------------------------------------------------------------------


def _first_case_per_variant():
    seen = set()
    for case in CASES:
        if case.values[0] not in seen:
            seen.add(case.values[0])
            yield pytest.param(*case.values, id=case.values[0])


@pytest.mark.parametrize("variant,prior,extra", list(_first_case_per_variant()))
def test_same_config_twice_bit_identical_rows(mnist, variant, prior, extra):
    """Cheap: the smoke config with 32 hidden units on 1,000 training images. Every metric,
    losses included, must agree to the last bit; another seed must change the losses."""
    config = dataclasses.replace(config_for(variant, prior, extra), hidden_units=32,
                                 train_examples=1000)
    a = hexes(trial.run_trial(config, data=mnist, threads=1))
    b = hexes(trial.run_trial(config, data=mnist, threads=1))
    assert a == b
    c = hexes(trial.run_trial(dataclasses.replace(config, seed=1), data=mnist, threads=1))
    assert set(c) == set(a)
    assert all(c[m] != a[m] for m in a if m.startswith("loss_"))


# -- the command line -----------------------------------------------------------------------


def test_cli_train_json(capsys, tmp_path, mnist_dir):
    out = tmp_path / "runs"
    code = cli.main(["train", "--variant", "vae", "--profile", "smoke", "--threads", "1",
                     "--data-dir", str(mnist_dir), "--out", str(out), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    summary = json.loads(lines[0])
    config = grids.single_trial("vae", "mnist", "gaussian", profile="smoke")
    assert summary["trial_id"] == config.trial_id
    assert summary["status"] == "done" and summary["variant"] == "vae"
    assert math.isfinite(summary["metrics"][trial.primary_metric(config)])
    assert (out / config.trial_id / "latents.npz").exists()


@pytest.mark.parametrize("args,words", [
    (["--variant", "semi-supervised"], ["semi-supervised", "labels"]),
    (["--variant", "label-regularized", "--prior", "mixture"], ["label-regularized", "labels"]),
    (["--variant", "clustering"], ["clustering", "clusters"]),
    (["--variant", "dim-reduction", "--labels", "100", "--clusters", "20"], ["labels", "clusters"]),
    (["--variant", "gan"], ["'gan'", *variants.VARIANTS]),
    (["--variant", "vae", "--prior", "swiss-roll"], ["swiss-roll", *VARIANT_PRIORS["vae"]]),
    (["--variant", "supervised", "--prior", "mixture"], ["mixture", *VARIANT_PRIORS["supervised"]]),
    (["--variant", "unsupervised", "--prior", "laplace"], ["laplace", *VARIANT_PRIORS["unsupervised"]]),
], ids=["semi-no-labels", "labelreg-no-labels", "clustering-no-clusters", "dimred-both",
        "unknown-variant", "vae-swiss-roll", "supervised-mixture", "unknown-prior"])
def test_cli_train_impossible_combination_exit_2_one_line(capsys, tmp_path, args, words):
    """Refused before any data is read (the data directory is empty) or anything is written."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "runs"
    code = cli.main(["train", *args, "--profile", "smoke", "--data-dir", str(empty),
                     "--out", str(out), "--json"])
    stdout, stderr = capsys.readouterr()
    assert code == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr and "missing" not in stderr
    assert all(w in stderr for w in words), stderr
    assert not out.exists()
