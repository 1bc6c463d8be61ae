"""The unsupervised AAE and its training phases, on small synthetic data (fast)."""

import math

import pytest
import torch
from accelerate import Accelerator

from aae_core import model, priors, training


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def build(seed=0, z_dim=4, hidden=(32, 32)):
    streams = training.RandomStreams.from_seed(seed)
    torch.manual_seed(streams.init)
    aae = model.UnsupervisedAAE((1, 6, 6), z_dim, list(hidden), 0.1)
    opts = training.make_optimizers("unsupervised", aae, training.SGD(0.01, 0.9), training.SGD(0.1, 0.1))
    gens = training.generator(streams.data), training.generator(streams.prior)
    return aae, opts, gens


def context(accelerator, aae, opts, gp, prior=None):
    return training.StepContext(accelerator, aae, opts, {"z": prior or priors.Gaussian(4, 5.0)},
                                training.PhaseSettings(), gp, training.generator(0))


def data(n=64, seed=123):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def run_epochs(accelerator, seed, epochs=2, x=None):
    aae, opts, (gd, gp) = build(seed)
    x = data() if x is None else x
    ctx = context(accelerator, aae, opts, gp)
    return [training.train_epoch(ctx, "unsupervised", training.TrainingData(x), batch_size=16,
                                 data_generator=gd, epoch=e)
            for e in range(epochs)]


def test_shapes():
    aae, _, _ = build()
    x = data(5)
    z = aae.encoder(x)
    assert z.shape == (5, 4)
    assert aae.decoder(z).shape == (5, 1, 6, 6)
    assert aae.discriminator(z).shape == (5,)
    out = aae.decoder(z).detach()
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_init_follows_init_std():
    torch.manual_seed(0)
    net = model.mlp([500, 400, 3], init_std=0.01)
    weights = net[0].weight.detach()
    assert abs(float(weights.std()) - 0.01) < 0.0005
    assert float(net[0].bias.detach().abs().max()) == 0.0


def test_same_seed_gives_bitwise_identical_losses(accelerator):
    a = run_epochs(accelerator, seed=7)
    b = run_epochs(accelerator, seed=7)
    c = run_epochs(accelerator, seed=8)
    hexes = lambda runs: [float(v).hex() for r in runs for v in r.values()]  # noqa: E731
    assert hexes(a) == hexes(b)
    assert hexes(a) != hexes(c)


def test_random_streams_are_independent_and_seeded():
    s0, s1 = training.RandomStreams.from_seed(0), training.RandomStreams.from_seed(1)
    assert s0 == training.RandomStreams.from_seed(0)
    assert len({s0.init, s0.data, s0.prior, s0.evaluation}) == 4
    assert s0 != s1


def test_each_phase_updates_only_its_networks(accelerator):
    aae, opts, (_, gp) = build()
    prior = priors.Gaussian(4, 5.0)
    x = data(16)
    snapshot = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    changed = lambda before, m: any(not torch.equal(b, p) for b, p in zip(before, m.parameters(), strict=True))  # noqa: E731

    enc, dec, disc = snapshot(aae.encoder), snapshot(aae.decoder), snapshot(aae.discriminator)
    training._update(accelerator, opts["reconstruction"],
                     lambda: training.reconstruction_loss(aae.reconstruct(x), x, "sum"))
    assert changed(enc, aae.encoder) and changed(dec, aae.decoder)
    assert not changed(disc, aae.discriminator)

    enc, dec, disc = snapshot(aae.encoder), snapshot(aae.decoder), snapshot(aae.discriminator)
    with torch.no_grad():
        fake = aae.code(x)
    training.discriminator_phase(accelerator, opts["discriminator"], [aae.discriminator],
                                 [prior.sample(16, gp)], [fake])
    assert changed(disc, aae.discriminator)
    assert not changed(enc, aae.encoder) and not changed(dec, aae.decoder)

    enc, disc = snapshot(aae.encoder), snapshot(aae.discriminator)
    training.generator_phase(accelerator, opts["generator"], [aae.discriminator], lambda: [aae.code(x)])
    assert changed(enc, aae.encoder)
    assert not changed(disc, aae.discriminator) and not changed(dec, aae.decoder)


def test_discriminator_learns_prior_from_codes(accelerator):
    """Known answer: with the encoder frozen, D separates N(0, 25 I) from near-zero codes."""
    aae, opts, (_, gp) = build()
    prior = priors.Gaussian(4, 5.0)
    x = data(64)
    for _ in range(200):
        z_real = prior.sample(64, gp)
        with torch.no_grad():
            z_fake = aae.encoder(x)
        opts["discriminator"].zero_grad()
        logits = aae.discriminator(torch.cat([z_real, z_fake]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.cat([torch.ones(64), torch.zeros(64)]))
        loss.backward()
        opts["discriminator"].step()
    assert float(loss.detach()) < 0.3


def test_reconstruction_loss_reductions():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.ones(2, 1, 2, 2)
    assert float(training.reconstruction_loss(x_hat, x, "sum")) == 4.0
    assert float(training.reconstruction_loss(x_hat, x, "mean")) == 1.0
    with pytest.raises(ValueError, match="mean, sum"):
        training.reconstruction_loss(x_hat, x, "l1")


def test_nan_loss_raises_diverged(accelerator):
    x = data()
    x[3, 0, 0, 0] = math.nan
    with pytest.raises(training.DivergedError, match="non-finite reconstruction loss at epoch 0"):
        run_epochs(accelerator, seed=0, epochs=1, x=x)


def test_step_schedule():
    schedule = training.StepSchedule((50, 1000), (0.1, 0.01))
    assert [schedule.factor(e) for e in (0, 49, 50, 999, 1000, 5000)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    assert training.StepSchedule().factor(10) == 1.0


def test_set_learning_rates():
    aae, opts, _ = build()
    rates = training.base_rates(opts, training.SGD(0.01, 0.9), training.SGD(0.1, 0.1), None)
    training.set_learning_rates(opts, rates, 0.1)
    assert opts["reconstruction"].param_groups[0]["lr"] == pytest.approx(0.001)
    assert opts["discriminator"].param_groups[0]["lr"] == pytest.approx(0.01)
    assert opts["generator"].param_groups[0]["lr"] == pytest.approx(0.01)


def test_gaussian_prior_moments_and_seed():
    prior = priors.Gaussian(8, 5.0)
    a = prior.sample(20000, torch.Generator().manual_seed(1))
    b = prior.sample(20000, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (20000, 8)
    assert abs(float(a.mean())) < 0.05 * 5
    assert abs(float(a.std()) - 5.0) < 0.05
    with pytest.raises(ValueError, match="valid: categorical, gaussian, mixture, swiss-roll"):
        priors.make_prior("laplace", dim=2)
