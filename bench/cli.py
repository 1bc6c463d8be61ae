"""The `aae-bench` command line: parses arguments and calls the modules that do the work.

Every user error (bad value, missing data, unknown name) ends in one line on stderr and a
non-zero exit, never a traceback, and nothing is written to results before the input is valid.
Only the suite's own error types are caught: any other exception is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C


class UserError(Exception):
    """An error the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise UserError(f"{self.prog}: {message}")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a grid (a paper table) as Ray Tune trials")
    p.add_argument("grid", help="grid name (see `aae-bench list`)")
    p.add_argument("--profile", default="quick", help="smoke | quick | long | paper (default quick)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument("--results", default="results", help="directory of result rows (default results)")
    p.add_argument("--data-dir", default=None, help="directory holding the data files")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--storage", default=None,
                   help="Ray storage path every node can reach (default <results>/ray)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs (and torch threads) of each trial process, or of each worker")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs of each trial process or worker; a fraction packs trials on a GPU")
    p.add_argument("--max-concurrent", type=int, default=0, help="0 = as many as fit")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="train each trial data parallel over N Ray Train workers (DDP; the "
                        "batch size is split over them); on GPUs each worker needs whole GPUs "
                        "(--gpus-per-trial 1, 2, ...)")
    p.add_argument("--seeds-per-trial", type=int, default=1,
                   help="train up to S seeds of one config as one seed-batched model in one "
                        "Tune trial; its rows are those of S unbatched trials (same form and "
                        "trial ids)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the profile's epochs (a different config: new trial ids)")
    p.add_argument("--dataset", action="append", default=[],
                   help="run only this data set's cells (repeatable)")
    p.add_argument("--trial", action="append", default=[], metavar="ID",
                   help="run only the trial with this id (repeatable; `--dry-run` lists the "
                        "ids, which depend on the profile, seeds, --epochs and --precision)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the trials (and which are done or stale, and why) and the hours "
                        "the trials to run would take here (from measured rates, cached per "
                        "machine; saved as <results>/estimates/<grid>-<profile>.json for the "
                        "report's estimate against actual), and exit")
    p.add_argument("--no-estimate", action="store_true",
                   help="with --dry-run: list the trials only (no calibration, nothing saved)")
    p.add_argument("--keep-old-versions", action="store_true",
                   help="count a trial done by older training code (an older TRAINING_VERSION) "
                        "as done; by default it runs again, its old rows kept")
    p.add_argument("--no-table", action="store_true", help="do not print the table at the end")
    _add_precision(p)


# The command line says fp32; the config field keeps Accelerate's "no", so fp32 trial ids stay.
PRECISION_FLAG = {"fp32": "no", "bf16": "bf16"}


def _add_precision(p) -> None:
    p.add_argument("--precision", choices=sorted(PRECISION_FLAG), default="fp32",
                   help="fp32 (default) or bf16: every GEMM of the models in bf16 (AMX on recent "
                        "x86 CPUs, tensor cores on GPUs); losses, optimizer state, master weights "
                        "and Parzen stay fp32. A different config: new trial ids")


def _with_precision(config, flag: str):
    return dataclasses.replace(config, precision=PRECISION_FLAG[flag])


def warn_slow_bf16(flag: str, gpus: float) -> str | None:
    """The warning for bf16 on a CPU without bf16 units (printed, not raised: a cluster's trial
    nodes may have what the driver's CPU lacks), or None."""
    from bench import provenance

    if flag != "bf16" or gpus > 0 or provenance.cpu_has_bf16():
        return None
    return ("aae-bench: warning: this CPU has no AVX-512 or AMX bf16 kernels (oneDNN), so "
            "bf16 GEMMs are emulated and much slower than fp32 here (33x measured on an AVX2 "
            "CPU); --precision fp32 is faster on this machine")


def _print_bf16_warning(flag: str, gpus: float) -> None:
    warning = warn_slow_bf16(flag, gpus)
    if warning:
        print(warning, file=sys.stderr)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train and evaluate one model, without Ray")
    p.add_argument("--variant", required=True, help="see `aae-bench list`")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--prior", default="gaussian")
    p.add_argument("--labels", type=int, default=None, help="labelled examples (0 = all)")
    p.add_argument("--clusters", type=int, default=None)
    p.add_argument("--z-dim", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="quick", help="smoke | quick | long | paper (default quick)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="as for `run`: 0 (default) trains on the CPU, > 0 on this process's "
                        "CUDA GPU (one; CUDA_VISIBLE_DEVICES chooses which)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/train", help="directory for the checkpoint and latents")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_precision(p)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write the paper's tables and figures from result rows")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="reports")


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="compare a run's metrics with a committed baseline")
    p.add_argument("--baseline", required=True)
    p.add_argument("--results", default="results")


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list grids, profiles, variants, priors and data sets")
    p.add_argument("--json", action="store_true")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect or download data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="split sizes, shapes, label counts, file location")
    info.add_argument("name")
    info.add_argument("--data-dir", default=None)
    info.add_argument("--json", action="store_true")
    fetch = dsub.add_parser("fetch", help="download and verify a data set")
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aae-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_run, _add_train, _add_report, _add_check, _add_list, _add_data):
        add(sub)
    return parser


