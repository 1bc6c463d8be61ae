"""The GPU path (#18 items 1, 4-6): placement on the accelerator's device, and the device loop
(data, draws and loss records kept on the device, one host sync an epoch).

Placement is tested with a stand-in accelerator that moves modules to the `meta` device; the
device loop's logic runs here on the CPU (`StepContext(device_loop=True)`); numerics and host
syncs on a GPU are the CUDA-marked tests at the end (they skip without one)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from accelerate import Accelerator
from cuda_helpers import cuda, host_syncs

from aae_core import parallel, priors, training, variants
from aae_core.seeds import masked_step

SHAPE = (1, 6, 6)


@pytest.fixture(scope="module")
def cpu():
    return Accelerator(cpu=True)


# -- item 1: every parameter and buffer on the accelerator's device ------------------------


@dataclass
class MetaAccelerator:
    """Stands in for an accelerator on a device other than the CPU: `prepare` moves a module to
    `meta`, as Accelerate moves it to its GPU."""

    device: torch.device = torch.device("meta")
    num_processes: int = 1

    def prepare(self, obj):
        return obj.to(self.device) if isinstance(obj, torch.nn.Module) else obj


@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_prepare_puts_every_parameter_and_buffer_on_the_device(name):
    record = variants.variant(name)
    net = variants.build(name, SHAPE, 2, [8], init_std=0.1, init_seeds=[0, 1], n_classes=4)
    net.register_buffer("own_buffer", torch.zeros(2))  # a parent's own buffer must move too
    adversarial = training.SGD(0.1, 0.9) if record.adversarial else None
    classification = training.SGD(0.1, 0.9) if record.labels == "subset" else None
    opts = training.make_optimizers(net, training.SGD(0.1, 0.9), adversarial, classification)
    parallel.prepare(MetaAccelerator(), net, opts)
    placed = {n: t.device.type for n, t in itertools.chain(net.named_parameters(), net.named_buffers())}
    assert set(placed.values()) == {"meta"}, placed
    if name == "dim-reduction":
        assert "cluster_heads" in placed


# -- the device loop's logic, on the CPU -------------------------------------------------


def setup(name, seeds, accelerator, *, device_loop, n=48, prior="gaussian"):
    """A small model of variant `name` for the RandomStreams of `seeds`, its context and data."""
    record = variants.variant(name)
    streams = [training.RandomStreams.from_seed(s) for s in seeds]
    z_dim = 2
    net = variants.build(name, SHAPE, z_dim, [16], init_std=0.1, init_seeds=[s.init for s in streams],
                         n_classes=4)
    adversarial = training.SGD(0.05, 0.5) if record.adversarial else None
    classification = training.SGD(0.05, 0.5) if record.labels == "subset" else None
    opts = training.make_optimizers(net, training.SGD(0.01, 0.9), adversarial, classification)
    parallel.prepare(accelerator, net, opts)
    z = priors.GaussianMixture(4) if prior == "mixture" else priors.Gaussian(z_dim, 1.0)
    prior_set = {"z": z, "y": priors.Categorical(4)} if record.categorical else {"z": z}
    settings = training.PhaseSettings("sum", 0.3 if record.categorical else 0.0,
                                      head_threshold=3.0, head_penalty=1.0)
    ctx = training.StepContext(accelerator, net, opts, prior_set, settings,
                               [training.generator(s.prior) for s in streams],
                               [training.generator(s.noise) for s in streams], device_loop=device_loop)
    gen = torch.Generator().manual_seed(7)
    x = (torch.randint(0, 256, (n, *SHAPE), generator=gen).float() / 255)
    labels = torch.randint(0, 4, (n,), generator=gen)
    s = len(seeds)
    if record.labels == "subset":
        index = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(k))[:8] for k in seeds])
        data = training.TrainingData(x, None, index, labels[index])
    elif record.labels == "tagged":
        data = training.TrainingData(x, torch.where(torch.arange(n) % 3 == 0, labels, -1).expand(s, n))
    elif record.labels == "all":
        data = training.TrainingData(x, labels.expand(s, n))
    else:
        data = training.TrainingData(x)
    return ctx, data, [training.generator(st.data) for st in streams]


def train(ctx, data, data_gens, name, epochs=2, step=None):
    step = step or variants.variant(name).step
    return [training.train_epoch(ctx, step, data, batch_size=16, data_generators=data_gens, epoch=e)
            for e in range(epochs)]


def hexes(per_epoch) -> list[list[str]]:
    return [[float(v).hex() for v in losses.values()] for losses in per_epoch]


def seed_state(net, k) -> dict:
    return {key: value[k:k + 1].clone() for key, value in net.state_dict().items()}


CASES = [("unsupervised", "gaussian"), ("supervised", "gaussian"), ("label-regularized", "mixture"),
         ("semi-supervised", "gaussian"), ("clustering", "gaussian"), ("dim-reduction", "gaussian"),
         ("vae", "mixture")]


@pytest.mark.parametrize("name,prior", CASES)
def test_device_loop_pack_equals_its_seeds_alone(cpu, name, prior):
    """Forced through the device loop on the CPU (device generators, data kept resident, records
    on the device): a pack's seeds get exactly the bits they get alone."""
    ctx, data, gens = setup(name, (3, 4), cpu, device_loop=True, prior=prior)
    per_epoch = train(ctx, data, gens, name)
    for k, seed in enumerate((3, 4)):
        alone_ctx, alone_data, alone_gens = setup(name, (seed,), cpu, device_loop=True, prior=prior)
        alone = train(alone_ctx, alone_data, alone_gens, name)
        assert hexes([e[k] for e in per_epoch]) == hexes([e[0] for e in alone]), (name, seed)
        packed = seed_state(ctx.net, k)
        assert all(torch.equal(packed[key], value) for key, value in alone_ctx.net.state_dict().items())


