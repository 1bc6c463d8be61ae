"""The measuring steps of scripts/gpu_check.sh (issue 15 part 5, issue 18 item 11).

  python scripts/gpu_check.py info       --out info.json
  python scripts/gpu_check.py throughput --out throughput.json [--compile MODE]
  python scripts/gpu_check.py trial      --out trial.json --budget SECONDS
  python scripts/gpu_check.py summary    --dir OUT

Each step writes its JSON as it goes (a step killed by its time box leaves what it measured).
GPU_CHECK_DRY=1: tiny sizes on the CPU, to prove the script's logic where there is no GPU;
its figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DRY = os.environ.get("GPU_CHECK_DRY") == "1"
PRECISIONS = {"fp32": "no", "bf16": "bf16"}  # the flag's name -> TrialConfig.precision (Accelerate's)


def write(path: str, value: dict) -> None:
    Path(path).write_text(json.dumps(value, indent=1, default=str))


def mnist_dir() -> Path | None:
    """The real MNIST IDX files: $AAE_BENCH_DATA, or a copy inside the tree (scratch/ is ignored
    by git, so a copy there can travel with the working tree), or ../shared/data."""
    env = os.environ.get("AAE_BENCH_DATA")
    roots = ([Path(env)] if env else []) + [REPO / "scratch", REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    for root in roots:
        for candidate in (root, root / "mnist"):
            if (candidate / "train-images-idx3-ubyte.gz").exists() or (candidate / "train-images-idx3-ubyte").exists():
                return candidate
    return None


def use_cpu() -> bool:
    import torch

    return DRY or not torch.cuda.is_available()


def sync() -> None:
    import torch

    if torch.cuda.is_available() and not DRY:
        torch.cuda.synchronize()


# -- info ----------------------------------------------------------------------------------


def cmd_info(args) -> int:
    import torch

    from bench import provenance

    info = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "dry": DRY, "mnist": str(mnist_dir() or ""),
            **provenance.numerics()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpus": torch.cuda.device_count(),
                 "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2**30, 1),
                 "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.distributed.is_nccl_available() else "",
                 "bf16_supported": torch.cuda.is_bf16_supported()}
    for package in ("accelerate", "numpy", "ray", "pytest"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = ""
    print(json.dumps(info, indent=1))
    write(args.out, info)
    return 0


# -- throughput ----------------------------------------------------------------------------


def images(examples: int):
    """MNIST's training images where the files are here, else uniform noise of MNIST's shape
    (a training step costs the same on either)."""
    from types import SimpleNamespace

    import numpy as np

    from aae_core import datasets

    found = mnist_dir()
    if found is not None:
        return datasets.load("mnist", found), "mnist"
    rng = np.random.default_rng(0)
    # What bench.trial.build reads of a Dataset, for the unsupervised cell.
    return SimpleNamespace(image_shape=(1, 28, 28), n_classes=10,
                           train_x=rng.random((examples, 1, 28, 28), dtype=np.float32),
                           train_y=rng.integers(0, 10, examples)), "noise"


def paper_pack(seeds: int, precision: str, examples: int) -> list:
    """Table 1's MNIST cell (unsupervised AAE, 784-1000-1000-8, batch 100) as `seeds` seeds of one model."""
    from bench.grids import grid_configs

    base = grid_configs("table1", "quick", 1, ("mnist",))[0]
    hidden = 64 if DRY else base.hidden_units
    return [dataclasses.replace(base, grid="gpu-check", seed=s, train_examples=examples, hidden_units=hidden,
                                precision=PRECISIONS[precision]) for s in range(seeds)]


