"""The unsupervised AAE and its training phases, on small synthetic data (fast); and the seed
dimension: each seed of a seed-batched model has its own weights, losses and divergence, and
trains as it does alone."""

import math

import pytest
import torch
from accelerate import Accelerator

from aae_core import priors, training, variants
from aae_core.seeds import SeedLinear, initialise, masked_step, mlp

UNSUPERVISED = variants.VARIANTS["unsupervised"].step


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def build(*seeds, z_dim=4, hidden=(32, 32)):
    """An unsupervised AAE holding `seeds` (default: seed 0 alone), its optimizers, and each
    seed's data and prior generators, as run_trial derives them."""
    streams = [training.RandomStreams.from_seed(s) for s in seeds or (0,)]
    aae = variants.build("unsupervised", (1, 6, 6), z_dim, list(hidden), init_std=0.1,
                         init_seeds=[s.init for s in streams])
    opts = training.make_optimizers(aae, training.SGD(0.01, 0.9), training.SGD(0.1, 0.1))
    gens = [training.generator(s.data) for s in streams], [training.generator(s.prior) for s in streams]
    return aae, opts, gens


def context(accelerator, aae, opts, gps, prior=None):
    return training.StepContext(accelerator, aae, opts, {"z": prior or priors.Gaussian(4, 5.0)},
                                training.PhaseSettings(), gps, [training.generator(0) for _ in gps])


def data(n=64, seed=123):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def run_epochs(accelerator, seed, epochs=2, x=None):
    """Per-epoch losses of one seed trained alone."""
    aae, opts, (gds, gps) = build(seed)
    x = data() if x is None else x
    ctx = context(accelerator, aae, opts, gps)
    return [training.train_epoch(ctx, UNSUPERVISED, training.TrainingData(x), batch_size=16,
                                 data_generators=gds, epoch=e)[0]
            for e in range(epochs)]


def hexes(per_epoch: list[dict]) -> list[str]:
    return [float(v).hex() for losses in per_epoch for v in losses.values()]


def test_shapes():
    aae, _, _ = build()
    x = data(5)
    z = aae.encoder(x)  # an input without the seed dimension is shared by every seed
    assert z.shape == (1, 5, 4)
    assert aae.decoder(z).shape == (1, 5, 1, 6, 6)
    assert aae.discriminator(z).shape == (1, 5)
    out = aae.decoder(z).detach()
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    pair, _, _ = build(0, 1)  # two seeds: each its own slice of every tensor
    assert pair.encoder.net[0].weight.shape == (2, 32, 36) and pair.encoder.net[0].bias.shape == (2, 32)
    z2 = pair.encoder(torch.stack([x, data(5, seed=9)]))
    assert z2.shape == (2, 5, 4)
    assert pair.decoder(z2).shape == (2, 5, 1, 6, 6) and pair.discriminator(z2).shape == (2, 5)
    assert pair.encoder(x).shape == (2, 5, 4)


def test_init_follows_init_std():
    net = mlp([500, 400, 3], seeds=2)
    initialise(net, [0, 1], init_std=0.01)
    weights = net[0].weight.detach()
    assert weights.shape == (2, 400, 500) and net[0].bias.shape == (2, 400)
    for k in range(2):
        assert abs(float(weights[k].std()) - 0.01) < 0.0005
    assert not torch.equal(weights[0], weights[1])  # each seed its own draw
    assert float(net[0].bias.detach().abs().max()) == 0.0


def test_same_seed_gives_bitwise_identical_losses(accelerator):
    a = run_epochs(accelerator, seed=7)
    b = run_epochs(accelerator, seed=7)
    c = run_epochs(accelerator, seed=8)
    assert hexes(a) == hexes(b)
    assert hexes(a) != hexes(c)


def test_random_streams_are_independent_and_seeded():
    s0, s1 = training.RandomStreams.from_seed(0), training.RandomStreams.from_seed(1)
    assert s0 == training.RandomStreams.from_seed(0)
    assert len({s0.init, s0.data, s0.prior, s0.evaluation}) == 4
    assert s0 != s1


