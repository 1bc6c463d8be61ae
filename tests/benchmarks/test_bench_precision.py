"""bf16 against fp32 training throughput, in the same run (issue 15, part 2).

Run:  pytest tests/benchmarks/test_bench_precision.py --benchmark-enable --benchmark-only -s
(pytest's addopts skip benchmarks by default.) Needs the real MNIST files.

The workload is the training loop (every phase of every minibatch, no evaluation) of Table 1's
MNIST cell (unsupervised, 784-1000-1000-8) and of Table 2's MNIST 100-label cell
(semi-supervised, 784-1000-1000-10 with the classification phase), batch 100, on EXAMPLES
training images per seed, through Accelerate exactly as bench.trial runs it:
`Accelerator(cpu=..., mixed_precision="no" | "bf16")`. For every thread count and every S
(seeds trained as one model) the two precisions alternate, REPEATS times, and the best of each
is kept (the run least disturbed by other jobs on a shared machine). The figures: samples/s
summed over the seeds, and the ratio bf16 / fp32 (the issue's target on an AMX / AVX-512 bf16
CPU: at least 1.5).

`test_profile_one_step` prints torch.profiler's top rows (by self CPU time) of one paper-size
step in each precision, for reports/benchmarks.md.

Sizes are settable, so that a tiny run proves the file works (the defaults are the paper's):
  AAE_BENCH_PRECISION_EXAMPLES (2000), AAE_BENCH_PRECISION_HIDDEN (1000),
  AAE_BENCH_PRECISION_SEEDS ("1,8"), AAE_BENCH_PRECISION_THREADS ("1,2"),
  AAE_BENCH_PRECISION_REPEATS (2), AAE_BENCH_PRECISION_PROFILE_STEPS (3)
e.g. AAE_BENCH_PRECISION_EXAMPLES=400 AAE_BENCH_PRECISION_HIDDEN=64 AAE_BENCH_PRECISION_SEEDS=1,2
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time

import pytest
import torch

from aae_core import datasets, training
from bench.grids import grid_configs
from bench.trial import build

EXAMPLES = int(os.environ.get("AAE_BENCH_PRECISION_EXAMPLES", "2000"))
HIDDEN = int(os.environ.get("AAE_BENCH_PRECISION_HIDDEN", "1000"))
SEEDS = [int(s) for s in os.environ.get("AAE_BENCH_PRECISION_SEEDS", "1,8").split(",")]
THREADS = [int(t) for t in os.environ.get("AAE_BENCH_PRECISION_THREADS", "1,2").split(",")]
REPEATS = int(os.environ.get("AAE_BENCH_PRECISION_REPEATS", "2"))
PROFILE_STEPS = int(os.environ.get("AAE_BENCH_PRECISION_PROFILE_STEPS", "3"))
CUDA = torch.cuda.is_available()
PRECISIONS = ("no", "bf16")  # Accelerate's names: "no" is fp32

CELLS = {  # variant -> (grid, labels, step)
    "unsupervised": ("table1", None, training.step_autoencoder_aae),
    "semi-supervised": ("table2", 100, training.step_categorical_aae),
}


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return datasets.load("mnist", mnist_dir)


def cell(variant: str, seeds: int, precision: str, examples: int = EXAMPLES) -> list:
    grid, labels, _ = CELLS[variant]
    base = next(c for c in grid_configs(grid, "quick", 1, ("mnist",)) if c.variant == variant and c.labels == labels)
    assert (base.hidden_units, base.hidden_layers, base.batch_size) == (1000, 2, 100)
    return [dataclasses.replace(base, grid="bench", seed=s, train_examples=examples, hidden_units=HIDDEN,
                                precision=precision) for s in range(seeds)]


def accelerator_for(precision: str):
    """A fresh Accelerator of `precision` (Accelerate keeps one process-wide state: forget it)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    return Accelerator(cpu=not CUDA, mixed_precision=precision)