def accelerator_for(precision: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # one process-wide state: forget the last precision
    return Accelerator(cpu=use_cpu(), mixed_precision=PRECISIONS[precision])


def compiled(net, mode: str, backend: str) -> None:
    """torch.compile each sub-network in place (the steps call them by attribute; their
    parameters stay the optimizers' own)."""
    import torch

    for name, child in list(net.named_children()):
        setattr(net, name, torch.compile(child, mode=None if mode == "default" else mode, backend=backend))


def epoch_seconds(configs, data, precision: str, compile_mode: str = "",
                  backend: str = "inductor") -> tuple[float, float]:
    """Seconds of two warm-up epochs on 200 images (kernel choice, compilation, CUDA graph
    capture: a one-off cost) and of one training epoch of `configs` as one model after them."""
    from aae_core import training, variants
    from bench.trial import build, pin_numerics

    pin_numerics()
    accelerator = accelerator_for(precision)
    parts = build(configs, data)
    training.prepare(accelerator, parts.net, parts.opts)
    if compile_mode:
        compiled(parts.net, compile_mode, backend)
    streams = [training.RandomStreams.from_seed(c.seed) for c in configs]
    ctx = training.StepContext(accelerator, parts.net, parts.opts, parts.priors, parts.settings,
                               [training.generator(s.prior) for s in streams],
                               [training.generator(s.noise) for s in streams])
    step = variants.VARIANTS[configs[0].variant].step
    warm = dataclasses.replace(parts.data, x=parts.data.x[:200])
    t0 = time.perf_counter()
    for _ in range(2):
        training.train_epoch(ctx, step, warm, batch_size=100, epoch=0,
                             data_generators=[training.generator(1) for _ in configs])
    sync()
    t1 = time.perf_counter()
    training.train_epoch(ctx, step, parts.data, batch_size=100, epoch=0,
                         data_generators=[training.generator(s.data) for s in streams])
    sync()
    return t1 - t0, time.perf_counter() - t1


def cmd_throughput(args) -> int:
    import torch

    examples = args.examples or (200 if DRY else 3000)
    seeds = [int(s) for s in (args.seeds or ("1,2" if DRY else "1,8,32")).split(",")]
    precisions = (args.precisions or "fp32,bf16").split(",")
    data, source = images(examples)
    device = "cpu (dry run)" if DRY else (torch.cuda.get_device_name(0) if not use_cpu() else "cpu")
    result = {"device": device, "images": source, "examples_per_seed": examples, "compile": args.compile or "no",
              "backend": args.backend, "cells": []}
    deadline = time.monotonic() + args.budget
    for s in seeds:
        for precision in precisions:
            if time.monotonic() > deadline:
                result["cells"].append({"seeds": s, "precision": precision, "skipped": "time box"})
                continue
            cell = {"seeds": s, "precision": precision}
            try:
                warm, seconds = epoch_seconds(paper_pack(s, precision, examples), data, precision,
                                              args.compile, args.backend)
                cell |= {"seconds": round(seconds, 3), "samples_s": round(s * examples / seconds, 1),
                         "warmup_s": round(warm, 2)}
            except Exception as error:  # noqa: BLE001 - a cell that fails is reported, the others run
                cell["error"] = f"{type(error).__name__}: {error}"[:500]
            result["cells"].append(cell)
            print(json.dumps(cell), flush=True)
            write(args.out, result)
    write(args.out, result)
    return 0


# -- one paper-size Table 2 MNIST-100 trial -------------------------------------------------


class TimeUp(Exception):
    """Raised from on_epoch when the next epoch would not fit in the budget."""


def cmd_trial(args) -> int:
    """Table 2's MNIST 100-label cell (semi-supervised AAE, paper profile, seed 0) on the GPU
    for as many epochs as `--budget` seconds allow: it trains with the paper's epochs and
    schedule; when the next epoch would not fit, it stops at the checkpoint, saves it and
    loads it back (save_state / load_state, item 10's path) and evaluates that many epochs
    (a config with epochs = N: the schedule of the first N epochs is the paper's)."""
    import tempfile

    from aae_core import datasets
    from bench.grids import single_trial
    from bench.trial import TrialSettings, load_state, run_trial, save_state

    found = mnist_dir()
    result: dict = {"cell": "table2 mnist labels=100 semi-supervised, paper profile, seed 0", "budget_s": args.budget}
    if found is None:
        result["skipped"] = "no MNIST files (set AAE_BENCH_DATA, or copy them to scratch/mnist)"
        write(args.out, result)
        print(result["skipped"])
        return 0
    config = single_trial("semi-supervised", "mnist", "gaussian", profile="paper", labels=100)
    if DRY:
        config = dataclasses.replace(config, hidden_units=40, train_examples=600)
    data = datasets.load("mnist", found)
    settings = TrialSettings(cpu=use_cpu(), threads=None, command="scripts/gpu_check.sh")
    t0 = time.monotonic()
    last: dict = {}
    epochs: list[dict] = []

    def on_epoch(state, losses):
        epochs.append({**losses, "elapsed_s": round(time.monotonic() - t0, 1)})
        result["epochs"] = epochs
        write(args.out, result)
        last["state"] = state
        per_epoch = (time.monotonic() - t0) / len(epochs)
        if time.monotonic() - t0 + 1.5 * per_epoch > args.budget - args.evaluation_reserve:
            raise TimeUp

    rows = []
    try:
        rows = run_trial(config, settings, data=data, on_epoch=on_epoch)
        done = config.epochs
    except TimeUp:
        done = last["state"].epoch
        with tempfile.TemporaryDirectory() as directory:
            save_state(last["state"], directory)
            state = load_state(directory)
        cut = dataclasses.replace(config, epochs=done)
        rows = run_trial(cut, settings, data=data, resume=state)
    result |= {"paper_epochs": config.epochs, "epochs_done": done, "wall_s": round(time.monotonic() - t0, 1),
               "seconds_per_epoch": round(sum(e["seconds"] for e in epochs) / max(len(epochs), 1), 3),
               "rows": [{k: r.get(k) for k in ("metric", "value", "stderr", "n", "status", "device", "gpu",
                                               "matmul_precision", "cuda", "cudnn", "trial_id")} for r in rows]}
    write(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "epochs"}, indent=1, default=str))
    return 0 if rows and rows[0]["status"] == "done" else 1


