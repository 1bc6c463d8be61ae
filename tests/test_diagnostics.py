"""bench.diagnostics: the encoder's live units and the distinct codes, against a slow reference
written with numpy alone, and on encoders whose units are killed on purpose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aae_core import variants
from bench import diagnostics


def _net(seed=0):
    return variants.build("unsupervised", (1, 6, 6), 2, [20, 15], init_std=0.3, init_seeds=(seed,)).eval()


def _images(n=37, seed=1):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def _reference(net, images):
    """Per hidden layer: (alive, mean active fraction, inputs with every unit zero), numpy only."""
    h = images.reshape(len(images), -1).numpy().astype(np.float64)
    linears = [m for m in net.encoder.net if hasattr(m, "weight")]
    out = []
    for linear in linears[:-1]:
        w, b = linear.weight.detach()[0].double().numpy(), linear.bias.detach()[0].double().numpy()
        h = np.maximum(h @ w.T + b, 0.0)
        on = h > 0
        out.append((int(on.any(0).sum()), float(on.mean(1).mean()), int((~on.any(1)).sum())))
    return out


def test_activity_matches_a_slow_reference_across_batches():
    net, images = _net(), _images()
    found = diagnostics.encoder_activity(net.encoder, images, batch=8)  # 37 = 4 x 8 + 5
    expected = _reference(net, images)
    assert [(a.layer, a.units) for a in found] == [(1, 20), (2, 15)]
    for got, (alive, mean, dead) in zip(found, expected, strict=True):
        assert got.alive == alive and got.inputs_all_dead == dead
        assert got.mean_active == pytest.approx(mean, abs=1e-6)
    # the init is generic: both layers have live and dead units, so the counts mean something
    assert 0 < found[0].alive <= 20 and found[0].mean_active < 1


def test_a_dead_last_hidden_layer_gives_every_input_one_code():
    net, images = _net(), _images()
    with torch.no_grad():
        net.encoder.net[2].bias.fill_(-1e3)  # the second hidden layer's units never switch on
    first, second = diagnostics.encoder_activity(net.encoder, images)
    assert second.alive == 0 and second.mean_active == 0 and second.inputs_all_dead == len(images)
    assert first.alive > 0
    with torch.no_grad():
        z = net.code(images)[0].numpy()
    assert diagnostics.code_collapse(z) == (1, 1.0)


def test_code_collapse_counts_bitwise_distinct_codes():
    z = np.array([[0.5, 1.0], [0.5, 1.0], [0.5, 1.0 + 1e-7], [2.0, 0.0]], dtype=np.float32)
    assert diagnostics.code_collapse(z) == (3, 0.5)
    healthy = np.random.default_rng(0).normal(size=(100, 2))
    assert diagnostics.code_collapse(healthy) == (100, 0.01)
