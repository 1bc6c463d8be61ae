"""The sweep runner: Ray Tune wiring only (trials, resources, retries, --address).

Each grid config becomes one Tune function trial that calls `bench.trial.run_trial`. Rows are
written by the driver (a Tune callback) the moment a trial reports them, so a finished trial's
rows survive whatever happens to the rest of the sweep; trials already done are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import results
from bench.config import TrialConfig, config_from_dict

log = logging.getLogger("aae_bench.runner")


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    """0 lets Ray pack as many trials as the resources allow."""

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ValueError(f"--cpus-per-trial must be > 0; got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"--gpus-per-trial must be >= 0; got {self.gpus_per_trial}")
        if self.max_concurrent < 0:
            raise ValueError(f"--max-concurrent must be >= 0; got {self.max_concurrent}")

    @property
    def threads(self) -> int:
        # Ray sets OMP_NUM_THREADS to the trial's CPU count; we set torch's explicitly too,
        # because losses change bitwise with the thread count (it is recorded in every row).
        return max(1, int(self.cpus_per_trial))


@dataclass
class SweepSummary:
    total: int
    skipped: int
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def line(self) -> str:
        ran = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none run"
        return (f"{self.total} trials: {self.skipped} already done, {ran} "
                f"({self.wall_s:.0f} s)")


def pending_configs(configs: list[TrialConfig], results_dir: str | os.PathLike) -> list[TrialConfig]:
    """Configs whose trial has no complete `done` rows yet (growable grids, reruns of failures)."""
    done: set[str] = set()
    for grid in {c.grid for c in configs}:
        done |= results.done_trial_ids(results_dir, grid)
    return [c for c in configs if c.trial_id not in done]


def _trainable(params: dict, data: dict, settings: dict) -> None:
    """One Tune trial. Runs in a Ray worker process."""
    from ray import tune

    from bench.trial import TrialState, load_state, run_trial, save_state

    config = config_from_dict(params["config"])
    checkpoint = tune.get_checkpoint()
    resume: TrialState | None = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_state(directory)

    def on_epoch(state: TrialState, losses: dict) -> None:
        with tempfile.TemporaryDirectory() as directory:
            save_state(state, directory)
            tune.report({**losses, "completed": False},
                        checkpoint=tune.Checkpoint.from_directory(directory))

    rows = run_trial(config, data=data[(config.dataset, config.fold or 0)], artifacts_dir=settings["artifacts_dir"],
                     threads=settings["threads"], cpu=settings["cpu"], resume=resume,
                     on_epoch=on_epoch, command=settings["command"])
    tune.report({"completed": True, "rows": json.dumps(rows)})


def _callback_class():
    from ray import tune

    class RowWriter(tune.Callback):
        """Driver side: append a trial's rows as soon as it reports them; show progress."""

        def __init__(self, results_dir: Path, total: int):
            self.results_dir, self.total = results_dir, total
            self.statuses: dict[str, int] = {}
            self.start = time.perf_counter()

        def _finished(self) -> int:
            return sum(self.statuses.values())

        def on_trial_start(self, iteration, trials, trial, **info):
            cfg = trial.config["config"]
            print(f"[start] {cfg['grid']} seed {cfg['seed']} trial {_short(trial)}", flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            cfg = trial.config["config"]
            if "rows" in result:
                rows = json.loads(result["rows"])
                path = results.append_rows(self.results_dir, cfg["grid"], rows)
                status = rows[0]["status"] if rows else "error"
                self.statuses[status] = self.statuses.get(status, 0) + 1
                main = next((r for r in rows if r["metric"] in ("parzen_ll",)), rows[0] if rows else {})
                print(f"[{status}] trial {_short(trial)} seed {cfg['seed']}: "
                      f"{main.get('metric', '')} = {main.get('value', float('nan')):.2f} "
                      f"-> {path} ({self._finished()}/{self.total} finished, "
                      f"{time.perf_counter() - self.start:.0f} s)", flush=True)
            elif "epoch" in result:
                print(f"[epoch] trial {_short(trial)} {result['epoch']}/{cfg['epochs']} "
                      f"recon {result['loss_reconstruction']:.3f} disc "
                      f"{result['loss_discriminator']:.3f} gen {result['loss_generator']:.3f} "
                      f"({result['seconds']:.1f} s)", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            cfg = dict(trial.config["config"])
            config = config_from_dict(cfg)
            message = _error_message(trial)
            row = {"trial_id": config.trial_id, "grid": config.grid, "profile": config.profile,
                   "seed": config.seed, "metric": "parzen_ll", "value": float("nan"),
                   "status": "error", "error": message, **config.as_dict()}
            results.append_rows(self.results_dir, config.grid, [row])
            self.statuses["error"] = self.statuses.get("error", 0) + 1
            print(f"[error] trial {_short(trial)} seed {config.seed}: {message}", flush=True)

    return RowWriter


def _short(trial) -> str:
    return trial.config["config"].get("trial_id", trial.trial_id)


def _error_message(trial) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (see Ray logs)"


def _prepare_environment() -> None:
    # Ray's unix socket paths must stay short (107 bytes); a long TMPDIR breaks plasma.
    os.environ.setdefault("RAY_TMPDIR", "/tmp/aae-ray")
    # Snapshot the experiment often, so that a killed driver loses at most a few seconds.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_sweep(
    configs: list[TrialConfig],
    data: dict,
    *,
    results_dir: str | os.PathLike,
    storage: str | None = None,
    address: str | None = None,
    resources: Resources = Resources(),
    command: str = "",
) -> SweepSummary:
    """Run every pending config as a Ray Tune trial; rows go to `results_dir` as trials finish.

    `address` None starts Ray locally (or joins RAY_ADDRESS if it is set); an address joins that
    cluster. `data` maps (data set name, fold) to loaded `aae_core.datasets.Dataset`s (loaded
    and verified by the caller before anything runs).
    """
    t0 = time.perf_counter()
    results_dir = Path(results_dir).resolve()
    todo = pending_configs(configs, results_dir)
    summary = SweepSummary(total=len(configs), skipped=len(configs) - len(todo))
    if not todo:
        return summary

    _prepare_environment()
    import ray
    from ray import tune

    address = address or os.environ.get("RAY_ADDRESS") or None
    init_args = {"include_dashboard": False, "log_to_driver": False,
                 "configure_logging": True, "logging_level": logging.WARNING}
    if address is None:
        init_args["num_cpus"] = os.cpu_count()
    ray.init(address=address, **init_args)
    # Ray's own SIGTERM handler dies without saving state; SIGUSR1 makes Tune stop cleanly.
    # Installed after ray.init (which would overwrite it) and restored afterwards.
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGUSR1))
    try:
        _check_resources(ray.cluster_resources(), resources)
        storage_path = os.path.abspath(storage or results_dir / "ray")
        settings = {"artifacts_dir": str(results_dir / "artifacts" / todo[0].grid),
                    "threads": resources.threads, "cpu": resources.gpus_per_trial == 0,
                    "command": command}
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, data=data, settings=settings),
            {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"config": tune.grid_search([c.as_dict() | {"trial_id": c.trial_id}
                                                     for c in todo])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=resources.max_concurrent or None,
                trial_dirname_creator=lambda t: f"{t.config['config']['trial_id']}",
                reuse_actors=False),
            run_config=tune.RunConfig(
                name=f"{todo[0].grid}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_path,
                verbose=0, callbacks=[_callback_class()(results_dir, len(todo))],
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        tuner.fit()
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)
    summary.statuses = _statuses(results_dir, todo)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _statuses(results_dir: Path, configs: list[TrialConfig]) -> dict[str, int]:
    wanted = {c.trial_id for c in configs}
    counts: dict[str, int] = {}
    for grid in {c.grid for c in configs}:
        frame = results.read_rows(results_dir, grid)
        if frame.empty:
            continue
        per_trial = frame[frame["trial_id"].isin(wanted)].groupby("trial_id")["status"].first()
        for status in per_trial:
            counts[status] = counts.get(status, 0) + 1
    missing = len(wanted) - sum(counts.values())
    if missing:
        counts["not run"] = missing
    return counts


def _check_resources(available: dict, resources: Resources) -> None:
    # Tune leaves trials PENDING forever when a request cannot be met: refuse up front.
    if resources.gpus_per_trial > 0 and available.get("GPU", 0) < resources.gpus_per_trial:
        raise ValueError(f"--gpus-per-trial {resources.gpus_per_trial} but the Ray cluster has "
                         f"{available.get('GPU', 0)} GPUs")
    if available.get("CPU", 0) < resources.cpus_per_trial:
        raise ValueError(f"--cpus-per-trial {resources.cpus_per_trial} but the Ray cluster has "
                         f"{available.get('CPU', 0)} CPUs")