# -- summary -------------------------------------------------------------------------------


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cmd_summary(args) -> int:
    out = Path(args.dir)
    info, base = _load(out / "info.json"), _load(out / "throughput.json")
    lines = ["# GPU check" + (" (DRY RUN on the CPU: the figures mean nothing)" if DRY else ""), ""]
    lines.append(f"- device: {info.get('gpu', 'none')} ({info.get('memory_gib', '?')} GiB, capability "
                 f"{info.get('capability', '?')}); torch {info.get('torch')}, CUDA {info.get('cuda') or 'none'}, "
                 f"cuDNN {info.get('cudnn') or 'none'}, NCCL {info.get('nccl') or 'none'}, matmul precision "
                 f"{info.get('matmul_precision')}")
    lines += ["", "## Steps", "", "| step | exit code | seconds |", "|---|---|---|"]
    for line in (out / "steps.txt").read_text().splitlines() if (out / "steps.txt").exists() else []:
        name, code, seconds = (line.split() + ["", "", ""])[:3]
        note = " (time box)" if code in ("124", "137") else ""
        lines.append(f"| {name} | {code}{note} | {seconds} |")
    tests = out / "pytest_cuda.txt"
    if tests.exists():
        tail = [x for x in tests.read_text().splitlines() if x.strip()][-1:] or ["(no output)"]
        lines += ["", "## CUDA-marked tests (`pytest -m cuda`)", "", f"    {tail[0]}",
                  "", "Full output: pytest_cuda.txt."]
    lines += ["", "## Seed-batched training throughput (Table 1 MNIST, paper size, one epoch)", ""]
    lines.append(f"Images: {base.get('images', '?')}, {base.get('examples_per_seed', '?')} per seed.")
    lines += ["", "| S | precision | samples/s (summed over seeds) | seconds | vs fp32 | torch.compile |",
              "|---|---|---|---|---|---|"]
    fp32 = {c["seeds"]: c.get("samples_s") for c in base.get("cells", []) if c["precision"] == "fp32"}
    compiled_runs = sorted(out.glob("throughput_compile_*.json"))
    extra = {p.stem.removeprefix("throughput_compile_"): _load(p) for p in compiled_runs}
    for c in base.get("cells", []):
        rate = c.get("samples_s")
        ratio = f"{rate / fp32[c['seeds']]:.2f}" if rate and fp32.get(c["seeds"]) else ""
        with_compile = []
        for mode, run in extra.items():
            for d in run.get("cells", []):
                if (d["seeds"], d["precision"]) == (c["seeds"], c["precision"]) and d.get("samples_s") and rate:
                    with_compile.append(f"{mode}: {d['samples_s']:.0f} ({d['samples_s'] / rate:.2f}x, "
                                        f"warm-up {d['warmup_s']} s against {c.get('warmup_s')} s)")
                elif (d["seeds"], d["precision"]) == (c["seeds"], c["precision"]):
                    with_compile.append(f"{mode}: {d.get('error') or d.get('skipped') or 'no figure'}"[:120])
        shown = f"{rate:.0f}" if rate else (c.get("error") or c.get("skipped") or "")[:120]
        lines.append(f"| {c['seeds']} | {c['precision']} | {shown} | {c.get('seconds', '')} | {ratio} | "
                     f"{'; '.join(with_compile)} |")
    if not extra:
        lines += ["", "torch.compile: not run (no time left, or it failed to start)."]
    trial = _load(out / "trial.json")
    lines += ["", "## One paper-size Table 2 MNIST-100 trial (semi-supervised, seed 0)", ""]
    if trial.get("skipped"):
        lines.append(f"Not run: {trial['skipped']}.")
    elif trial.get("rows"):
        lines.append(f"{trial['epochs_done']} of the paper's {trial['paper_epochs']} epochs in "
                     f"{trial['wall_s']} s ({trial['seconds_per_epoch']} s an epoch), budget {trial['budget_s']} s.")
        lines += ["", "| metric | value | device | matmul precision |", "|---|---|---|---|"]
        for r in trial["rows"]:
            lines.append(f"| {r['metric']} | {r['value']} | {r['device']} | {r['matmul_precision']} |")
    elif trial.get("epochs"):
        lines.append(f"Stopped before its evaluation (time box) after {len(trial['epochs'])} epochs; "
                     f"last epoch: {trial['epochs'][-1]}")
    else:
        lines.append("No result (see gpu_check.log).")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("throughput")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="")
    p.add_argument("--precisions", default="")
    p.add_argument("--examples", type=int, default=0)
    p.add_argument("--budget", type=float, default=90.0, help="seconds; later cells are skipped past it")
    p.add_argument("--compile", default="", help="torch.compile mode: default, reduce-overhead (CUDA graphs)")
    p.add_argument("--backend", default="inductor")
    p.set_defaults(func=cmd_throughput)
    p = sub.add_parser("trial")
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--evaluation-reserve", type=float, default=30.0, help="seconds kept for the evaluation")
    p.set_defaults(func=cmd_trial)
    p = sub.add_parser("summary")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_summary)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