@pytest.mark.parametrize("name", ["unsupervised", "semi-supervised"])
def test_device_loop_draws_differently_but_finitely(cpu, name):
    """The device loop draws from device generators (DEVIATION), so its numbers are not the CPU
    loop's; they are real losses all the same, and the CPU loop keeps its own."""
    on = train(*setup(name, (3,), cpu, device_loop=True)[:3], name)
    off = train(*setup(name, (3,), cpu, device_loop=False)[:3], name)
    assert on[0][0].keys() == off[0][0].keys()
    assert all(math.isfinite(v) for e in on for v in e[0].values())
    assert hexes([e[0] for e in on]) != hexes([e[0] for e in off])


def test_device_minibatches_are_the_cpu_minibatches(cpu):
    """Same order, same x and y; the labelled picks come from the device generators."""
    ctx, data, _ = setup("label-regularized", (3, 4), cpu, device_loop=True)
    args = (data, 16, None, None, training.Shard(), "cpu")
    gens = lambda: [training.generator(s) for s in (11, 12)]  # noqa: E731
    plain = list(training.minibatches(data, 16, gens(), gens(), training.Shard(), "cpu"))
    loop = list(training.minibatches(*args[:2], gens(), gens(), *args[4:], device_loop=True))
    assert len(plain) == len(loop) == 3
    for (x, y, _), (x2, y2, _) in zip(plain, loop, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_large_pixels_are_kept_as_uint8_and_come_back_bit_for_bit():
    gen = torch.Generator().manual_seed(1)
    u8 = torch.randint(0, 256, (40, *SHAPE), dtype=torch.uint8, generator=gen)
    x = torch.from_numpy(u8.numpy().astype("float32") / __import__("numpy").float32(255))  # as datasets does
    data = training.TrainingData(x)
    small = data.on("cpu")
    assert small.x.dtype == torch.float32 and data.on("cpu") is small  # kept, not moved again
    large = data.on("cpu", uint8_above_bytes=0)
    assert large.x.dtype == torch.uint8 and torch.equal(large.x, u8)
    assert torch.equal(training.pixels(large.x[torch.tensor([[3, 1], [0, 39]])]), x[torch.tensor([[3, 1], [0, 39]])])
    gens = lambda: [training.generator(5)]  # noqa: E731
    a = list(training.minibatches(data, 16, gens(), gens(), training.Shard(), "cpu"))
    b = list(training.minibatches(large, 16, gens(), gens(), training.Shard(), "cpu", device_loop=True))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="k / 255"):
        training.as_uint8_pixels(x + 1e-3)


def test_head_penalty_index_equals_the_mask_bit_for_bit():
    heads = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0)) * 2
    distances = torch.cdist(heads, heads)
    upper = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    old = torch.nn.functional.relu(3.0 - distances[:, upper]).sum(-1)
    assert torch.equal(training.head_penalty(heads, 3.0), old)


