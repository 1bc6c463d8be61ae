"""Seed-batched training against the same seeds trained one after another, in the same run.

Run:  pytest tests/benchmarks/test_bench_seeds.py --benchmark-enable --benchmark-only -s
(pytest's addopts skip benchmarks by default.) Needs the real MNIST files.

The workload is the training loop of Table 1's MNIST cell at the paper's size (784-1000-1000-8
networks, batch 100, the three phases of every minibatch), one epoch on EXAMPLES training
images per seed, without evaluation. The batched arm trains S seeds as one model
(`bench.trial.build` of a pack); the other arm trains each of the same S seeds alone (S = 1),
one after another, in the same process with the same thread count. The figure is the ratio of
aggregate throughputs (training images per second summed over the seeds); on a CPU the target
is >= 1.0 (batching must never be slower). The arms alternate, REPEATS times, and the best of
each is kept (the run least disturbed by other jobs on a shared machine).

On a CUDA machine the same file measures S = 1, 8 and 32 (AAE_BENCH_SEEDS overrides the list).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import pytest
import torch

from aae_core import datasets, training, variants
from bench.grids import grid_configs
from bench.trial import build

EXAMPLES = int(os.environ.get("AAE_BENCH_EXAMPLES", "3000"))
REPEATS = 2
CUDA = torch.cuda.is_available()
SEEDS = [int(s) for s in os.environ.get("AAE_BENCH_SEEDS", "1,8,32" if CUDA else "8").split(",")]


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return datasets.load("mnist", mnist_dir)


def paper_cell(seeds: int) -> list:
    base = grid_configs("table1", "quick", 1, ("mnist",))[0]
    assert (base.hidden_units, base.hidden_layers, base.z_dim, base.batch_size) == (1000, 2, 8, 100)
    return [dataclasses.replace(base, grid="bench", seed=s, train_examples=EXAMPLES) for s in range(seeds)]


def train_seconds(configs, data, accelerator) -> float:
    """Seconds of one training epoch of `configs` as one model (built and warmed up first)."""
    parts = build(configs, data)
    training.prepare(accelerator, parts.net, parts.opts)
    streams = [training.RandomStreams.from_seed(c.seed) for c in configs]
    ctx = training.StepContext(accelerator, parts.net, parts.opts, parts.priors, parts.settings,
                               [training.generator(s.prior) for s in streams],
                               [training.generator(s.noise) for s in streams])
    warm = dataclasses.replace(parts.data, x=parts.data.x[:200])
    epoch = dict(batch_size=configs[0].batch_size, epoch=0)
    training.train_epoch(ctx, variants.VARIANTS["unsupervised"].step, warm, data_generators=[training.generator(1) for _ in configs], **epoch)
    if CUDA:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    training.train_epoch(ctx, variants.VARIANTS["unsupervised"].step, parts.data,
                         data_generators=[training.generator(s.data) for s in streams], **epoch)
    if CUDA:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@pytest.mark.parametrize("threads", sorted({1, os.cpu_count() or 1}))
def test_batched_against_one_after_another(benchmark, mnist, threads):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not CUDA)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best: dict[tuple[str, int], float] = {}

    def measure():
        for _ in range(REPEATS):
            for s in SEEDS:
                configs = paper_cell(s)
                batched = train_seconds(configs, mnist, accelerator)
                alone = sum(train_seconds([c], mnist, accelerator) for c in configs)
                best[("batched", s)] = min(best.get(("batched", s), float("inf")), batched)
                best[("alone", s)] = min(best.get(("alone", s), float("inf")), alone)

    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
    device = torch.cuda.get_device_name() if CUDA else f"CPU, {threads} thread(s)"
    for s in SEEDS:
        rate_batched = s * EXAMPLES / best[("batched", s)]
        rate_alone = s * EXAMPLES / best[("alone", s)]
        ratio = rate_batched / rate_alone
        benchmark.extra_info[f"S{s}"] = dict(batched_samples_s=rate_batched, alone_samples_s=rate_alone,
                                             ratio=ratio, threads=threads, device=device)
        print(f"\nseed batching S={s} on {device}: {rate_batched:.0f} samples/s summed over seeds "
              f"(one model, {best[('batched', s)]:.1f} s) against {rate_alone:.0f} samples/s "
              f"(one after another, {best[('alone', s)]:.1f} s); ratio {ratio:.2f} (target >= 1.0); "
              f"load average {os.getloadavg()[0]:.2f}")
        if s > 1 and ratio < 1.0:
            warnings.warn(f"seed batching S={s}: {ratio:.2f} is slower than one after another", stacklevel=1)
