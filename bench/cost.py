"""Cost before running: each cell's hours on this machine, from a short measured calibration.

`estimate(configs, ...)` groups a grid's configs into cells (configs equal but for their seed)
and prices each from rates measured here with the real trainer: training samples/s of the
cell's variant at its sizes (`bench.trial.start` + `aae_core.training.train_epoch` on a few
minibatches, after a warm-up pass), the forward rate of its evaluation pass, and for Parzen
cells the evaluator's own product rate. Rates are cached per machine (`calibrate`), never
hard-coded. `format_estimate` is the table `aae-bench run --dry-run` prints; after a run,
`actual_vs_estimate` sets each cell's recorded wall time against its estimate.

Calibration data is synthetic (uniform pixels of the data set's shape) unless a real data set is
passed: a step's cost depends on the shapes, never on the pixel values.

DEVIATION: estimates assume the machine is otherwise idle while it is calibrated and while the
grid runs; parallel trials share memory bandwidth, so the wall hours with several slots are a
lower bound. Not counted: Ray start-up, checkpoints, artifacts' latents, data loading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aae_core import datasets, training, variants
from bench import provenance
from bench.config import TrialConfig
from bench.evaluate import evaluation_kind

PRECISION_NAMES = {"no": "no", "fp32": "no", "bf16": "bf16"}
DEVICES = ("cpu", "cuda")
STEPS = 10
"""Timed minibatches of a training calibration (after as many for warm-up)."""
FORWARD_EXAMPLES = 2000
"""Examples of a timed forward pass (in the evaluators' batches of 1000)."""
PARZEN_PROBE = (10_000, 1000)
"""Samples (one chunk of the evaluator) and points (Table 1's validation images) of the Parzen
rate's probe; 500 points measured about 20 % slower per product than 1,000 or 2,048."""

# Split sizes (train, valid, test), image shape and classes, for pricing without the files.
# DEVIATION: TFD's fold sizes are not known here (no copy of the files); 4,178 labelled images
# split 70/10/20 are assumed. Pass the loaded data set to price from its real sizes.
SPLITS = {
    "mnist": ((50_000, 10_000, 10_000), (1, 28, 28), 10),
    "fashion-mnist": ((50_000, 10_000, 10_000), (1, 28, 28), 10),
    "svhn": ((68_257, 5_000, 26_032), (3, 32, 32), 10),
    "svhn-extra": ((68_257 + 531_131, 5_000, 26_032), (3, 32, 32), 10),
    "tfd": ((2_924, 418, 836), (1, 48, 48), 7),
    "tfd-96": ((2_924, 418, 836), (1, 96, 96), 7),
}


def _precision(precision: str) -> str:
    if precision not in PRECISION_NAMES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_NAMES)}; got {precision!r}")
    return PRECISION_NAMES[precision]


def _check(threads: int, seeds_per_trial: int, device: str) -> None:
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    if seeds_per_trial < 1:
        raise ValueError(f"seeds_per_trial must be >= 1; got {seeds_per_trial}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")


# -- the cache ---------------------------------------------------------------------------


def cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    root = cache_dir or os.environ.get("AAE_BENCH_CACHE") or Path.home() / ".cache" / "aae-bench"
    return Path(root) / "calibration.json"


def machine(device: str) -> dict[str, object]:
    """What a rate belongs to: the same model on another machine or torch is measured again."""
    return {"cpu": provenance.cpu_model(), "cores": os.cpu_count() or 0, "torch": torch.__version__,
            "device": device if device == "cpu" else f"{device}: {provenance.gpu_name()}"}


def machine_id(description: Mapping) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Calibration:
    """One measured rate and how it was measured."""

    key: str
    """What was measured (JSON): kind, sizes, seeds, threads, precision."""
    samples_per_s: float
    """Training: training examples per second summed over the seeds; forward: seed-examples per
    second; parzen: sample x point x dimension products per second."""
    steps: int
    samples: int
    seconds: float
    measured_at: str
    data: str
    """"synthetic" or the real data set's name."""
    machine: str