def poisoned(bad: dict[tuple[int, str], int]):
    """A two-phase step whose loss `phase` of seed index k is NaN at step `bad[(k, phase)]`."""
    counter = itertools.count()

    def step(ctx, x, y):
        i = next(counter)
        losses = {}
        for phase in ("first", "second"):
            loss = training.reconstruction_loss(ctx.net.reconstruct(x), x, "sum")
            for (k, where), at in bad.items():
                if where == phase and at == i:
                    loss = loss + torch.where(torch.arange(ctx.seeds) == k, math.nan, 0.0)
            losses[phase] = masked_step(ctx, ctx.opts["reconstruction"], loss)
        return losses
    return step


@pytest.mark.parametrize("bad", [{(1, "second"): 2}, {(0, "first"): 1, (1, "second"): 1}])
def test_device_loop_records_divergence_as_the_cpu_loop_does(cpu, bad):
    results = {}
    for device_loop in (False, True):
        ctx, data, gens = setup("unsupervised", (3, 4), cpu, device_loop=device_loop)
        try:
            losses = train(ctx, data, gens, "unsupervised", epochs=1, step=poisoned(bad))
            results[device_loop] = (dict(ctx.diverged), [sorted(e) for e in losses[0]],
                                    [math.isnan(v) for e in losses[0] for v in e.values()])
        except training.DivergedError as error:
            results[device_loop] = (dict(ctx.diverged), str(error))
    assert results[True] == results[False]
    assert "non-finite second loss at epoch 0, step" in str(results[True])


def test_a_seed_dead_before_the_epoch_stays_recorded_as_it_was(cpu):
    ctx, data, gens = setup("unsupervised", (3, 4), cpu, device_loop=True)
    ctx.diverged[0] = "non-finite reconstruction loss at epoch 0, step 5"
    ctx.alive = torch.tensor([False, True])
    (losses,) = train(ctx, data, gens, "unsupervised", epochs=1)
    assert ctx.diverged == {0: "non-finite reconstruction loss at epoch 0, step 5"}
    assert all(math.isnan(v) for v in losses[0].values()) and all(math.isfinite(v) for v in losses[1].values())


# -- on a GPU -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu():
    return Accelerator()


@cuda
@pytest.mark.parametrize("name,prior", CASES)
def test_cuda_pack_equals_its_seeds_alone_within_tolerance(gpu, name, prior):
    assert gpu.device.type == "cuda"
    ctx, data, gens = setup(name, (3, 4), gpu, device_loop=None, prior=prior)
    assert ctx.device_loop
    placed = {t.device.type for t in itertools.chain(ctx.net.parameters(), ctx.net.buffers())}
    assert placed == {"cuda"}  # item 1: the cluster heads too
    optimized = {id(p) for opt in ctx.opts.values() for group in opt.param_groups for p in group["params"]}
    assert {id(p) for p in ctx.net.parameters()} <= optimized  # the moved parameters themselves
    per_epoch = train(ctx, data, gens, name)
    for k, seed in enumerate((3, 4)):
        alone = train(*setup(name, (seed,), gpu, device_loop=None, prior=prior)[:3], name)
        for packed, lone in zip((e[k] for e in per_epoch), (e[0] for e in alone), strict=True):
            for key in lone:
                assert packed[key] == pytest.approx(lone[key], rel=1e-4, abs=1e-5), (name, seed, key)


@cuda
@pytest.mark.parametrize("name,prior", [("unsupervised", "gaussian"), ("semi-supervised", "gaussian"),
                                        ("dim-reduction", "gaussian"), ("vae", "gaussian"), ("vae", "mixture"),
                                        ("supervised", "gaussian"), ("label-regularized", "mixture")])
def test_cuda_host_syncs_per_epoch_do_not_grow_with_its_steps(gpu, name, prior):
    """O(1) host syncs an epoch: an epoch of 16 steps waits as often as one of 4. Section 3's
    label-conditioned draws take their labels on the device, and the VAE's mixture density
    copies no centres, so they are in the list too (#18 item 5)."""
    counts = []
    for n in (64, 256):
        ctx, data, gens = setup(name, (3, 4), gpu, device_loop=None, n=n, prior=prior)
        train(ctx, data, gens, name, epochs=1)  # warm: the data set is moved once, caches fill
        counts.append(host_syncs(lambda ctx=ctx, data=data, gens=gens: train(ctx, data, gens, name, epochs=1)))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 8, counts
