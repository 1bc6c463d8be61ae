"""Mixed precision (issue 15): under Accelerate's bf16 every GEMM of the models runs in bf16 on a
copy of the weights cast once per optimizer step, while losses, master weights and optimizer
state stay fp32; fp32 runs are untouched (their bit-identity is checked by the tests of the
trained numbers, e.g. tests/test_seeds.py and tests/baselines).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_helpers import cuda

from aae_core import priors, training
from aae_core.seeds import SeedLinear, autocast_dtype, masked_step
from bench.grids import single_trial
from bench.trial import build

BF16 = torch.bfloat16


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state, fixed by the first Accelerator: forget it before
    and after, so that a test may choose its precision and later tests theirs."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def layer(seeds=2, n_in=30, n_out=20, seed=0) -> SeedLinear:
    lin = SeedLinear(n_in, n_out, seeds)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen))
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen))
    return lin


def test_autocast_dtype_follows_autocast():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None
    with torch.autocast("cpu", dtype=BF16):
        assert autocast_dtype(cpu) == BF16
    assert autocast_dtype(cpu) is None


def test_the_gemm_runs_in_bf16_on_the_cast_weights():
    lin = layer()
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=BF16):
        out = lin(x)
        shared = lin(x[0])  # (B, in) shared by every seed
    assert out.dtype == BF16 and shared.dtype == BF16
    for k in range(2):  # exactly a bf16 GEMM on bf16 operands
        expect = torch.addmm(lin.bias[k].to(BF16), x[k].to(BF16), lin.weight[k].to(BF16).t())
        assert torch.equal(out[k], expect)
        assert torch.equal(shared[k], torch.addmm(lin.bias[k].to(BF16), x[0].to(BF16), lin.weight[k].to(BF16).t()))
    full = lin(x)
    assert full.dtype == torch.float32
    assert not torch.equal(out.float(), full)  # bf16 is really used...
    torch.testing.assert_close(out.float(), full, rtol=0.05, atol=0.1)  # ... and close to fp32


def test_gradients_reach_the_fp32_master_weights():
    lin = layer()
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(2), requires_grad=True)
    with torch.autocast("cpu", dtype=BF16):
        lin(x).float().pow(2).sum().backward()
    low = (lin.weight.grad.clone(), lin.bias.grad.clone(), x.grad.clone())
    assert all(g.dtype == torch.float32 for g in low)
    lin.zero_grad()
    x.grad = None
    lin(x).pow(2).sum().backward()
    for g_low, g_full in zip(low, (lin.weight.grad, lin.bias.grad, x.grad), strict=True):
        assert not torch.equal(g_low, g_full)
        torch.testing.assert_close(g_low, g_full, rtol=0.05, atol=0.05 * float(g_full.abs().max()))


@cuda
def test_the_batched_kernel_runs_in_bf16_on_a_gpu():
    lin = layer().cuda()
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(1)).cuda().requires_grad_()
    with torch.autocast("cuda", dtype=BF16):
        out = lin(x)
    assert out.dtype == BF16
    expect = torch.baddbmm(lin.bias.to(BF16).unsqueeze(1), x.to(BF16), lin.weight.to(BF16).transpose(1, 2))
    assert torch.equal(out, expect)
    out.float().pow(2).sum().backward()
    assert lin.weight.grad.dtype == torch.float32 and lin.bias.grad.dtype == torch.float32
    assert x.grad.dtype == torch.float32
    w = lin.weight.detach().clone().requires_grad_()
    b = lin.bias.detach().clone().requires_grad_()
    torch.baddbmm(b.unsqueeze(1), x.detach(), w.transpose(1, 2)).pow(2).sum().backward()
    torch.testing.assert_close(lin.weight.grad, w.grad, rtol=0.05, atol=0.05 * float(w.grad.abs().max()))
    torch.testing.assert_close(lin.bias.grad, b.grad, rtol=0.05, atol=0.05 * float(b.grad.abs().max()))


def test_the_cast_is_made_once_per_change_and_never_stale():
    lin = layer()
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(3))
    first = lin.cast_weights(BF16)
    assert lin.cast_weights(BF16)[0] is first[0]  # unchanged weights: no new cast
    for _ in range(3):
        before = lin.cast_weights(BF16)[0]
        with torch.autocast("cpu", dtype=BF16):
            loss = lin(x).float().pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w, b = lin.cast_weights(BF16)
        assert w is not before
        for k in range(2):  # every seed's slice is the updated weights'
            assert torch.equal(w[k], lin.weight[k].detach().to(BF16))
            assert torch.equal(b[k], lin.bias[k].detach().to(BF16))
    # a load (copy_ into the parameters) is a change too
    lin.load_state_dict(layer(seed=7).state_dict())
    assert torch.equal(lin.cast_weights(BF16)[0], layer(seed=7).weight.detach().to(BF16))
    # the old cast is left as it was: a backward pass that saved it still reads what it used
    assert not torch.equal(first[0], lin.cast_weights(BF16)[0])


def test_masked_step_refreshes_the_cast_of_the_live_seeds_only(fresh_accelerator_state):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    lin = layer()
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    ctx = training.StepContext(accelerator, lin, {}, {}, training.PhaseSettings(),
                               [torch.Generator()] * 2, [torch.Generator()] * 2)
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(4))
    dead_before = lin.cast_weights(BF16)[0][1].clone()
    with accelerator.autocast():
        loss = lin(x).float().pow(2).mean((1, 2))
    loss = loss * torch.tensor([1.0, float("nan")])  # seed 1 diverges
    masked_step(ctx, opt, loss)
    w = lin.cast_weights(BF16)[0]
    assert torch.equal(w, lin.weight.detach().to(BF16))
    assert not torch.equal(w[0], layer().weight[0].detach().to(BF16))  # seed 0 moved
    assert torch.equal(w[1], dead_before)  # seed 1 masked out: unchanged


def test_generate_returns_float32_under_autocast():
    lin = layer(seeds=1, n_in=2, n_out=6)
    with torch.autocast("cpu", dtype=BF16):
        samples = training.generate(lin, priors.Gaussian(2, 1.0), 5, [torch.Generator().manual_seed(0)], "cpu")
    assert samples.dtype == np.float32 and samples.shape == (1, 5, 6)


# -- training through Accelerate ---------------------------------------------------------


CELLS = {"unsupervised": dict(labels=None), "semi-supervised": dict(labels=100)}


def train(mnist, variant, precision, seeds=(0,), steps=4):
    """`steps` minibatches of a small paper-shaped model (every phase) under `precision`;
    returns the parts and each seed's mean losses."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    config = single_trial(variant, "mnist", "gaussian", profile="smoke", **CELLS[variant])
    configs = [dataclasses.replace(config, hidden_units=64, train_examples=100 * steps, seed=s,
                                   precision=precision) for s in seeds]
    accelerator = Accelerator(cpu=True, mixed_precision=precision)
    parts = build(configs, mnist)
    training.prepare(accelerator, parts.net, parts.opts)
    streams = [training.RandomStreams.from_seed(s) for s in seeds]
    ctx = training.StepContext(accelerator, parts.net, parts.opts, parts.priors, parts.settings,
                               [training.generator(s.prior) for s in streams],
                               [training.generator(s.noise) for s in streams])
    step = {"unsupervised": training.step_autoencoder_aae, "semi-supervised": training.step_categorical_aae}[variant]
    losses = training.train_epoch(ctx, step, parts.data, batch_size=100, epoch=0,
                                  data_generators=[training.generator(s.data) for s in streams])
    return parts, losses, accelerator


