"""The sweep runner: Ray Tune wiring only (trials, resources, retries, resume, --address).

Each grid config becomes one Tune function trial that calls `bench.trial.run_trial` (with
`seeds_per_trial` > 1, seeds of one config are packed (`bench.packs`) into one trial, trained as one
seed-batched model, its rows those of each seed's own trial id); with
`workers_per_trial` > 1 the Tune trial instead fits a Ray Train `TorchTrainer` whose workers
call it data parallel (Accelerate's DDP inside). Rows are written by the driver
(`bench.progress`) the moment a trial reports them, so a finished trial's rows survive whatever
happens to the rest of the sweep.

Resume. The rows in results are the truth: a trial whose rows are all `done` never runs again.
Every Tune experiment a sweep starts is recorded in its directory (`aae_sweep.json`: the grid,
the results directory, its trial ids, the resources, whether it finished). A sweep whose driver
died (SIGKILL, Ctrl-C, a lost head node) leaves an unfinished record; the next sweep of the same
grid into the same results directory restores that experiment with `Tuner.restore`, so its
unfinished trials continue from their last per-epoch checkpoint and its errored ones are
resumed, while restored trials whose rows are done meanwhile are told to skip. Trials the old
experiment does not hold (the grid grew, failures to retry) then run in a new experiment.
A restored experiment keeps the --max-concurrent it started with (Tuner.restore takes no
TuneConfig); the run says so when this run asks for another (`kept_concurrency`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import results
from bench.config import TrialConfig, config_from_dict
from bench.packs import Pack, pack_configs, pack_from_params, pack_name, pack_params, pack_trial_ids
from bench.trial import CUBLAS_WORKSPACE, TrialSettings
from bench.versions import TRAINING_VERSION

log = logging.getLogger("aae_bench.runner")

RECORD = "aae_sweep.json"
# A restored experiment's trials must be the trials asked for: packs (seeds_per_trial) and
# thread or worker counts change what a Tune trial is, or its numbers.
RESTORE_MUST_MATCH = ("cpus_per_trial", "gpus_per_trial", "workers_per_trial", "seeds_per_trial")
# A data-parallel trial's Tune process only waits on its Ray Train workers; its token share of
# a CPU is taken from the workers' requests so that N workers x C CPUs fit in N x C cores
# (on 2 cores, 1 CPU for the driver + 2 x 1 for the workers deadlocks: see the Ray notes).
DRIVER_CPU = 0.01


class SweepError(ValueError):
    """A sweep that cannot run as asked (resources, the cluster, a busy results directory):
    the user reads it as one line."""


def say(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    """CPUs of each trial process (with several workers: of each worker)."""
    gpus_per_trial: float = 0.0
    """GPUs of each trial process (each worker); a fraction packs trials onto one GPU."""
    max_concurrent: int = 0
    """0 lets Ray pack as many trials as the resources allow."""
    workers_per_trial: int = 1
    """> 1: each trial runs data parallel over this many Ray Train workers (DDP, gloo on CPU)."""
    seeds_per_trial: int = 1
    """> 1: up to this many seeds of one config train as one seed-batched model in one trial."""

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise SweepError(f"--cpus-per-trial must be > 0; got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise SweepError(f"--gpus-per-trial must be >= 0; got {self.gpus_per_trial}")
        if self.max_concurrent < 0:
            raise SweepError(f"--max-concurrent must be >= 0; got {self.max_concurrent}")
        if self.workers_per_trial < 1:
            raise SweepError(f"--workers-per-trial must be >= 1; got {self.workers_per_trial}")
        if self.seeds_per_trial < 1:
            raise SweepError(f"--seeds-per-trial must be >= 1; got {self.seeds_per_trial}")
        if self.workers_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            # Refused, not run on gloo: workers sharing a GPU see one device between them, and
            # Accelerate's DDP puts rank r on cuda:r (not visible) whatever the backend.
            raise SweepError(f"--workers-per-trial {self.workers_per_trial} needs whole GPUs per "
                             f"worker (--gpus-per-trial 0, 1, 2, ...); got {self.gpus_per_trial}: "
                             f"workers sharing a GPU would put several NCCL ranks on it (to pack "
                             f"trials on a GPU, use a fraction with --workers-per-trial 1)")

    @property
    def threads(self) -> int:
        # Ray sets OMP_NUM_THREADS to the trial's CPU count; we set torch's explicitly too,
        # because losses change bitwise with the thread count (it is recorded in every row).
        return max(1, int(self.cpus_per_trial))

    @property
    def cpus_of_trial(self) -> float:
        return self.cpus_per_trial * self.workers_per_trial

    @property
    def gpus_of_trial(self) -> float:
        return self.gpus_per_trial * self.workers_per_trial

    def tune_request(self) -> dict:
        """What one Tune trial asks Ray for (a data-parallel trial's workers ask separately)."""
        if self.workers_per_trial == 1:
            return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
        return {"cpu": DRIVER_CPU}

    def worker_request(self) -> dict:
        """What each Ray Train worker of a data-parallel trial asks for."""
        request = {"CPU": self.cpus_per_trial - DRIVER_CPU / self.workers_per_trial}
        if self.gpus_per_trial:
            request["GPU"] = self.gpus_per_trial
        return request

    def concurrency(self, cluster_cpus: float, cluster_gpus: float = 0.0) -> int | None:
        """Tune's max_concurrent_trials (`max_concurrent` when given). Data parallel: never more
        trials than the cluster can give all their workers at once, in CPUs and in GPUs, or
        waiting trials hold nothing (their Tune process asks for no GPU) and time out in Train.
        Single-process trials ask Tune for their GPUs themselves: Ray packs them (None)."""
        if self.max_concurrent:
            return self.max_concurrent
        if self.workers_per_trial == 1:
            return None
        fits = math.floor(cluster_cpus / self.cpus_of_trial + 1e-9)
        if self.gpus_per_trial:
            fits = min(fits, math.floor(cluster_gpus / self.gpus_of_trial + 1e-9))
        return max(1, fits)


@dataclass
class SweepSummary:
    total: int
    skipped: int
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    interrupted: bool = False
    """The driver stopped before every trial finished (Ctrl-C, SIGTERM): run again to continue."""

    @property
    def unfinished(self) -> int:
        return self.statuses.get("not run", 0)

    def line(self) -> str:
        ran = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none run"
        stopped = " - interrupted" if self.interrupted else ""
        return (f"{self.total} trials: {self.skipped} already done, {ran} "
                f"({self.wall_s:.0f} s){stopped}")


TO_RUN, DONE, STALE = "to run", "done", "stale"


@dataclass(frozen=True)
class Planned:
    """What a sweep will do with one config, and why (what `run --dry-run` prints)."""

    config: TrialConfig
    state: str
    """TO_RUN, DONE, or STALE: done only by older training code, so run again."""
    why: str = ""


def plan(configs: list[TrialConfig], results_dir: str | os.PathLike,
         keep_old_versions: bool = False) -> list[Planned]:
    """Each config's state from the rows of every grid in `results_dir` (a trial is its config,
    whichever grid ran it: figure9 finds table3's trials done). A trial done only at an older
    training version (bench.versions) is stale and runs again, its old rows kept beside the
    new ones, unless `keep_old_versions`."""
    frame = results.read_rows(results_dir) if Path(results_dir).is_dir() else pd.DataFrame()
    done = results.done_versions(frame)
    ran_by = (frame.groupby("trial_id")["grid"].agg(lambda g: sorted(set(map(str, g))))
              if not frame.empty else pd.Series(dtype=object))
    out = []
    for c in configs:
        versions = done.get(c.trial_id, set())
        others = [g for g in ran_by.get(c.trial_id, []) if g != c.grid]
        by = f" by {', '.join(others)}" if others else ""
        if TRAINING_VERSION in versions:
            out.append(Planned(c, DONE, f"already run{by}"))
        elif versions and keep_old_versions:
            out.append(Planned(c, DONE, f"run{by} at training version "
                                        f"{results.version_name(max(versions))}, kept "
                                        f"(--keep-old-versions)"))
        elif versions:
            out.append(Planned(c, STALE, f"its done rows are training version "
                                         f"{results.version_name(max(versions))}, the code is "
                                         f"{TRAINING_VERSION}: runs again (old rows kept)"))
        else:
            out.append(Planned(c, TO_RUN))
    return out


def pending_configs(configs: list[TrialConfig], results_dir: str | os.PathLike,
                    keep_old_versions: bool = False) -> list[TrialConfig]:
    """Configs whose trial has no complete `done` rows of the current training version yet
    (growable grids, reruns of failures, trials of older code). Rows of every grid count: a
    trial is its config, whichever grid ran it."""
    return [p.config for p in plan(configs, results_dir, keep_old_versions) if p.state != DONE]


# -- experiment records ------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    """One Tune experiment of a sweep, as recorded in its directory beside Tune's own state."""

    path: Path
    trial_ids: tuple[str, ...]
    resources: dict
    finished: bool


def sweep_key(grid: str, results_dir: str | os.PathLike) -> str:
    """Names every experiment of one grid sweeping into one results directory."""
    digest = hashlib.sha256(str(Path(results_dir).resolve()).encode()).hexdigest()[:8]
    return f"{grid}-{digest}"


def find_experiments(storage: Path, key: str) -> list[Experiment]:
    """The recorded experiments of `key` under `storage`, oldest first."""
    found = []
    for record in sorted(storage.glob(f"{key}-*/{RECORD}")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        found.append(Experiment(record.parent, tuple(data["trial_ids"]), data["resources"],
                                bool(data["finished"])))
    return found


def start_experiment(storage: Path, key: str, configs: list[TrialConfig], results_dir: Path,
                     resources: Resources) -> Experiment:
    """A new experiment directory, recorded (unfinished) before Tune writes anything into it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = storage / f"{key}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = storage / f"{key}-{stamp}-{n}"
    path.mkdir(parents=True)
    experiment = Experiment(path, tuple(c.trial_id for c in configs),
                            dataclasses.asdict(resources), finished=False)
    _write_record(experiment, grid=configs[0].grid, results_dir=results_dir)
    return experiment


def mark_finished(experiment: Experiment, why: str = "") -> Experiment:
    """Nothing left to restore from this experiment (all its trials finished, or superseded)."""
    record = json.loads((experiment.path / RECORD).read_text())
    done = dataclasses.replace(experiment, finished=True)
    _write_record(done, grid=record["grid"], results_dir=record["results_dir"], why=why)
    return done


def _write_record(experiment: Experiment, *, grid: str, results_dir, why: str = "") -> None:
    record = {"grid": grid, "results_dir": str(results_dir), "trial_ids": list(experiment.trial_ids),
              "resources": experiment.resources, "finished": experiment.finished, "why": why}
    tmp = experiment.path / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, experiment.path / RECORD)


def kept_concurrency(recorded: dict, asked: Resources) -> str:
    """Why a restored experiment ignores this run's --max-concurrent ("" when it does not):
    Tuner.restore takes no TuneConfig, so Tune keeps the limit the experiment started with
    (seen on Ray 2.60: 1 at a time on a head with a CPU to spare)."""
    before = int(recorded.get("max_concurrent", 0))
    if before == asked.max_concurrent:
        return ""
    def words(n: int) -> str:
        return f"{n} at a time" if n else "as many as fit"
    return (f"its trials keep the limit they started with ({words(before)}): Tune restores an "
            f"experiment with its own settings; --max-concurrent {asked.max_concurrent} "
            f"({words(asked.max_concurrent)}) applies to the trials it does not hold")


@contextmanager
def _exclusive(storage: Path, key: str) -> Iterator[None]:
    """One driver per (grid, results dir) at a time: two would restore the same experiment."""
    storage.mkdir(parents=True, exist_ok=True)
    with open(storage / f".{key}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another aae-bench run is sweeping this grid into these results "
                             f"(lock {storage / f'.{key}.lock'})") from None
        yield


# -- the trials (they run in Ray worker processes) ---------------------------------------


@dataclass(frozen=True)
class ExperimentSettings:
    """What every Tune trial of one experiment gets beside its config (`tune.with_parameters`)."""

    trial: TrialSettings
    """How `run_trial` runs (artifacts, threads, device, command line, workers)."""
    skip: frozenset[str]
    """Trials of a restored experiment whose rows were written after its last snapshot."""
    worker_request: dict
    """Data parallel: what each Ray Train worker asks for."""
    train_storage: str
    """Data parallel: where the trials' Ray Train runs keep their checkpoints."""


def _where() -> dict:
    """Which Ray node runs this process: rows record it (one host may hold several nodes)."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address()}


def _trainable(params: dict, data: dict, settings: ExperimentSettings) -> None:
    """One Tune trial. `data` maps (data set, fold) to object refs of loaded data sets."""
    import ray
    from ray import tune

    pack = pack_from_params(params["config"])
    if all(c.trial_id in settings.skip for c in pack):
        # A restored trial whose rows were written after the experiment's last snapshot.
        # (A pack with some members done runs again: rows merge per trial id and metric.)
        tune.report({"completed": True, "skipped": True})
        return
    data_ref = data[(pack[0].dataset, pack[0].fold or 0)]
    if settings.trial.workers > 1:
        _fit_data_parallel(pack, data_ref, settings)
        return
    _run_and_report(pack, ray.get(data_ref), settings.trial, tune.report, tune.get_checkpoint,
                    tune.Checkpoint)


def _fit_data_parallel(pack: Pack, data_ref, settings: ExperimentSettings) -> None:
    """The Tune side of a data-parallel trial: a TorchTrainer (Train V2 inside a Tune function).

    Its Train run is named after the trial inside this experiment, so a retried or restored
    trial finds that run's checkpoints and its workers continue from the latest one.
    """
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(
        _train_worker,
        train_loop_config={"configs": [c.as_dict() for c in pack], "data": data_ref,
                           "settings": settings.trial},
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.trial.workers, use_gpu=not settings.trial.cpu,
            resources_per_worker=settings.worker_request),
        run_config=ray.train.RunConfig(
            name=pack_name([c.trial_id for c in pack]), storage_path=settings.train_storage,
            callbacks=[TuneReportCallback()],  # rank 0's reports become the Tune trial's
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    ).fit()


def _train_worker(loop: dict) -> None:
    """One rank of a data-parallel trial (a Ray Train worker). Every rank reports at the same
    points (Train expects it); rank 0 alone attaches checkpoints and rows."""
    import ray
    import ray.train

    pack = tuple(config_from_dict(c) for c in loop["configs"])
    _run_and_report(pack, ray.get(loop["data"]), loop["settings"], ray.train.report,
                    ray.train.get_checkpoint, ray.train.Checkpoint)


def _run_and_report(pack: Pack, data, settings: TrialSettings, report, get_checkpoint,
                    checkpoint_class) -> None:
    """What a Tune trial and a Ray Train worker both do around `run_trial`: continue from the
    latest checkpoint, say where the trial runs, checkpoint every epoch, report the rows.
    `report`, `get_checkpoint` and `checkpoint_class` are Tune's or Ray Train's."""
    from bench.trial import load_state, run_trial, save_state

    resume = None
    checkpoint = get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_state(directory)
    where = _where()
    report({"started": True, "resumed_from_epoch": resume.epoch if resume else 0, **where})

    def on_epoch(state, losses: dict) -> None:
        if state is None:  # a data-parallel rank > 0: it reports, rank 0 checkpoints
            report({**losses, "completed": False})
            return
        with tempfile.TemporaryDirectory() as directory:
            save_state(state, directory)
            report({**losses, "completed": False},
                   checkpoint=checkpoint_class.from_directory(directory))

    rows = run_trial(pack, dataclasses.replace(settings, node=where), data=data, resume=resume,
                     on_epoch=on_epoch)
    report({"completed": True, "rows": json.dumps(rows)})


# -- the driver --------------------------------------------------------------------------


def _prepare_environment() -> None:
    # Ray's unix socket paths must stay short (107 bytes); a long TMPDIR breaks plasma.
    os.environ.setdefault("RAY_TMPDIR", "/tmp/aae-ray")
    # Snapshot the experiment often, so that a killed driver loses at most a few seconds.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    # The classic reporter at verbose=0 prints nothing; the new one prints a header box and a
    # TensorBoard hint. Our own lines (bench.progress) say what happens.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def worker_runtime_env() -> dict:
    """The environment of every Ray worker process of a sweep (Tune trials, Ray Train workers):
    a job-level runtime_env, set before each process starts, so before its first CUDA call.
    cuBLAS reads CUBLAS_WORKSPACE_CONFIG once, at a process's first cuBLAS call; setting it in
    the trial (bench.trial.pin_numerics) would come too late wherever something in a reused or
    Train worker touched CUDA first. The driver's own value (a user's) is passed on, else ours."""
    return {"env_vars": {"CUBLAS_WORKSPACE_CONFIG":
                         os.environ.get("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)}}


def _connect(address: str | None) -> None:
    import ray

    init_args = {"include_dashboard": False, "log_to_driver": False,
                 "configure_logging": True, "logging_level": logging.WARNING,
                 "runtime_env": worker_runtime_env()}
    if address is None:
        # "local", not None: ray.init(None) joins a cluster that `ray start` left running on
        # this host (and then refuses num_cpus); the embedded default is a Ray of its own.
        address = "local"
        init_args["num_cpus"] = os.cpu_count()
    # A local Ray turns token auth on and says so at every start. (Setting RAY_AUTH_MODE here
    # instead would not do: Ray caches the mode at import, and a mismatch fails ray.init.)
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled"))
    # After Ctrl-C Tune suggests calling Tuner.restore; our user runs the same command again.
    logging.getLogger("ray.tune.tune").addFilter(
        lambda record: "Resume experiment with" not in record.getMessage())
    try:
        ray.init(address=address, **init_args)
    except ConnectionError as exc:
        raise SweepError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]} "
                         f"(a token-auth cluster needs RAY_AUTH_MODE=token here too)") from None


def run_sweep(
    configs: list[TrialConfig],
    data: dict,
    *,
    results_dir: str | os.PathLike,
    storage: str | None = None,
    address: str | None = None,
    resources: Resources = Resources(),
    command: str = "",
    keep_old_versions: bool = False,
) -> SweepSummary:
    """Run every pending config as a Ray Tune trial; rows go to `results_dir` as trials finish.

    `address` None starts Ray locally (or joins RAY_ADDRESS if it is set); an address joins that
    cluster, and `storage` must then be a path every node can reach (default <results>/ray).
    `data` maps (data set name, fold) to loaded `aae_core.datasets.Dataset`s (loaded and
    verified by the caller before anything runs). `keep_old_versions`: a trial done at an
    older training version counts as done.
    """
    t0 = time.perf_counter()
    results_dir = Path(results_dir).resolve()
    todo = pending_configs(configs, results_dir, keep_old_versions)
    summary = SweepSummary(total=len(configs), skipped=len(configs) - len(todo))
    if not todo:
        return summary
    if len({c.grid for c in todo}) > 1:
        raise SweepError("one grid per sweep")
    grid = todo[0].grid
    _check_divisible(todo, resources)
    if storage and "://" in storage:
        # Experiment records and the lock live beside Tune's state: a shared file system
        # (NFS) works on every node, an object-store URI would need another code path.
        raise SweepError(f"--storage must be a directory every node can reach (e.g. on NFS); "
                         f"got {storage}")
    storage_path = Path(os.path.abspath(storage or results_dir / "ray"))
    key = sweep_key(grid, results_dir)

    _prepare_environment()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    with _exclusive(storage_path, key):
        _connect(address)
        # Ray's own SIGTERM handler dies without saving state; SIGUSR1 makes Tune stop cleanly.
        # Installed after ray.init (which would overwrite it) and restored afterwards.
        previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGUSR1))
        try:
            cluster = ray.cluster_resources()
            _check_resources(cluster, resources)
            refs = {k: ray.put(v) for k, v in data.items()}
            sweep = _Sweep(todo, refs, results_dir, storage_path, key, resources,
                           resources.concurrency(cluster.get("CPU", 0), cluster.get("GPU", 0)), command,
                           keep_old_versions)
            summary.interrupted = sweep.run()
        finally:
            ray.shutdown()
            signal.signal(signal.SIGTERM, previous)
    summary.statuses = _statuses(results_dir, todo)
    summary.interrupted = summary.interrupted or summary.unfinished > 0
    summary.wall_s = time.perf_counter() - t0
    return summary


@dataclass
class _Sweep:
    """One driver's work: restore what an earlier driver left unfinished, then run the rest."""

    todo: list[TrialConfig]
    data: dict
    results_dir: Path
    storage: Path
    key: str
    resources: Resources
    concurrency: int | None
    command: str
    keep_old_versions: bool = False

    def _pending(self) -> list[TrialConfig]:
        return pending_configs(self.todo, self.results_dir, self.keep_old_versions)

    def run(self) -> bool:
        """True if interrupted."""
        from ray import tune

        from bench import progress  # imports Ray: only once a sweep runs

        grid = self.todo[0].grid
        before = _row_stamps(self.results_dir)
        wanted = {c.trial_id for c in self.todo}
        ran: set[str] = set()  # trials that wrote rows during this sweep: not run twice in it
        for experiment in find_experiments(self.storage, self.key):
            if experiment.finished:
                continue
            pending = {c.trial_id for c in self._pending()}
            claim = set(experiment.trial_ids) & (pending - ran)
            why = self._why_not_restore(experiment, claim)
            if why:
                say(f"[sweep] not restoring {experiment.path.name}: {why}")
                mark_finished(experiment, why)
                continue
            say(f"[sweep] restoring {experiment.path.name}: {len(claim)} of its "
                f"{len(experiment.trial_ids)} trials are not done; they continue from their "
                f"last checkpoints")
            kept = kept_concurrency(experiment.resources, self.resources)
            if kept:
                say(f"[sweep] {kept}")
            tuner = tune.Tuner.restore(str(experiment.path), trainable=self._trainable(
                experiment, skip=set(experiment.trial_ids) - claim), resume_errored=True)
            interrupted = self._fit(tuner, claim & wanted)
            ran |= _changed(before, _row_stamps(self.results_dir))
            if interrupted:
                return True
            mark_finished(experiment, "fit returned")

        rest = [c for c in self._pending() if c.trial_id not in ran]
        if not rest:
            return False
        experiment = start_experiment(self.storage, self.key, rest, self.results_dir, self.resources)
        packs = pack_configs(rest, self.resources.seeds_per_trial)
        packed = (f" in {len(packs)} Tune trials of up to {self.resources.seeds_per_trial} seeds"
                  if self.resources.seeds_per_trial > 1 else "")
        say(f"[sweep] {grid}: {len(rest)} trials to run{packed}"
            f"{f', {self.concurrency} at a time' if self.concurrency else ''} "
            f"-> {self.results_dir} (Ray experiment {experiment.path})")
        tuner = tune.Tuner(
            self._trainable(experiment, skip=set()),
            param_space={"config": tune.grid_search([pack_params(p) for p in packs])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=self.concurrency,
                trial_dirname_creator=lambda t: pack_name(pack_trial_ids(t.config["config"])),
                reuse_actors=self._reuse_actors(rest)),
            run_config=tune.RunConfig(
                name=experiment.path.name, storage_path=str(self.storage), verbose=0,
                callbacks=[progress.SweepCallback(self.key)],
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        interrupted = self._fit(tuner, {c.trial_id for c in rest})
        if not interrupted:
            mark_finished(experiment, "fit returned")
        return interrupted

    def _reuse_actors(self, configs: list[TrialConfig]) -> bool:
        """A new process per trial costs ~2 s of a slot plus torch's import; a reused one ~0.1 s.
        Accelerate keeps one state per process, which a later trial may only re-create with the
        same settings: reuse when every trial has the same precision, and never for
        data-parallel trials (their Tune process only waits on Ray Train)."""
        return self.resources.workers_per_trial == 1 and len({c.precision for c in configs}) == 1

    def _why_not_restore(self, experiment: Experiment, claim: set[str]) -> str:
        from ray import tune

        if not claim:
            return "all its trials are done"
        # What changes a trial's numbers (threads) or its shape (workers, packs); not
        # max_concurrent. A field an older record lacks had its default then.
        mine, default = dataclasses.asdict(self.resources), dataclasses.asdict(Resources())
        if any(experiment.resources.get(k, default[k]) != mine[k] for k in RESTORE_MUST_MATCH):
            return f"it ran with other resources ({experiment.resources})"
        if not tune.Tuner.can_restore(str(experiment.path)):
            return "Tune saved no state for it (its driver died at the start)"
        return ""

    def _trainable(self, experiment: Experiment, skip: set[str]):
        from ray import tune

        settings = ExperimentSettings(
            TrialSettings(artifacts_dir=str(self.results_dir / "artifacts" / self.todo[0].grid),
                          threads=self.resources.threads, cpu=self.resources.gpus_per_trial == 0,
                          command=self.command, workers=self.resources.workers_per_trial),
            skip=frozenset(skip), worker_request=self.resources.worker_request(),
            train_storage=str(experiment.path / "train"))
        # The same function, wrapped the same way, for a new and for a restored experiment
        # (Tuner.restore checks the trainable's name).
        return tune.with_resources(tune.with_parameters(_trainable, data=self.data, settings=settings),
                                   self.resources.tune_request())

    def _fit(self, tuner, expected: set[str]) -> bool:
        """Run a Tune experiment with a live Progress; True if it stopped early."""
        from bench import progress

        by_id = {c.trial_id: c for c in self.todo}
        live = progress.Progress(self.results_dir, {
            tid: (_label(by_id[tid]), by_id[tid].epochs) for tid in expected if tid in by_id},
            context={"threads": self.resources.threads, "workers": self.resources.workers_per_trial,
                     "command": self.command})
        with progress.registered(self.key, live):
            result_grid = tuner.fit()
        return bool(_unfinished(result_grid))


def _label(config: TrialConfig) -> str:
    fold = f" fold {config.fold}" if config.fold is not None else ""
    return f"{config.variant}/{config.dataset}{fold} seed {config.seed}"


def _unfinished(result_grid) -> list[str]:
    """Trials of a Tune run that neither completed nor failed for good. Ctrl-C makes fit()
    return as if all was well; this is how we tell."""
    unfinished = []
    for result in result_grid:
        if result.error is None and not (result.metrics or {}).get("completed"):
            unfinished += pack_trial_ids((result.config or {}).get("config") or {})
    return unfinished


def _row_stamps(results_dir: Path) -> dict[str, str]:
    frame = results.read_rows(results_dir)
    if frame.empty or "finished_at" not in frame.columns:
        return {}
    return frame.groupby("trial_id")["finished_at"].agg(lambda s: "|".join(map(str, s))).to_dict()


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {tid for tid, stamp in after.items() if before.get(tid) != stamp}


def _statuses(results_dir: Path, configs: list[TrialConfig]) -> dict[str, int]:
    wanted = {c.trial_id for c in configs}
    counts: dict[str, int] = {}
    frame = results.read_rows(results_dir)
    if not frame.empty:  # what this sweep's code made of them (older versions' rows stay)
        frame = frame[results.versions_of(frame, "training_version") == TRAINING_VERSION]
        per_trial = frame[frame["trial_id"].isin(wanted)].groupby("trial_id")["status"].first()
        for status in per_trial:
            counts[status] = counts.get(status, 0) + 1
    missing = len(wanted) - sum(counts.values())
    if missing:
        counts["not run"] = missing
    return counts


def _check_divisible(configs: list[TrialConfig], resources: Resources) -> None:
    # Data parallel: each rank takes batch_size / workers examples of every minibatch.
    n = resources.workers_per_trial
    bad = sorted({c.batch_size for c in configs if c.batch_size % n})
    if bad:
        raise SweepError(f"--workers-per-trial {n} must divide the batch size; got batch sizes {bad}")


def _check_resources(available: dict, resources: Resources) -> None:
    # Tune leaves trials PENDING forever when a request cannot be met: refuse up front.
    gpus = resources.gpus_per_trial * resources.workers_per_trial
    if gpus > 0 and available.get("GPU", 0) < gpus:
        raise SweepError(f"--gpus-per-trial {resources.gpus_per_trial} but the Ray cluster has "
                         f"{available.get('GPU', 0)} GPUs")
    if available.get("CPU", 0) < resources.cpus_of_trial - 1e-9:
        what = (f"--cpus-per-trial {resources.cpus_per_trial}" if resources.workers_per_trial == 1
                else f"--workers-per-trial {resources.workers_per_trial} x --cpus-per-trial "
                     f"{resources.cpus_per_trial}")
        raise SweepError(f"{what} but the Ray cluster has {available.get('CPU', 0)} CPUs")
