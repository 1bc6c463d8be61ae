"""The paper's open choices that the sensitivity study varies (#17): each alternative does what
its config field says, and our default computes exactly what it computed before."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from aae_core import priors, training, variants
from aae_core.seeds import initialise


def test_sum_of_means_is_the_two_halves_means_added():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 6, 3, generator=gen), torch.randn(2, 6, 3, generator=gen)
    disc = torch.nn.Linear(3, 1)
    joined = training.discriminator_loss([lambda v: disc(v).squeeze(-1)], [real], [fake])
    summed = training.discriminator_loss([lambda v: disc(v).squeeze(-1)], [real], [fake], "sum-of-means")
    with torch.no_grad():
        lr, lf = disc(real).squeeze(-1), disc(fake).squeeze(-1)
        mean_real = F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr), reduction="none").mean(-1)
        mean_fake = F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf), reduction="none").mean(-1)
    assert torch.allclose(summed, mean_real + mean_fake, atol=1e-6)
    assert torch.allclose(joined, (mean_real + mean_fake) / 2, atol=1e-6)  # equal halves: half of it
    with pytest.raises(ValueError, match="unknown discriminator loss 'mean'"):
        training.discriminator_loss([disc], [real], [fake], "mean")


def _semi_supervised(settings):
    net = variants.build("semi-supervised", (1, 6, 6), 3, [16, 16], init_std=0.1, init_seeds=[1], n_classes=4)
    opts = training.make_optimizers(net, training.SGD(0.01, 0.9), training.SGD(0.1, 0.1), training.SGD(0.1, 0.9))
    ctx = training.StepContext(Accelerator(cpu=True), net, opts,
                               {"z": priors.Gaussian(3, 1.0), "y": priors.Categorical(4)}, settings,
                               [training.generator(2)], [training.generator(3)])
    return net, ctx


@pytest.mark.parametrize("target", ["clean", "noisy"])
def test_the_denoising_target_is_what_the_reconstruction_is_compared_with(target):
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(4)).unsqueeze(0)  # (S=1, B, ...)
    net, ctx = _semi_supervised(training.PhaseSettings(input_noise_std=0.3, denoise_target=target))
    before = copy.deepcopy(net)
    x_in = training.noisy(_replay_noise(ctx), x)
    losses = training.step_categorical_aae(ctx, x, None)
    with torch.no_grad():
        x_hat = before.decoder(before.representation(*before.code(x_in)))
        expected = training.reconstruction_loss(x_hat, x_in if target == "noisy" else x, "sum")
    assert torch.allclose(losses["reconstruction"], expected, rtol=1e-5)
    other = x if target == "noisy" else x_in
    assert not torch.allclose(expected, training.reconstruction_loss(x_hat, other, "sum"), rtol=1e-3)


def _replay_noise(ctx):
    """A context whose noise stream is a copy of ctx's: the same draw the step will make."""
    copies = [torch.Generator().set_state(g.get_state()) for g in ctx.noise_generators]
    return dataclasses.replace(ctx, noise_generators=copies)


def test_pytorch_init_is_nn_linear_s_default_per_seed():
    net = variants.network("unsupervised", (1, 28, 28), 8, [1000, 1000], 2, n_classes=10)
    initialise(net, [5, 6], 0.01, scheme="pytorch")
    for name, p in net.named_parameters():
        weight = dict(net.named_parameters())[name.removesuffix("bias") + "weight"] if name.endswith("bias") else p
        bound = 1 / math.sqrt(weight.shape[-1])
        assert p.abs().max() <= bound
        if p[0].numel() > 1000:  # a uniform's std is bound / sqrt(3)
            assert p[0].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert not torch.equal(p[0], p[1])  # each seed its own draw
    again = variants.network("unsupervised", (1, 28, 28), 8, [1000, 1000], 2, n_classes=10)
    initialise(again, [5, 6], 0.01, scheme="pytorch")
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(), strict=True))
    normal = variants.network("unsupervised", (1, 28, 28), 8, [1000, 1000], 1, n_classes=10)
    initialise(normal, [5], 0.01)
    for name, p in normal.named_parameters():
        if name.endswith("bias"):
            assert not p.any()  # ours: biases 0
        else:
            assert p.std().item() == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match="unknown init scheme 'xavier'"):
        initialise(normal, [5], 0.01, scheme="xavier")


def test_the_trial_passes_each_choice_to_training(mnist):
    from bench import trial
    from bench.grids import single_trial

    base = dataclasses.replace(single_trial("semi-supervised", "mnist", "gaussian", profile="smoke", labels=100),
                               hidden_units=16)
    parts = trial.build(base, mnist)
    assert (parts.settings.disc_loss, parts.settings.denoise_target) == ("joined-mean", "clean")
    varied = dataclasses.replace(base, disc_loss="sum-of-means", denoise_target="noisy", init="pytorch")
    other = trial.build(varied, mnist)
    assert (other.settings.disc_loss, other.settings.denoise_target) == ("sum-of-means", "noisy")
    bias = next(p for n, p in other.net.named_parameters() if n.endswith("bias"))
    assert bias.abs().sum() > 0  # pytorch init: biases drawn, not 0