@pytest.mark.parametrize("variant", list(CELLS))
def test_bf16_training_is_bf16_with_fp32_state(mnist, variant, fresh_accelerator_state, monkeypatch):
    casts = []
    original = SeedLinear.cast_weights

    def counting(self, dtype):
        casts.append((id(self), dtype))
        return original(self, dtype)

    monkeypatch.setattr(SeedLinear, "cast_weights", counting)
    parts, low, accelerator = train(mnist, variant, "bf16")
    assert accelerator.mixed_precision == "bf16"
    layers = {id(m) for m in parts.net.modules() if isinstance(m, SeedLinear)}
    assert {dtype for _, dtype in casts} == {BF16}
    assert {layer for layer, _ in casts} == layers  # every SeedLinear of the model read the bf16 copy
    assert all(p.dtype == torch.float32 for p in parts.net.parameters())
    for opt in parts.opts.values():
        for state in opt.state.values():
            assert all(v.dtype == torch.float32 for v in state.values() if torch.is_tensor(v))
    fp32, full, _ = train(mnist, variant, "no")
    assert low[0].keys() == full[0].keys()
    for name in full[0]:  # close to fp32's ...
        assert low[0][name] == pytest.approx(full[0][name], rel=0.02), name
    # ... but not fp32's bits: every weight of every sub-network trained in bf16 (a loss alone
    # may coincide, e.g. a young discriminator's, whose logits are all near 0)
    assert low[0]["loss_reconstruction"] != full[0]["loss_reconstruction"]
    full_state = fp32.net.state_dict()
    for name, value in parts.net.state_dict().items():
        assert not torch.equal(value, full_state[name]), f"{name}: bf16 gave fp32's bits"


@pytest.mark.parametrize("variant", list(CELLS))
def test_the_loss_is_fp32_under_bf16(mnist, variant, fresh_accelerator_state, monkeypatch):
    seen = []
    original = training.masked_step

    def recording(ctx, opt, loss):
        seen.append(loss.dtype)
        return original(ctx, opt, loss)

    monkeypatch.setattr(training, "masked_step", recording)
    train(mnist, variant, "bf16", steps=4)
    assert seen and set(seen) == {torch.float32}


@pytest.mark.parametrize("variant", list(CELLS))
def test_a_bf16_pack_equals_its_seeds_alone(mnist, variant, fresh_accelerator_state):
    """On a CPU a pack's bf16 GEMMs are plain GEMMs on each seed's slices, the casts are
    elementwise, and every elementwise op runs seed by seed (`seedwise`): the same bits."""
    pack, pack_losses, _ = train(mnist, variant, "bf16", seeds=(0, 1), steps=3)
    state = pack.net.state_dict()
    for k, seed in enumerate((0, 1)):
        alone, alone_losses, _ = train(mnist, variant, "bf16", seeds=(seed,), steps=3)
        assert pack_losses[k] == alone_losses[0]
        for name, value in alone.net.state_dict().items():
            assert torch.equal(state[name][k:k + 1], value), name