def test_each_phase_updates_only_its_networks(accelerator):
    aae, opts, (_, gps) = build()
    ctx = context(accelerator, aae, opts, gps)
    x = data(16)[None]  # (S=1, B, ...)
    snapshot = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    changed = lambda before, m: any(not torch.equal(b, p) for b, p in zip(before, m.parameters(), strict=True))  # noqa: E731

    enc, dec, disc = snapshot(aae.encoder), snapshot(aae.decoder), snapshot(aae.discriminator)
    loss = masked_step(ctx, opts["reconstruction"], training.reconstruction_loss(aae.reconstruct(x), x, "sum"))
    assert loss.shape == (1,)
    assert changed(enc, aae.encoder) and changed(dec, aae.decoder)
    assert not changed(disc, aae.discriminator)

    enc, dec, disc = snapshot(aae.encoder), snapshot(aae.decoder), snapshot(aae.discriminator)
    with torch.no_grad():
        fake = aae.code(x)
    loss = masked_step(ctx, opts["discriminator"], training.discriminator_loss(
        [aae.discriminator], [training.sample_prior(ctx, "z", 16, "cpu")], [fake]))
    assert loss.shape == (1,)
    assert changed(disc, aae.discriminator)
    assert not changed(enc, aae.encoder) and not changed(dec, aae.decoder)

    enc, disc = snapshot(aae.encoder), snapshot(aae.discriminator)
    loss = masked_step(ctx, opts["generator"], training.generator_loss([aae.discriminator], [aae.code(x)]))
    assert loss.shape == (1,)
    assert changed(enc, aae.encoder)
    assert not changed(disc, aae.discriminator) and not changed(dec, aae.decoder)


def test_discriminator_learns_prior_from_codes(accelerator):
    """Known answer: with the encoder frozen, D separates N(0, 25 I) from near-zero codes."""
    aae, opts, (_, (gp,)) = build()
    prior = priors.Gaussian(4, 5.0)
    x = data(64)
    for _ in range(200):
        z_real = prior.sample(64, gp)[None]  # (1, 64, 4)
        with torch.no_grad():
            z_fake = aae.encoder(x)  # (1, 64, 4)
        opts["discriminator"].zero_grad()
        logits = aae.discriminator(torch.cat([z_real, z_fake], 1))  # (1, 128)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.cat([torch.ones(64), torch.zeros(64)])[None])
        loss.backward()
        opts["discriminator"].step()
    assert float(loss.detach()) < 0.3


def test_reconstruction_loss_reductions():
    x = torch.zeros(2, 3, 1, 2, 2)  # (S, B, C, H, W)
    x_hat = torch.ones(2, 3, 1, 2, 2)
    x_hat[1] = 2.0  # the second seed: 4 per pixel
    assert training.reconstruction_loss(x_hat, x, "sum").tolist() == [4.0, 16.0]
    assert training.reconstruction_loss(x_hat, x, "mean").tolist() == [1.0, 4.0]
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


# -- the seed dimension ----------------------------------------------------------------------


