"""A trial's saved artifacts, found from the rows, and the network rebuilt from its checkpoint.

Artifacts live in `<results>/artifacts/<grid>/<trial_id>/` (bench.trial.save_artifacts):
`latents.npz` (y: test labels; z: test codes; for the semi-supervised family also y_probs =
q(y|x) and representation), `curve.csv` (epoch, loss_*, seconds), `model.pt` (a flat state dict
of the whole one-seed network), beside it `model_args.json` (the arguments of the model's
constructor: variant, input_shape, z_dim, hidden, n_classes) and `config.json` (the trial's
config). The rows (bench.results.read_rows) give each trial's profile, seed and config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aae_core import datasets, variants
from bench.config import TrialConfig
from bench.grids import GRIDS
from bench.results import config_of, pick_profile, select

# Config fields that follow a profile's scale (see `cells`).
SCALE_FIELDS = ("epochs", "train_examples", "parzen_samples", "parzen_validation", "parzen_test")
MODEL_ARGS = "model_args.json"


@dataclass(frozen=True)
class TrialArtifact:
    trial_id: str
    seed: int
    path: Path
    """The first file a figure reads, in the trial's artifact directory."""
    config: TrialConfig | None = None
    source: str = ""
    """The data directory the trial read (its rows' data_source), for figures of test images."""

    @property
    def directory(self) -> Path:
        return self.path.parent


def artifact_dir(results_dir: str | os.PathLike, grid: str, trial_id: str) -> Path:
    return Path(results_dir) / "artifacts" / grid / trial_id


def trial_file(results_dir, trial_id: str, grids, name: str) -> Path | None:
    """The file `name` of a trial's artifacts, looked for under each of `grids` in order (the
    grid that ran the trial first: its rows' `grid`); None when none holds it."""
    for grid in dict.fromkeys(str(g) for g in grids):
        path = artifact_dir(results_dir, grid, trial_id) / name
        if path.is_file():
            return path
    return None


def find_artifacts(results_dir, frame: pd.DataFrame, grid: str, filters: Mapping[str, object],
                   files: tuple[str, ...]) -> tuple[str | None, list[TrialArtifact]]:
    """(profile, trials): the trials of `grid` whose config matches `filters` and that saved
    every one of `files`, at the most faithful profile that has such trials. A trial's
    artifacts are under the grid that ran it (its rows' `grid`), which may be another grid
    with the same cell (bench.results.select)."""
    rows = select(frame, grid, filters)
    if rows.empty:
        return None, []
    found = []
    for row in rows.drop_duplicates("trial_id").to_dict("records"):
        for ran_by in dict.fromkeys((str(row["grid"]), grid)):
            if all(trial_file(results_dir, row["trial_id"], (ran_by,), name) for name in files):
                found.append((str(row["profile"]), row,
                              artifact_dir(results_dir, ran_by, row["trial_id"]) / files[0]))
                break
    profile = pick_profile([p for p, _, _ in found])
    chosen = [TrialArtifact(str(r["trial_id"]), int(r["seed"]), path, config_of(r),
                            str(r.get("data_source", "") or ""))
              for p, r, path in found if p == profile]
    return profile, sorted(chosen, key=lambda a: a.seed)


def cells(trials: list[TrialArtifact]) -> list[tuple[str, list[TrialArtifact]]]:
    """Trials grouped by cell (config up to the seed), in the grid's order, each labelled by the
    config fields that tell the cells apart."""
    groups: dict[str, list[TrialArtifact]] = {}
    for trial in trials:
        groups.setdefault(dataclasses.replace(trial.config, seed=0).trial_id, []).append(trial)
    first = trials[0].config
    order: list[str] = []
    if first.grid in GRIDS:
        order = [c.trial_id for c in GRIDS[first.grid](first.profile, 1)]
    keys = sorted(groups, key=lambda k: order.index(k) if k in order else len(order))
    configs = [groups[k][0].config for k in keys]
    names = [f.name for f in dataclasses.fields(TrialConfig) if f.name != "seed"]
    varying = [n for n in names if len({str(getattr(c, n)) for c in configs}) > 1]
    # A profile's scale follows the cell (smoke runs give labelled cells more examples): name
    # the cell by what the paper varies where that tells the cells apart.
    telling = [n for n in varying if n not in SCALE_FIELDS]
    if len({tuple(str(getattr(c, n)) for n in telling) for c in configs}) == len(configs):
        varying = telling
    varying = varying or ["variant", "dataset"]
    labels = [", ".join(f"{n}={getattr(c, n)}" for n in varying if getattr(c, n) is not None)
              for c in configs]
    return [(label, sorted(groups[k], key=lambda t: t.seed)) for label, k in zip(labels, keys, strict=True)]


class NoModelArgs(FileNotFoundError):
    """A checkpoint saved without model_args.json (a run older than it): its model's sizes are
    not known, and are never guessed from the weights' shapes."""


def load_model(trial: TrialArtifact) -> torch.nn.Module:
    """The trial's one-seed network, built from its model_args.json, with every weight of
    model.pt loaded strictly, in eval mode."""
    path = trial.directory / MODEL_ARGS
    if not path.is_file():
        raise NoModelArgs(f"trial {trial.trial_id} saved model.pt without {MODEL_ARGS} (a run "
                          f"older than it): rerun the trial to draw figures from its weights")
    args = json.loads(path.read_text(encoding="utf-8"))
    net = variants.network(args["variant"], tuple(args["input_shape"]), args["z_dim"],
                           list(args["hidden"]), 1, n_classes=args["n_classes"])
    state = torch.load(trial.directory / "model.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def decode(net: torch.nn.Module, codes) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] that the decoder gives for codes (N, code_dim)."""
    codes = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    return net.decoder(codes)[0].float().numpy()  # the model's one seed


def latents(trial: TrialArtifact) -> dict[str, np.ndarray]:
    with np.load(trial.directory / "latents.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@functools.lru_cache(maxsize=2)
def _test_split(name: str, fold: int, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    places = ([source] if source and Path(source).is_dir() else []) + [None]
    for place in places:
        try:
            data = datasets.load(name, place, fold=fold, download=False)
        except (datasets.DataError, OSError, ValueError):
            continue
        return data.test_x, data.test_y
    return None


def hold_out_images(trial: TrialArtifact, labels: np.ndarray) -> np.ndarray | None:
    """The test images the trial's latents belong to (the data files where the trial read them,
    else the usual search without downloading), or None when they cannot be found or their
    labels differ from the saved ones."""
    config = trial.config
    found = _test_split(config.dataset, config.fold or 0, trial.source)
    if found is None or not np.array_equal(found[1], labels):
        return None
    return found[0]