def ready(configs, data):
    """The prepared model and step context of `configs` (one pack), as bench.trial sets them up."""
    accelerator = accelerator_for(configs[0].precision)
    parts = build(configs, data)
    training.prepare(accelerator, parts.net, parts.opts)
    streams = [training.RandomStreams.from_seed(c.seed) for c in configs]
    ctx = training.StepContext(accelerator, parts.net, parts.opts, parts.priors, parts.settings,
                               [training.generator(s.prior) for s in streams],
                               [training.generator(s.noise) for s in streams])
    return parts, ctx, streams


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def batches(data: training.TrainingData, generators: list[torch.Generator]):
    return training.minibatches(data, 100, generators, generators, training.Shard(), "cuda" if CUDA else "cpu")


def run_steps(ctx, step, minibatches, n: int | None = None) -> None:
    """`step` over the next n of `minibatches` (all of them: None)."""
    for x, y, labelled in itertools.islice(minibatches, n):
        step(ctx, x, y) if labelled is None else step(ctx, x, y, labelled)


def train_seconds(variant: str, configs, data) -> float:
    """Seconds of one training epoch of `configs` as one model (built and warmed up first)."""
    parts, ctx, streams = ready(configs, data)
    step = CELLS[variant][2]
    epoch = dict(batch_size=configs[0].batch_size, epoch=0)
    run_steps(ctx, step, batches(parts.data, [training.generator(1) for _ in configs]), 2)  # warm-up
    sync()
    t0 = time.perf_counter()
    training.train_epoch(ctx, step, parts.data, data_generators=[training.generator(s.data) for s in streams],
                         **epoch)
    sync()
    return time.perf_counter() - t0


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("variant", list(CELLS))
def test_bf16_against_fp32(benchmark, mnist, variant, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best: dict[tuple[str, int], float] = {}

    def measure():
        for _ in range(REPEATS):
            for s in SEEDS:
                for precision in PRECISIONS:
                    seconds = train_seconds(variant, cell(variant, s, precision), mnist)
                    best[(precision, s)] = min(best.get((precision, s), float("inf")), seconds)

    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
        accelerator_for("no")  # leave the process-wide state as other benchmarks expect it
    device = torch.cuda.get_device_name() if CUDA else f"CPU, {threads} thread(s)"
    for s in SEEDS:
        fp32, bf16 = (s * EXAMPLES / best[(p, s)] for p in PRECISIONS)
        ratio = bf16 / fp32
        benchmark.extra_info[f"S{s}"] = dict(fp32_samples_s=fp32, bf16_samples_s=bf16, ratio=ratio,
                                             threads=threads, device=device, hidden=HIDDEN, examples=EXAMPLES)
        print(f"\nprecision {variant} S={s} on {device} (hidden {HIDDEN}, {EXAMPLES} images per seed): "
              f"bf16 {bf16:.0f} samples/s ({best[('bf16', s)]:.2f} s), fp32 {fp32:.0f} samples/s "
              f"({best[('no', s)]:.2f} s); ratio bf16/fp32 {ratio:.2f} (target >= 1.5); "
              f"load average {os.getloadavg()[0]:.2f}")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", list(CELLS))
def test_profile_one_step(benchmark, mnist, variant, precision):
    """torch.profiler over PROFILE_STEPS steps (after one warm-up step), S = 1, 1 thread: the
    top 15 rows by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    configs = cell(variant, 1, precision, examples=max(EXAMPLES, 100 * (PROFILE_STEPS + 1)))
    tables = {}

    def measure():
        parts, ctx, streams = ready(configs, mnist)
        epoch = batches(parts.data, [training.generator(s.data) for s in streams])
        step = CELLS[variant][2]
        run_steps(ctx, step, epoch, 1)  # warm-up
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
        with profile(activities=activities) as prof:
            run_steps(ctx, step, epoch, PROFILE_STEPS)
            sync()
        tables["top"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)

    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
        accelerator_for("no")
    print(f"\nprofile of {PROFILE_STEPS} {variant} step(s), precision {precision!r}, hidden {HIDDEN}, "
          f"S=1, 1 thread, load average {os.getloadavg()[0]:.2f}:\n{tables['top']}")