def test_seed_linear_slices_are_independent():
    layer = SeedLinear(5, 3, seeds=2)
    initialise(layer, [0, 1], init_std=1.0)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(2, 3, generator=training.generator(1)))
    x = torch.randn(2, 4, 5, generator=training.generator(2))  # (S, B, in)
    out = layer(x)
    assert out.shape == (2, 4, 3)
    for k in range(2):
        torch.testing.assert_close(out[k], torch.nn.functional.linear(x[k], layer.weight[k], layer.bias[k]))
        single = SeedLinear(5, 3, seeds=1)  # seed k alone: the same bits
        with torch.no_grad():
            single.weight.copy_(layer.weight[k:k + 1])
            single.bias.copy_(layer.bias[k:k + 1])
        assert torch.equal(single(x[k:k + 1])[0], out[k])
    # A shared input (B, in) is seen by every seed.
    assert torch.equal(layer(x[0]), layer(x[0].expand(2, 4, 5)))

    # Changing seed 1's weights (even to non-finite values) leaves seed 0's output as it was.
    with torch.no_grad():
        layer.weight[1].add_(1.0)
        layer.bias[1].fill_(math.inf)
        changed = layer(x)
    assert torch.equal(changed[0], out[0])
    assert not torch.equal(changed[1], out[1])
    with torch.no_grad():
        layer.weight[1].fill_(math.nan)
        assert torch.equal(layer(x)[0], out[0])

    # Seed 0's loss gives no gradient to seed 1's weights.
    layer.zero_grad()
    layer(x)[0].sum().backward()
    assert float(layer.weight.grad[0].abs().max()) > 0
    assert float(layer.weight.grad[1].abs().max()) == 0 and float(layer.bias.grad[1].abs().max()) == 0


@pytest.mark.parametrize("variant", sorted(variants.VARIANTS))
def test_build_gives_each_seed_exactly_its_weights_alone(variant):
    """Seed k of a model built with init_seeds [a, b] starts bit for bit where build([seeds[k]])
    starts, whatever its position in the pack."""
    kw = dict(init_std=0.1, n_classes=3, head_init_std=2.0)
    seeds = [11, 5]
    pair = variants.build(variant, (1, 4, 4), 2, [8, 8], init_seeds=seeds, **kw).state_dict()
    for k, seed in enumerate(seeds):
        alone = variants.build(variant, (1, 4, 4), 2, [8, 8], init_seeds=[seed], **kw).state_dict()
        assert alone.keys() == pair.keys()
        for name, value in alone.items():
            assert value.shape[0] == 1 and pair[name].shape == (2, *value.shape[1:]), name
            assert torch.equal(pair[name][k], value[0]), name
    assert not torch.equal(pair["encoder.net.0.weight"][0], pair["encoder.net.0.weight"][1])
    if variant == "dim-reduction":
        heads = pair["cluster_heads"]
        assert heads.shape == (2, 3, 2) and not torch.equal(heads[0], heads[1])
    with pytest.raises(ValueError, match="at least one seed"):
        variants.build(variant, (1, 4, 4), 2, [8, 8], init_seeds=[], **kw)


# Bit-for-bit comparisons of a pack with a lone seed use minibatches of 16 on purpose: then a
# seed's slice of the logits does not start where an elementwise kernel's vectorised chunk
# (2 x 16 floats with AVX-512) starts, and a stacked sigmoid / BCE-with-logits would give the
# second seed other last bits (vectorised body) than a lone seed (scalar tail). They pass
# because those ops run seed by seed on a CPU (`seeds.seedwise`); without it they drift by
# ~1e-10 within 2 epochs (measured).
PACK_BATCH = 16


def train_pack(accelerator, seeds, epochs, x, poison=None):
    """Train `seeds` as one model; `poison(epoch, net)` may corrupt weights before an epoch.
    Returns the model, its context, and per epoch the list of per-seed losses."""
    net, opts, (gds, gps) = build(*seeds)
    ctx = context(accelerator, net, opts, gps)
    per_epoch = []
    for epoch in range(epochs):
        if poison is not None:
            with torch.no_grad():
                poison(epoch, net)
        per_epoch.append(training.train_epoch(ctx, UNSUPERVISED, training.TrainingData(x),
                                              batch_size=PACK_BATCH, data_generators=gds, epoch=epoch))
    return net, ctx, per_epoch


def assert_trained_as_alone(accelerator, pack_net, pack_losses, k, seed, x, epochs):
    """Seed index k of a pack has exactly the losses and final weights of `seed` trained alone."""
    alone, ctx, alone_losses = train_pack(accelerator, (seed,), epochs, x)
    assert ctx.diverged == {}
    assert hexes([losses[k] for losses in pack_losses]) == hexes([losses[0] for losses in alone_losses])
    packed = pack_net.state_dict()
    for name, value in alone.state_dict().items():
        assert torch.equal(packed[name][k], value[0]), name