def calibrate(key: Mapping, measure, *, device: str, cache_dir=None) -> Calibration:
    """The cached calibration of `key` on this machine, or `measure()` -> (steps, samples,
    seconds, data) run once and stored."""
    description = machine(device)
    mid, text = machine_id(description), json.dumps(dict(key), sort_keys=True)
    path = cache_path(cache_dir)
    cache = json.loads(path.read_text()) if path.exists() else {}
    entry = cache.get(mid, {}).get("calibrations", {}).get(text)
    if entry is None:
        steps, samples, seconds, data = measure()
        entry = {"samples_per_s": samples / seconds, "steps": steps, "samples": samples, "seconds": seconds,
                 "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "data": data}
        cache = json.loads(path.read_text()) if path.exists() else {}  # others may have written meanwhile
        cache.setdefault(mid, {"machine": description, "calibrations": {}})["calibrations"][text] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    return Calibration(text, entry["samples_per_s"], entry["steps"], entry["samples"], entry["seconds"],
                       entry["measured_at"], entry["data"], mid)


# -- measuring ---------------------------------------------------------------------------


def synthetic(dataset: str, n_train: int, n_eval: int = 100) -> datasets.Dataset:
    """Uniform pixels of `dataset`'s shape, labels cycling over its classes (fixed seed)."""
    (_, shape, classes) = SPLITS[dataset]
    rng = np.random.default_rng(0)

    def part(n):
        return rng.random((n, *shape), dtype=np.float32), np.arange(n, dtype=np.int64) % classes

    (tx, ty), (vx, vy), (sx, sy) = part(n_train), part(n_eval), part(n_eval)
    return datasets.Dataset(dataset, tx, ty, vx, vy, sx, sy, "synthetic", "synthetic", classes)


def _slice(data: datasets.Dataset, n_train: int, n_eval: int = 100) -> datasets.Dataset:
    return dataclasses.replace(data, train_x=data.train_x[:n_train], train_y=data.train_y[:n_train],
                               valid_x=data.valid_x[:n_eval], valid_y=data.valid_y[:n_eval],
                               test_x=data.test_x[:n_eval], test_y=data.test_y[:n_eval])


@contextlib.contextmanager
def _threads(threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _accelerator(precision: str, device: str):
    """An Accelerator of this precision. Accelerate keeps one process-wide state and refuses a
    second precision in one process: a calibration of another precision resets it, and resets
    it again after, so that the process's next Accelerator (a trial's) sets its own."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    before = AcceleratorState._shared_state.get("_mixed_precision")
    if before not in (None, precision):
        AcceleratorState._reset_state(reset_partial_state=True)
    try:
        yield Accelerator(cpu=device == "cpu", mixed_precision=precision)
    finally:
        if before != precision:
            AcceleratorState._reset_state(reset_partial_state=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _calibration_config(config: TrialConfig, n_train: int, classes: int) -> TrialConfig:
    """The config as a calibration trains it: one epoch on the whole small slice, a labelled
    subset that fits in it (a step's cost does not depend on how many labels there are)."""
    labels = config.labels
    if labels:
        labels = classes * min(labels // classes, n_train // (2 * classes))
    return dataclasses.replace(config, grid="cost", seed=0, epochs=1, train_examples=0, labels=labels)


def measure_training(config: TrialConfig, seeds: int, threads: int, precision: str, device: str,
                     steps: int = STEPS, data: datasets.Dataset | None = None) -> tuple[int, int, float, str]:
    """Seconds of `steps` minibatches of `config`'s variant as an S-seed model (after a warm-up
    pass of as many): (steps, training examples summed over seeds, seconds, data)."""
    from bench import trial

    n = steps * config.batch_size
    sample = synthetic(config.dataset, n) if data is None else _slice(data, n)
    base = _calibration_config(config, n, sample.n_classes)
    pack = [dataclasses.replace(base, seed=s, precision=precision) for s in range(seeds)]
    step = variants.variant(config.variant).step
    with _accelerator(precision, device) as accelerator, _threads(threads):
        run = trial.start(tuple(pack), sample, accelerator, None)

        def epoch():
            training.train_epoch(run.ctx, step, run.parts.data, batch_size=config.batch_size,
                                 data_generators=run.gens["data"], epoch=0,
                                 labelled_generators=run.gens.get("labelled"))

        epoch()  # warm-up: allocations, kernel choice
        _sync(device)
        t0 = time.perf_counter()
        epoch()
        _sync(device)
        seconds = time.perf_counter() - t0
    return steps, seeds * n, seconds, sample.source if data is None else data.name


def forward_pass(config: TrialConfig) -> str:
    """The pass an evaluation repeats: "decode" (Parzen samples), "reconstruct", or "code"
    (q(y|x) of the classifiers and clusterings)."""
    return {"parzen": "decode", "reconstruction": "reconstruct"}.get(evaluation_kind(config), "code")


def measure_forward(config: TrialConfig, seeds: int, threads: int, device: str,
                    examples: int = FORWARD_EXAMPLES) -> tuple[int, int, float, str]:
    """Seconds of `forward_pass(config)` over `examples` examples, forward only, fp32 (the
    evaluations run outside autocast): (batches, seed-examples, seconds, data)."""
    from bench import trial

    sample = synthetic(config.dataset, config.batch_size)
    base = _calibration_config(config, config.batch_size, sample.n_classes)
    pack = [dataclasses.replace(base, seed=s) for s in range(seeds)]
    kind = forward_pass(config)
    with _threads(threads):
        parts = trial.build(tuple(pack), sample)
        net = parts.net.to(device).eval()
        x = torch.from_numpy(synthetic(config.dataset, examples).train_x)
        labels = torch.zeros(1000, dtype=torch.long) if variants.variant(config.variant).labels == "all" else None

        def run(n: int):
            if kind == "decode":
                return training.generate(net.decoder, parts.priors["z"], n,
                                         [training.generator(s) for s in range(seeds)], device)
            if kind == "reconstruct":
                return training.apply(lambda b: net.reconstruct(b, None if labels is None else labels[:len(b)].to(device)),
                                      x[:n], device)
            return training.apply(net.code, x[:n], device)

        with torch.no_grad():
            run(min(examples, 1000))  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            run(examples)
            _sync(device)
            seconds = time.perf_counter() - t0
    return math.ceil(examples / 1000), seeds * examples, seconds, "synthetic"


def measure_parzen(dims: int, samples: int = PARZEN_PROBE[0], points: int = PARZEN_PROBE[1],
                   sigmas: int = 1) -> tuple[int, int, float, str]:
    """Seconds of the Parzen evaluator (its products and elementwise passes, float32, its own
    default threads) on `samples` x `points` at `dims`: (1, products, seconds, data). With
    sigmas > 1, of the one-pass evaluator over that many sigmas (the validation curve's): one
    distance product shared by all sigmas, an elementwise pass per sigma."""
    from bench import metrics, parzen

    rng = np.random.default_rng(0)
    x, p = rng.random((samples, dims), dtype=np.float32), rng.random((points, dims), dtype=np.float32)
    grid = tuple(0.1 + 0.05 * k for k in range(sigmas))

    def run(x, p):
        if sigmas == 1:
            metrics.parzen_log_likelihood(x, p, 0.2)
        else:
            parzen.parzen_log_likelihood_sigmas([x], p, grid)

    run(x[:1000], p[:50])  # warm-up
    t0 = time.perf_counter()
    run(x, p)
    return 1, samples * points * dims, time.perf_counter() - t0, "synthetic"


# -- keys: what a rate depends on ---------------------------------------------------------


def sizes(config: TrialConfig) -> dict[str, object]:
    """The fields a step's cost depends on (not the seed, learning rates, epochs or labels' count)."""
    return {"variant": config.variant, "prior": config.prior, "input_shape": list(SPLITS[config.dataset][1]),
            "hidden_units": config.hidden_units, "hidden_layers": config.hidden_layers, "z_dim": config.z_dim,
            "batch_size": config.batch_size, "clusters": config.clusters,
            "labelled": config.labels is not None}


def trainer_version() -> str:
    """Hash of the trainer's source: a faster (or slower) trainer is measured again."""
    digest = hashlib.sha256()
    for name in ("model.py", "seeds.py", "training.py", "variants.py", "priors.py"):
        digest.update((provenance.REPO / "aae_core" / name).read_bytes())
    return digest.hexdigest()[:12]


def training_key(config, seeds, threads, precision, steps=STEPS) -> dict:
    return {"kind": "train", **sizes(config), "seeds": seeds, "threads": threads, "precision": precision,
            "steps": steps, "code": trainer_version()}


def forward_key(config, seeds, threads) -> dict:
    return {"kind": "forward", "pass": forward_pass(config), **sizes(config), "seeds": seeds, "threads": threads,
            "code": trainer_version()}


def parzen_key(dims: int, sigmas: int = 1) -> dict:
    """One sigma: the final evaluation's passes; several: the curve's one-pass evaluator."""
    key = {"kind": "parzen", "dims": dims, "probe": list(PARZEN_PROBE), "threads": _parzen_threads()}
    return key if sigmas == 1 else {**key, "sigmas": sigmas}


def _parzen_threads() -> int:
    from bench import parzen

    return parzen._default_threads()


# -- the estimate ------------------------------------------------------------------------

COLUMNS = (("no", False), ("no", True), ("bf16", False), ("bf16", True))
"""(precision, with S seeds per trial) of the four priced columns."""


def column_names(seeds_per_trial: int) -> list[str]:
    return ["fp32", f"S={seeds_per_trial}", "bf16", f"bf16+S={seeds_per_trial}"]


@dataclass(frozen=True)
class CellEstimate:
    """One cell's cost on this machine: hours of all its trials one after another, per column."""

    cell: str
    trial_ids: tuple[str, ...]
    seeds: int
    epochs: int
    train_examples: int
    threads: int
    seeds_per_trial: int
    precision: str
    """The run's precision ("no" or "bf16"): with seeds_per_trial, which column is `hours`."""
    hours: tuple[float, float, float, float]
    """fp32 S=1, fp32 S=seeds_per_trial, bf16 S=1, bf16 S=seeds_per_trial."""
    longest_trial_hours: tuple[float, float, float, float]
    calibrations: tuple[Calibration, ...]
    device: str = "cpu"

    @property
    def requested_hours(self) -> float:
        return self.hours[COLUMNS.index((self.precision, self.seeds_per_trial > 1))]


def cells(configs: Iterable[TrialConfig]) -> dict[TrialConfig, list[TrialConfig]]:
    """Configs grouped by their config without seed, in order of first appearance."""
    groups: dict[TrialConfig, list[TrialConfig]] = {}
    for c in configs:
        groups.setdefault(dataclasses.replace(c, seed=0), []).append(c)
    return groups


def cell_name(c: TrialConfig) -> str:
    extra = [f"fold {c.fold}" if c.fold is not None else "", f"labels {c.labels}" if c.labels is not None else "",
             f"clusters {c.clusters}" if c.clusters is not None else ""]
    return " ".join([c.grid, f"{c.variant}/{c.dataset}/{c.prior}", *filter(None, extra)])


def estimate(configs: Sequence[TrialConfig], *, threads: int, seeds_per_trial: int, precision: str,
             device: str = "cpu", cache_dir=None, data: Mapping[str, datasets.Dataset] | None = None,
             steps: int = STEPS) -> list[CellEstimate]:
    """One CellEstimate per cell of `configs`, priced from this machine's calibrations (measured
    once, then read from the cache). `data` (name -> loaded data set): real sizes and a real
    slice for those; the others are priced from SPLITS on synthetic data."""
    precision = _precision(precision)
    _check(threads, seeds_per_trial, device)
    data = dict(data or {})
    out = []
    for c, members in cells(configs).items():
        real = data.get(c.dataset)
        n_train_split, n_valid, n_test = ((len(real.train_x), len(real.valid_x), len(real.test_x))
                                          if real is not None else SPLITS[c.dataset][0])
        n_train = min(c.train_examples or n_train_split, n_train_split)

        used, columns, longest = [], [], []
        for prec, batched in COLUMNS:
            s = seeds_per_trial if batched else 1
            train = calibrate(training_key(c, s, threads, prec, steps),
                              lambda c=c, s=s, prec=prec, real=real: measure_training(c, s, threads, prec, device,
                                                                                      steps, real),
                              device=device, cache_dir=cache_dir)
            eval_s, eval_used = evaluation_seconds(c, s, threads, device, cache_dir, (n_train, n_valid, n_test))
            used += [train, *eval_used]
            per_seed = c.epochs * n_train / train.samples_per_s + eval_s
            columns.append(len(members) * per_seed / 3600)
            longest.append(min(s, len(members)) * per_seed / 3600)
        unique = tuple({u.key: u for u in used}.values())
        out.append(CellEstimate(cell_name(c), tuple(m.trial_id for m in members), len(members), c.epochs,
                                n_train, threads, seeds_per_trial, precision, tuple(columns), tuple(longest),
                                unique, device))
    return out


def evaluation_seconds(c: TrialConfig, seeds: int, threads: int, device: str, cache_dir,
                       split_sizes: tuple[int, int, int]) -> tuple[float, list[Calibration]]:
    """Evaluation seconds per seed of a trial of `seeds` seeds: the per-epoch validation pass
    (classifiers' model selection and the validation curve, for all seeds at once) and the
    final evaluation (each seed alone), with the calibrations used."""
    n_train, n_valid, n_test = split_sizes
    kind = evaluation_kind(c)

    def forward(s):
        return calibrate(forward_key(c, s, threads), lambda: measure_forward(c, s, threads, device),
                         device=device, cache_dir=cache_dir)

    alone, batched = forward(1), forward(seeds)
    # The validation curve (bench.validation), every epoch for all seeds at once: a
    # reconstruction pass over the validation images for every kind, and what each kind adds.
    curve = c.epochs * n_valid / batched.samples_per_s
    if kind == "classification":  # q(y|x) on validation: model selection and the curve
        return (curve + c.epochs * n_valid / batched.samples_per_s + n_test / alone.samples_per_s), [alone, batched]
    if kind == "clustering":
        curve += c.epochs * n_valid / batched.samples_per_s
        return curve + (n_valid + n_test + n_train) / alone.samples_per_s, [alone, batched]
    if kind == "reconstruction":
        return curve + n_test / alone.samples_per_s, [alone, batched]
    dims = math.prod(SPLITS[c.dataset][1])
    products = calibrate(parzen_key(dims), lambda: measure_parzen(dims), device=device, cache_dir=cache_dir)
    n_sigmas = len(c.parzen_sigmas)
    curve_products = calibrate(parzen_key(dims, n_sigmas), lambda: measure_parzen(dims, sigmas=n_sigmas),
                               device=device, cache_dir=cache_dir)
    decoded, pairs = parzen_work(c, n_valid, n_test)
    curve_decoded, curve_pairs = curve_parzen_work(c, n_valid)
    return (curve + curve_decoded / batched.samples_per_s + curve_pairs * dims / curve_products.samples_per_s
            + decoded / alone.samples_per_s + pairs * dims / products.samples_per_s), [
                alone, batched, products, curve_products]


def curve_parzen_work(c: TrialConfig, n_valid: int) -> tuple[int, int]:
    """The Parzen part of a trial's validation curve (bench.validation.parzen_curve), per seed:
    (samples decoded, sample x point pairs scored) over all epochs: each epoch decodes
    parzen_samples and scores the validation images under every sigma in one pass
    (parzen_log_likelihood_sigmas), so its pairs count once and are priced at the one-pass
    evaluator's rate for the config's number of sigmas (parzen_key(dims, sigmas))."""
    v = min(c.parzen_validation or n_valid, n_valid)
    return c.epochs * c.parzen_samples, c.epochs * c.parzen_samples * v


def parzen_work(c: TrialConfig, n_valid: int, n_test: int) -> tuple[int, int]:
    """Table 1's protocol counted in passes (bench.evaluate.evaluate_parzen): (samples decoded,
    sample x point pairs scored). 10K column: one decode; each sigma scored on the
    validation images, the chosen one again on them and once on the test images. 10M column
    (parzen_samples_large): decoded again for each of its passes, each sigma on validation and
    one test pass."""
    v, t = min(c.parzen_validation or n_valid, n_valid), c.parzen_test or n_test  # 0: the whole split
    sigmas = len(c.parzen_sigmas)
    decoded, pairs = c.parzen_samples, c.parzen_samples * (sigmas * v + v + t)
    if c.parzen_samples_large:
        large = c.parzen_samples_large
        decoded += (sigmas + 1) * large
        pairs += large * (sigmas * v + t)
    return decoded, pairs


# -- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Total:
    hours: tuple[float, ...]
    """All trials one after another."""
    core_hours: tuple[float, ...]
    wall_hours: tuple[float, ...]
    """With `slots` trials at a time: at best the hours / slots, never less than the longest trial."""
    slots: int


def total(estimates: Sequence[CellEstimate], slots: int = 1) -> Total:
    if slots < 1:
        raise ValueError(f"slots must be >= 1; got {slots}")
    hours = tuple(sum(e.hours[i] for e in estimates) for i in range(len(COLUMNS)))
    core = tuple(sum(e.hours[i] * e.threads for e in estimates) for i in range(len(COLUMNS)))
    longest = tuple(max((e.longest_trial_hours[i] for e in estimates), default=0.0) for i in range(len(COLUMNS)))
    return Total(hours, core, tuple(max(h / slots, m) for h, m in zip(hours, longest, strict=True)), slots)


def _hours(h: float) -> str:
    if h >= 100:
        return f"{h:,.0f}"
    return f"{h:.1f}" if h >= 1 else f"{h:.3f}" if h >= 0.001 else "<0.001"


def format_estimate(estimates: Sequence[CellEstimate], slots: int = 1, cache_dir=None) -> str:
    """The dry run's table: estimated hours on this machine per cell and in total (`cache_dir`:
    where the calibrations were cached, as given to `estimate`)."""
    if not estimates:
        return "estimated hours on this machine: no trials"
    first = estimates[0]
    names = column_names(first.seeds_per_trial)
    requested = COLUMNS.index((first.precision, first.seeds_per_trial > 1))
    names[requested] += "*"
    width = max(len(e.cell) for e in estimates + [dataclasses.replace(first, cell="total, one trial at a time")])
    head = f"{'cell':<{width}}  {'seeds':>5}  {'epochs':>6}  {'train':>7}  " + "  ".join(f"{n:>9}" for n in names)
    m = machine(first.device)
    lines = [f"estimated hours on this machine ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['device']}; "
             f"{first.threads} thread(s) per trial; * = this run's setting)", head]
    for e in estimates:
        lines.append(f"{e.cell:<{width}}  {e.seeds:>5}  {e.epochs:>6}  {e.train_examples:>7}  "
                     + "  ".join(f"{_hours(h):>9}" for h in e.hours))
    t = total(estimates, slots)
    pad = " " * (5 + 6 + 7 + 6)
    for label, values in (("total, one trial at a time", t.hours), ("core-hours", t.core_hours),
                          (f"wall-hours, {slots} trial(s) at a time", t.wall_hours)):
        lines.append(f"{label:<{width}}  {pad}" + "  ".join(f"{_hours(h):>9}" for h in values))
    calibrations = {c.key: c for e in estimates for c in e.calibrations}.values()
    dates = sorted(c.measured_at for c in calibrations)
    lines.append(f"calibration: {len(calibrations)} measured rates of machine {first.calibrations[0].machine} "
                 f"({dates[0]} .. {dates[-1]}), cached in {cache_path(cache_dir)}")
    lines.append("DEVIATION: assumes the machine is otherwise idle; with several trials at a time the "
                 "wall-hours are a lower bound.")
    return "\n".join(lines)


# -- after a run -------------------------------------------------------------------------


def save_estimates(estimates: Sequence[CellEstimate], path: str | os.PathLike) -> Path:
    """The estimates with their calibrations as JSON (a run writes them beside its rows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dataclasses.asdict(e) for e in estimates], indent=1))
    return path


def load_estimates(path: str | os.PathLike) -> list[CellEstimate]:
    out = []
    for e in json.loads(Path(path).read_text()):
        e["calibrations"] = tuple(Calibration(**c) for c in e["calibrations"])
        out.append(CellEstimate(**{k: tuple(v) if isinstance(v, list) else v for k, v in e.items()}))
    return out


def actual_vs_estimate(frame, estimates: Sequence[CellEstimate]):
    """Per cell, the recorded wall hours of its trials against the estimate (the run's column).

    Rows repeat wall_s once per metric: one per trial id. The members of a seed-batched pack
    repeat the pack's time: counted once per pack (same started_at and node). A resumed trial's
    wall_s covers every process it ran in, except in rows of older code (the last process only:
    bench.results.wall_from_epoch > 0), where the actual is a lower bound."""
    import pandas as pd

    rows = frame.drop_duplicates("trial_id")
    out = []
    for e in estimates:
        mine = rows[rows["trial_id"].isin(e.trial_ids)]
        packed = mine["seeds_per_trial"] > 1 if "seeds_per_trial" in mine else pd.Series(False, index=mine.index)
        keys = [k for k in ("started_at", "node") if k in mine]
        pack_s = mine[packed].groupby(keys)["wall_s"].max().sum() if keys and packed.any() else mine[packed]["wall_s"].sum()
        actual = (mine[~packed]["wall_s"].sum() + pack_s) / 3600
        out.append({"cell": e.cell, "trials": len(mine), "actual_hours": actual,
                    "estimated_hours": e.requested_hours,
                    "ratio": actual / e.requested_hours if e.requested_hours and len(mine) else math.nan})
    return pd.DataFrame(out, columns=["cell", "trials", "actual_hours", "estimated_hours", "ratio"])


ESTIMATES_DIR = "estimates"
"""Beside a results directory's rows: the dry run's estimates, one JSON file per grid and profile."""


def estimates_path(results_dir: str | os.PathLike, grid: str, profile: str) -> Path:
    """Where `aae-bench run GRID --profile P --dry-run` keeps its estimate (the report reads it)."""
    return Path(results_dir) / ESTIMATES_DIR / f"{grid}-{profile}.json"


def estimates_against_actuals(results_dir: str | os.PathLike, frame):
    """Every saved estimate of `results_dir` against the recorded wall hours of its cells'
    trials (`actual_vs_estimate`), with the grid and profile it was made for and when; an
    empty frame when none was saved. Only trials with rows count: a cell whose trials have not
    run shows 0 trials."""
    import pandas as pd

    parts = []
    for path in sorted((Path(results_dir) / ESTIMATES_DIR).glob("*.json")):
        estimates = load_estimates(path)
        if not estimates:
            continue
        grid, _, profile = path.stem.rpartition("-")
        part = actual_vs_estimate(frame, estimates) if not frame.empty else actual_vs_estimate(
            pd.DataFrame(columns=["trial_id", "wall_s"]), estimates)
        measured = sorted(c.measured_at for e in estimates for c in e.calibrations)
        part.insert(0, "estimate", f"{grid} --profile {profile}")
        part["calibrated"] = measured[-1] if measured else ""
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["estimate", "cell", "trials", "actual_hours", "estimated_hours",
                                     "ratio", "calibrated"])
    return pd.concat(parts, ignore_index=True)

