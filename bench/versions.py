"""What code made a row: TRAINING_VERSION beside the evaluators' METRICS_VERSION.

`TRAINING_VERSION` names what the training code computes (model, phases, random streams, data
splits, defaults): any change that alters a trained number bumps it; a refactor that keeps every
number bit-identical does not. Every row records it (`training_version`), and a table cell pools
only rows of one training version and one evaluator version (`evaluator_version`,
bench.metrics.METRICS_VERSION, re-exported here).

Enforced, not remembered: tests/test_training_digest.py trains a tiny deterministic config of
every variant on the CPU (`digest_configs`) and compares a digest of its metrics and weights with
the one committed for the current TRAINING_VERSION (DIGEST_FILE). A change of numbers without a
bump fails it; after a bump (or a meant change of the digest configs) regenerate the file with
one command, REGENERATE.

Bits depend on the CPU and the libraries (kernels, vector widths, summation order), so the
digest file records where it was made. On the same CPU model and instruction sets
(`cpu_features`: two CPUs sold as "AMD EPYC" trained the same weights but gave the numpy
Parzen evaluator other last bits) with the same torch, numpy and platform the check is exact: every metric, and the sha256 of each trained model's weights. On
other hardware the weights' digests cannot match and discrete metrics (an error rate, the chosen
sigma, the selected epoch) may move by one test point, so only the continuous metrics (the
training losses and the Parzen log-likelihoods, where every training change shows) are compared,
within a relative RELATIVE_TOLERANCE (1e-4; float32 round-off over one tiny epoch is orders of
magnitude below it, and a silent change such as a prior's std moved by 1 % is far above it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from bench.metrics import METRICS_VERSION

__all__ = ["METRICS_VERSION", "TRAINING_VERSION", "training_version_of_commit"]

TRAINING_VERSION = 2
HISTORY = {
    1: "up to the commit before a99f140: unbatched models and their random streams",
    2: "from a99f140 (seed-batched models: new per-seed init and data streams) with 4310127 "
       "(seedwise sigmoid/BCE/KL, last bits); the restructuring of #13 kept every number",
}
# The commits that began each version (rows are dated by their `commit` column).
FIRST_COMMITS = {2: ("a99f140", "4310127")}

REPO = Path(__file__).resolve().parents[1]
DIGEST_FILE = REPO / "tests" / "baselines" / "training-digest.json"
REGENERATE = "python -m bench.versions --write-digest"
RELATIVE_TOLERANCE = 1e-4
DIGEST_FORMAT = "aae-bench-training-digest/1"
HARDWARE_KEYS = ("cpu", "cpu_features", "platform", "torch", "numpy")


def continuous(metric: str) -> bool:
    """Metrics compared across hardware (within RELATIVE_TOLERANCE)."""
    return metric.startswith("loss_") or metric in ("parzen_ll", "parzen_validation_ll")


def digest_configs() -> list:
    """One tiny deterministic config per variant (hidden 32, 1,000 training examples, 2 epochs,
    small Parzen sets): about a second each on one CPU thread."""
    from aae_core.variants import VARIANTS
    from bench.grids import single_trial

    cells = {"semi-supervised": dict(labels=100), "label-regularized": dict(labels=100),
             "clustering": dict(clusters=16), "dim-reduction": dict(clusters=20)}
    priors = {"label-regularized": "mixture"}
    configs = []
    for name in VARIANTS:
        config = single_trial(name, "mnist", priors.get(name, "gaussian"), profile="smoke",
                              seed=0, epochs=2, **cells.get(name, {}))
        # init_std 0.1, not the paper's 0.01: from 0.01 a few minibatches barely move the
        # numbers, and a silent change (a prior's std by 1 %) would hide below the tolerance.
        tiny = dict(hidden_units=32, train_examples=1000, init_std=0.1)
        if config.parzen_samples is not None:
            tiny |= dict(parzen_samples=200, parzen_validation=100, parzen_test=200)
        configs.append(dataclasses.replace(config, grid="digest", **tiny))
    return configs


def hardware() -> dict[str, str]:
    from bench import provenance

    env = provenance.environment()
    return {key: str(env[key]) for key in HARDWARE_KEYS}


def _plain(value):
    value = float(value)
    return None if math.isnan(value) else value


def training_digest(data, configs: list | None = None) -> dict:
    """Train each config (one thread, CPU) and digest what it computed: per variant its trial
    id, the sha256 of its trained weights and every metric (value, stderr, n)."""
    from bench.trial import TrialSettings, run_trial

    variants = {}
    for config in configs or digest_configs():
        rows = run_trial(config, TrialSettings(threads=1), data=data)
        if any(r["status"] != "done" for r in rows):
            raise RuntimeError(f"digest config of {config.variant} did not finish: {rows[0]['error']}")
        variants[config.variant] = {
            "trial_id": config.trial_id,
            "param_digests": json.loads(rows[0]["param_digests"]),
            "metrics": {r["metric"]: [_plain(r["value"]), _plain(r["stderr"]), int(r["n"])]
                        for r in rows},
        }
    return {"format": DIGEST_FORMAT, "training_version": TRAINING_VERSION,
            "hardware": hardware(), "threads": 1, "variants": variants}


def compare_digest(got: dict, expected: dict) -> tuple[list[str], str]:
    """(problems, how compared): no problems when `got` (made now) is `expected` (committed)."""
    bump = (f"if the change is meant, bump bench.versions.TRAINING_VERSION and regenerate the "
            f"digest with `{REGENERATE}`; if not, it is a regression")
    if expected.get("training_version") != TRAINING_VERSION:
        return [f"TRAINING_VERSION is {TRAINING_VERSION} but {DIGEST_FILE.name} was made for "
                f"version {expected.get('training_version')}: regenerate it with `{REGENERATE}`"], ""
    same = all(got["hardware"].get(k) == expected.get("hardware", {}).get(k) for k in HARDWARE_KEYS)
    how = ("exact (same CPU model and instruction sets, platform, torch and numpy as the digest)" if same else
           f"continuous metrics within a relative {RELATIVE_TOLERANCE:g} (the digest was made on "
           f"{expected.get('hardware')}; weights and discrete metrics are not compared)")
    problems = []
    for name in sorted(set(got["variants"]) | set(expected["variants"])):
        mine, theirs = got["variants"].get(name), expected["variants"].get(name)
        if mine is None or theirs is None:
            problems.append(f"variant {name} is {'new' if theirs is None else 'gone'}: {bump}")
            continue
        if mine["trial_id"] != theirs["trial_id"]:
            problems.append(f"{name}: the digest config changed (a config field or default; "
                            f"trial id {mine['trial_id']}, digest {theirs['trial_id']}): if its "
                            f"numbers changed too, bump bench.versions.TRAINING_VERSION; then "
                            f"regenerate the digest with `{REGENERATE}`")
            continue
        if same and mine["param_digests"] != theirs["param_digests"]:
            problems.append(f"{name}: trained weights changed ({mine['param_digests']} != "
                            f"{theirs['param_digests']}) without a TRAINING_VERSION bump: {bump}")
        for metric in sorted(set(mine["metrics"]) | set(theirs["metrics"])):
            a, b = mine["metrics"].get(metric), theirs["metrics"].get(metric)
            if not same and not continuous(metric):
                continue
            if a is None or b is None or not _close(a[0], b[0], exact=same):
                problems.append(f"{name}: {metric} = {a and a[0]!r}, digest {b and b[0]!r}: "
                                f"training numbers changed without a TRAINING_VERSION bump: {bump}")
    return problems, how


def _close(a, b, exact: bool) -> bool:
    if a is None or b is None:
        return a is b
    return a == b if exact else math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9)


def read_digest(path: Path = DIGEST_FILE) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_digest(data, path: Path = DIGEST_FILE) -> Path:
    path = Path(path)
    path.write_text(json.dumps(training_digest(data), indent=1) + "\n", encoding="utf-8")
    return path


def training_version_of_commit(commit: str) -> int | None:
    """The training version of rows made at `commit` (git history of this repository): 1 for
    a strict ancestor of a99f140, 2 for a descendant of 4310127 (both included), None between
    them or when git does not know the commit."""
    from bench.provenance import _git

    full = _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if not full:
        return None
    first, last_bits = FIRST_COMMITS[2]
    if _is_ancestor(last_bits, full):
        return 2
    if _is_ancestor(full, first) and full != _git("rev-parse", first):
        return 1
    return None


def _is_ancestor(a: str, b: str) -> bool:
    import subprocess

    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=REPO,
                          capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versions",
                                     description="print the versions, or regenerate the training digest")
    parser.add_argument("--write-digest", action="store_true",
                        help=f"train the digest configs and write {DIGEST_FILE.relative_to(REPO)}")
    parser.add_argument("--data-dir", default=None, help="directory holding MNIST")
    args = parser.parse_args(argv)
    if not args.write_digest:
        print(f"TRAINING_VERSION {TRAINING_VERSION}, METRICS_VERSION {METRICS_VERSION}")
        return 0
    from aae_core import datasets

    path = write_digest(datasets.load("mnist", args.data_dir))
    print(f"wrote {path} (training version {TRAINING_VERSION}, {hardware()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