def cmd_run(args) -> int:
    from aae_core import datasets
    from bench import grids, runner, store

    configs = grids.grid_configs(args.grid, args.profile, args.seeds, tuple(args.dataset))
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1; got {args.epochs}")
        configs = [dataclasses.replace(c, epochs=args.epochs) for c in configs]
    configs = [_with_precision(c, args.precision) for c in configs]
    configs = grids.only_trials(configs, tuple(args.trial), args.grid)
    _print_bf16_warning(args.precision, args.gpus_per_trial)
    resources = runner.Resources(args.cpus_per_trial, args.gpus_per_trial, args.max_concurrent,
                                 args.workers_per_trial, args.seeds_per_trial)
    if args.dry_run:
        planned = runner.plan(configs, args.results, args.keep_old_versions)
        _print_dry_run(planned, resources.seeds_per_trial)
        if not args.no_estimate:
            _print_estimate(args, [p.config for p in planned if p.state != runner.DONE], resources)
        return 0
    pending = runner.pending_configs(configs, args.results, args.keep_old_versions)
    # Load and verify every data set first: a missing or corrupt file stops the run here,
    # before Ray starts and before anything is written.
    data = {(c.dataset, c.fold or 0): None for c in pending}
    data = {key: datasets.load(key[0], args.data_dir, fold=key[1]) for key in data}
    if pending:  # rows will be written: a --results that cannot be is an error now, not later
        store.check_writable(args.results)
    summary = runner.run_sweep(configs, data, results_dir=args.results, storage=args.storage,
                               address=args.address, resources=resources,
                               command=_command_line(), keep_old_versions=args.keep_old_versions)
    print(summary.line())
    if summary.interrupted:
        finished = sum(n for s, n in summary.statuses.items() if s != "not run")
        print(f"aae-bench: sweep interrupted: {finished} of {len(pending)} trials finished; "
              f"run the same command again to continue (finished trials are kept, unfinished "
              f"ones continue from their last checkpoint)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.no_table:
        from bench import report

        print()
        print(report.markdown_for_grid(args.results, args.grid))
    failed = sum(n for s, n in summary.statuses.items() if s != "done")
    return 1 if failed else 0


def _print_estimate(args, configs: list, resources) -> None:
    """The hours the trials to run would take on this machine (bench.cost), saved beside the
    rows when the results directory can take it (the report sets it against the actual)."""
    from bench import cost

    if not configs:
        print("estimated hours on this machine: nothing to run")
        return
    print()
    device = "cuda" if resources.gpus_per_trial else "cpu"
    estimates = cost.estimate(configs, threads=resources.threads, seeds_per_trial=resources.seeds_per_trial,
                              precision=configs[0].precision, device=device)
    slots = resources.max_concurrent or max(1, int((os.cpu_count() or 1) // resources.cpus_of_trial))
    print(cost.format_estimate(estimates, slots=slots))
    path = cost.estimates_path(args.results, args.grid, args.profile)
    try:
        cost.save_estimates(estimates, path)
        print(f"estimate saved: {path}")
    except OSError as exc:  # a read-only results directory: the estimate is still printed
        print(f"estimate not saved ({path}: {exc.strerror or exc})")


def _print_dry_run(planned: list, seeds_per_trial: int) -> None:
    """Every trial, with what the run will do with it (run it, or not: done, and by which grid);
    with packs, one line per Tune trial (as if nothing were done yet)."""
    from bench import packs

    configs = [p.config for p in planned]
    states = {p.config.trial_id: p for p in planned}
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.state] = counts.get(p.state, 0) + 1
    state_line = ""
    if set(counts) - {"to run"}:
        state_line = ": " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if seeds_per_trial == 1:
        for c in configs:
            p = states[c.trial_id]
            state = f"  [{p.state}: {p.why}]" if p.why else ""
            print(f"{c.trial_id}  {c.grid}  {c.profile}  {c.variant}/{c.dataset}/{c.prior}  "
                  f"seed {c.seed}  epochs {c.epochs}{state}")
        print(f"{len(configs)} trials{state_line}")
        return
    tune_trials = packs.pack_configs(configs, seeds_per_trial)
    for pack in tune_trials:
        c = pack[0]
        print(f"{packs.pack_name([m.trial_id for m in pack])}  {c.grid}  {c.profile}  "
              f"{c.variant}/{c.dataset}/{c.prior}  seeds {', '.join(str(m.seed) for m in pack)}  "
              f"epochs {c.epochs}  trials {' '.join(m.trial_id for m in pack)}")
    print(f"{len(configs)} trials in {len(tune_trials)} Tune trials of up to {seeds_per_trial} "
          f"seeds{state_line}")


def cmd_train(args) -> int:
    from aae_core import datasets
    from bench import grids, trial

    config = grids.single_trial(args.variant, args.dataset, args.prior, profile=args.profile,
                                seed=args.seed, labels=args.labels, clusters=args.clusters,
                                epochs=args.epochs, z_dim=args.z_dim)
    config = _with_precision(config, args.precision)
    cpu = train_on_cpu(args.gpus_per_trial)
    _print_bf16_warning(args.precision, args.gpus_per_trial)
    data = datasets.load(config.dataset, args.data_dir, fold=config.fold or 0)
    if not args.json:
        logging.getLogger("aae_bench").setLevel(logging.INFO)
    settings = trial.TrialSettings(artifacts_dir=args.out, threads=args.threads, cpu=cpu,
                                   command=_command_line())
    rows = trial.run_trial(config, settings, data=data)
    status = rows[0]["status"] if rows else "error"
    metrics = {r["metric"]: r["value"] for r in rows}
    summary = {"trial_id": config.trial_id, "variant": config.variant, "dataset": config.dataset,
               "prior": config.prior, "seed": config.seed, "profile": config.profile,
               "status": status, "error": rows[0]["error"] if rows else "",
               "wall_s": rows[0]["wall_s"] if rows else None, "metrics": metrics,
               "artifacts": str(Path(args.out) / config.trial_id)}
    if args.json:
        print(json.dumps(summary, allow_nan=True))
    else:
        print(f"{config.variant} on {config.dataset} ({config.prior}), seed {config.seed}, "
              f"{config.profile}: {status} in {summary['wall_s']} s")
        for name, value in metrics.items():
            print(f"  {name:<32} {value:.4f}")
        print(f"  artifacts: {summary['artifacts']}")
    return 0 if status == "done" else 1


def train_on_cpu(gpus: float) -> bool:
    """`train --gpus-per-trial`: the device choice of `run` (0 = the CPU) for one process."""
    if gpus == 0:
        return True
    if not 0 < gpus <= 1:
        raise UserError(f"--gpus-per-trial must be 0 (the CPU) or in (0, 1] (this process's "
                        f"GPU; train uses one); got {gpus:g}")
    import torch

    if not torch.cuda.is_available():
        build = (f"a CPU build of torch {torch.__version__}" if torch.version.cuda is None
                 else f"torch {torch.__version__} with CUDA {torch.version.cuda}, no device found")
        raise UserError(f"--gpus-per-trial {gpus:g}: no CUDA GPU is visible to this process "
                        f"({build}); use --gpus-per-trial 0 to train on the CPU")
    return False


def cmd_report(args) -> int:
    from bench import report, results

    results.require_rows(args.results)  # before anything is written into --out
    for path in report.write_report(args.results, args.out):
        print(path)
    return 0


def cmd_check(args) -> int:
    from bench import regress

    code, text = regress.check(args.baseline, args.results)
    print(text)
    return code


def cmd_list(args) -> int:
    from aae_core import datasets, priors
    from aae_core.variants import VARIANTS
    from bench import config, grids

    listing = {
        "grids": {name: {p: len(fn(p, 1)) for p in config.PROFILES} for name, fn in grids.GRIDS.items()},
        "profiles": list(config.PROFILES),
        "variants": sorted(VARIANTS),
        "priors": sorted(priors.PRIORS),
        "datasets": sorted(datasets.DATASETS),
    }
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print("grids (trials per seed, by profile):")
    for name, counts in listing["grids"].items():
        print(f"  {name:<12} " + "  ".join(f"{p}={n}" for p, n in counts.items()))
    for key in ("profiles", "variants", "priors", "datasets"):
        print(f"{key}: {', '.join(listing[key])}")
    return 0


def cmd_data(args) -> int:
    from bench import data_command

    if args.data_command == "info":
        print(data_command.info(args.name, args.data_dir, args.json))
    else:
        print(data_command.fetch(args.name, args.data_dir))
    return 0


COMMANDS = {"run": cmd_run, "train": cmd_train, "report": cmd_report, "check": cmd_check, "list": cmd_list,
            "data": cmd_data}


def _command_line() -> str:
    return shlex.join(["aae-bench", *sys.argv[1:]])


def _suite_errors() -> tuple[type[Exception], ...]:
    """The suite's own errors: each says in one line what the user can fix. Any other
    exception is a bug and shows its traceback."""
    from aae_core.files import DataError
    from bench.config import ConfigError
    from bench.regress import BaselineError
    from bench.runner import SweepError
    from bench.store import ResultsError

    return UserError, ConfigError, DataError, BaselineError, SweepError, ResultsError


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("AAE_BENCH_LOG", "WARNING"),
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except _suite_errors() as exc:
        print(f"aae-bench: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aae-bench: interrupted; finished trials are saved, run again to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