def test_seeds_of_a_pack_train_exactly_as_alone(accelerator):
    x = data(128)
    seeds = (7, 8)
    net, ctx, losses = train_pack(accelerator, seeds, 2, x)
    assert ctx.diverged == {} and bool(ctx.alive.all())
    assert all(len(epoch) == 2 for epoch in losses)
    assert hexes([e[0] for e in losses]) != hexes([e[1] for e in losses])
    for k, seed in enumerate(seeds):
        assert_trained_as_alone(accelerator, net, losses, k, seed, x, 2)


@pytest.mark.parametrize("dead", [0, 1])
def test_a_diverged_seed_is_masked_and_the_other_trains_as_alone(accelerator, dead):
    """Seed index `dead` gets NaN weights before epoch 1: it is recorded in ctx.diverged and
    masked out (NaN losses from then on, no DivergedError), while the other seed's losses and
    weights stay those of its run alone, bit for bit."""
    x = data(128)
    seeds = (7, 8)
    live = 1 - dead

    def poison(epoch, net):
        if epoch == 1:
            net.encoder.net[0].weight[dead].fill_(math.nan)

    net, ctx, losses = train_pack(accelerator, seeds, 3, x, poison)
    assert list(ctx.diverged) == [dead]
    assert ctx.diverged[dead] == "non-finite reconstruction loss at epoch 1, step 0"
    assert ctx.alive.tolist() == [k == live for k in range(2)]
    assert all(math.isfinite(v) for v in losses[0][dead].values())  # before the poison
    for epoch in (1, 2):
        assert set(losses[epoch][dead]) == set(losses[epoch][live])
        assert all(math.isnan(v) for v in losses[epoch][dead].values())
        assert all(math.isfinite(v) for v in losses[epoch][live].values())
    assert_trained_as_alone(accelerator, net, losses, live, seeds[live], x, 3)


def test_diverged_error_only_when_every_seed_diverged(accelerator):
    x = data()

    def poison(epoch, net):  # seed index 0 before epoch 0, seed index 1 before epoch 2
        if epoch in (0, 2):
            net.encoder.net[0].weight[epoch // 2].fill_(math.inf)

    net, opts, (gds, gps) = build(7, 8)
    ctx = context(accelerator, net, opts, gps)
    for epoch in range(2):  # one seed left: training goes on
        with torch.no_grad():
            poison(epoch, net)
        losses = training.train_epoch(ctx, UNSUPERVISED, training.TrainingData(x), batch_size=16,
                                      data_generators=gds, epoch=epoch)
        assert all(math.isnan(v) for v in losses[0].values())
        assert all(math.isfinite(v) for v in losses[1].values())
    assert list(ctx.diverged) == [0] and "at epoch 0, step 0" in ctx.diverged[0]
    with torch.no_grad():
        poison(2, net)
    with pytest.raises(training.DivergedError, match="every seed diverged") as raised:
        training.train_epoch(ctx, UNSUPERVISED, training.TrainingData(x), batch_size=16,
                             data_generators=gds, epoch=2)
    assert sorted(ctx.diverged) == [0, 1]
    assert "seed index 0: non-finite reconstruction loss at epoch 0" in str(raised.value)
    assert "seed index 1: non-finite reconstruction loss at epoch 2" in str(raised.value)


def test_train_epoch_needs_one_data_generator_per_seed(accelerator):
    net, opts, (gds, gps) = build(7, 8)
    ctx = context(accelerator, net, opts, gps)
    with pytest.raises(ValueError, match="2 seeds need 2 data generators; got 1"):
        training.train_epoch(ctx, UNSUPERVISED, training.TrainingData(data()), batch_size=16,
                             data_generators=gds[:1], epoch=0)
