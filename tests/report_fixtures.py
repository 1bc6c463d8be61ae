"""TEST FIXTURES ONLY: fabricated result rows and artifacts for the report and gate tests.

Nothing here is a measurement. The rows have the shape bench.trial.run_trial gives them (config
fields, provenance, one row per metric) but made-up values; they are written only under pytest's
tmp_path, never into results/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench import results
from bench.config import TrialConfig

FAKE_PROVENANCE = {
    "commit": "f" * 40, "dirty": False, "python": "3.11.0", "torch": "2.13.0", "ray": "2.60.0",
    "accelerate": "1.0.0", "numpy": "2.0.0", "platform": "linux-x86_64",
    "cpu": "Fake CPU (test fixture)", "cpu_count": 2, "gpu": "", "hostname": "fixture-host",
}


def fake_config(seed: int = 0, profile: str = "paper", **changes) -> TrialConfig:
    base = TrialConfig(grid="table1", profile=profile, seed=seed, variant="unsupervised",
                       dataset="mnist", prior="gaussian", z_dim=8, prior_std=5.0, epochs=3)
    return replace(base, **changes)


def fake_trial_rows(config: TrialConfig, values: dict[str, float], *, status: str = "done",
                    wall_s: float = 3600.0, device: str = "cpu", gpu: str = "",
                    extra: dict | None = None, stderrs: dict[str, float] | None = None
                    ) -> list[dict]:
    """The rows of one fabricated trial: one per metric in `values` (stderr 1.0 unless
    `stderrs` names the metric)."""
    context = {
        "trial_id": config.trial_id, "grid": config.grid, "profile": config.profile,
        "seed": config.seed, "status": status, "error": "" if status == "done" else "fixture",
        "epochs_done": config.epochs, "wall_s": wall_s, "threads": 1, "workers": 1, "seeds_per_trial": 1,
        "device": device, "node": "fixture-host", "precision_used": "no",
        "evaluator_version": "1", "data_source": "fixture", "data_split": "train 50000 / valid "
        "10000 / test 10000", "subset_hash": "", "started_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T01:00:00+00:00", "command": "aae-bench run table1 (fixture)",
        **config.as_dict(), **FAKE_PROVENANCE, "gpu": gpu, **(extra or {}),
    }
    return [{**context, "metric": m, "value": v, "stderr": (stderrs or {}).get(m, 1.0), "n": 10000}
            for m, v in values.items()]


def table1_rows(lls: list[float], *, profile: str = "paper", sigma: float = 0.2,
                diverged_seeds: tuple[int, ...] = (), test_stderrs: list[float] | None = None,
                **changes) -> list[dict]:
    """Done Table 1 trials with parzen_ll = lls[i] for seed i (its standard error over test
    points test_stderrs[i], else 1.0), plus diverged trials."""
    rows: list[dict] = []
    for seed, ll in enumerate(lls):
        config = fake_config(seed, profile, **changes)
        stderr = {"parzen_ll": test_stderrs[seed]} if test_stderrs else None
        rows += fake_trial_rows(config, {"parzen_ll": ll, "parzen_sigma": sigma,
                                         "parzen_validation_ll": ll + 1.0,
                                         "loss_reconstruction": 20.0 + seed,
                                         "loss_discriminator": 1.3, "loss_generator": 0.7},
                                stderrs=stderr)
    for seed in diverged_seeds:
        config = fake_config(seed, profile, **changes)
        rows += fake_trial_rows(config, {"parzen_ll": float("nan")}, status="diverged")
    return rows


def write_results(directory: Path, rows: list[dict]) -> Path:
    """Write fabricated rows into a temporary results directory (grid by grid)."""
    frame = pd.DataFrame(rows)
    for grid, group in frame.groupby("grid"):
        results.append_rows(directory, str(grid), group.to_dict("records"))
    return directory


def write_curve(directory: Path, row: dict, columns: dict[str, list[float]]) -> Path:
    """A fabricated curve.csv (epochs 1..len, `columns` beside a loss) for the trial of `row`
    (one of its rows), replacing any it has."""
    out = directory / "artifacts" / row["grid"] / row["trial_id"]
    out.mkdir(parents=True, exist_ok=True)
    length = len(next(iter(columns.values())))
    frame = pd.DataFrame({"epoch": np.arange(1, length + 1), "loss_reconstruction": 20.0,
                          **columns, "seconds": 30.0})
    frame.to_csv(out / "curve.csv", index=False)
    return out / "curve.csv"


def write_artifacts(directory: Path, rows: list[dict], *, z_dim: int = 8, n: int = 300,
                    epochs: int = 3, validation: Callable[[int], dict] | None = None) -> None:
    """Fake latents.npz and curve.csv for every done trial in rows; `validation(seed)`: extra
    curve columns ({name: one value per epoch}), e.g. a validation metric."""
    trials = {(r["grid"], r["trial_id"], r["seed"]) for r in rows if r["status"] == "done"}
    for grid, trial_id, seed in trials:
        out = directory / "artifacts" / grid / trial_id
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, n)
        z = rng.normal(size=(n, z_dim)).astype(np.float32) + y[:, None].astype(np.float32)
        np.savez_compressed(out / "latents.npz", z=z, y=y, split=np.array("test"))
        epoch = np.arange(1, epochs + 1)
        pd.DataFrame({"epoch": epoch, "loss_reconstruction": 30.0 / epoch + seed,
                      "loss_discriminator": 1.4 - 0.05 * epoch, "loss_generator": 0.6 + 0.05 * epoch,
                      "seconds": 30.0, **(validation(seed) if validation else {})}
                     ).to_csv(out / "curve.csv", index=False)
