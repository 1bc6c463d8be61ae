"""A trial's saved artifacts, found from the rows, and the network rebuilt from its checkpoint.

Artifacts live in `<results>/artifacts/<grid>/<trial_id>/` (bench.trial.save_artifacts):
`latents.npz` (y: test labels; z: test codes; for the semi-supervised family also y_probs =
q(y|x) and representation), `curve.csv` (epoch, loss_*, seconds), `model.pt` (a flat state dict
of the whole one-seed network), beside it `model_args.json` (the arguments of the model's
constructor: variant, input_shape, z_dim, hidden, n_classes) and `config.json` (the trial's
config). The rows (bench.results.read_rows) give each trial's profile, seed and config.

model.pt is not committed (18-22 MB a trial). What a figure computes from it (decoded images,
the cluster heads) is kept beside it in `figure_inputs.npz` (`from_weights`), which is
committed, so the report redrawn from a clean clone shows the images drawn where the weights were.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Mapping
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
log = logging.getLogger(__name__)
WEIGHTS = "model.pt"
FIGURE_INPUTS = "figure_inputs.npz"
FROM_WEIGHTS = (WEIGHTS, FIGURE_INPUTS)
"""A figure's artifact that either file satisfies: the weights, or what was drawn from them."""


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


def trial_file(results_dir, trial_id: str, grids, name: str | tuple[str, ...]) -> Path | None:
    """The file `name` of a trial's artifacts (a tuple: the first of those names it holds),
    looked for under each of `grids` in order (the grid that ran the trial first: its rows'
    `grid`); None when none holds it."""
    for grid in dict.fromkeys(str(g) for g in grids):
        for one in (name,) if isinstance(name, str) else name:
            path = artifact_dir(results_dir, grid, trial_id) / one
            if path.is_file():
                return path
    return None


def find_artifacts(results_dir, frame: pd.DataFrame, grid: str, filters: Mapping[str, object],
                   files: tuple[str | tuple[str, ...], ...]) -> tuple[str | None, list[TrialArtifact]]:
    """(profile, trials): the trials of `grid` whose config matches `filters` and that saved
    every one of `files` (an entry that is a tuple: any one of its names), at the most faithful
    profile that has such trials. A trial's artifacts are under the grid that ran it (its rows' `grid`), which may be another grid
    with the same cell (bench.results.select)."""
    rows = select(frame, grid, filters)
    if rows.empty:
        return None, []
    found = []
    for row in rows.drop_duplicates("trial_id").to_dict("records"):
        for ran_by in dict.fromkeys((str(row["grid"]), grid)):
            if all(trial_file(results_dir, row["trial_id"], (ran_by,), name) for name in files):
                found.append((str(row["profile"]), row,
                              trial_file(results_dir, row["trial_id"], (ran_by,), files[0])))
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


class StaleFigureInputs(FileNotFoundError):
    """figure_inputs.npz lacks what a figure asks of the weights (or holds it for other
    inputs), and model.pt, which would give it, is not here."""


def model_args(trial: TrialArtifact) -> dict:
    """The arguments the trial's network was built with (its model_args.json)."""
    path = trial.directory / MODEL_ARGS
    if not path.is_file():
        raise NoModelArgs(f"trial {trial.trial_id} saved model.pt without {MODEL_ARGS} (a run "
                          f"older than it): rerun the trial to draw figures from its weights")
    return json.loads(path.read_text(encoding="utf-8"))


def load_state(trial: TrialArtifact) -> dict[str, torch.Tensor]:
    return torch.load(trial.directory / WEIGHTS, map_location="cpu", weights_only=True)


def load_model(trial: TrialArtifact) -> torch.nn.Module:
    """The trial's one-seed network, built from its model_args.json, with every weight of
    model.pt loaded strictly, in eval mode."""
    args = model_args(trial)
    net = variants.network(args["variant"], tuple(args["input_shape"]), args["z_dim"],
                           list(args["hidden"]), 1, n_classes=args["n_classes"])
    net.load_state_dict(load_state(trial))
    return net.eval()


def from_weights(trial: TrialArtifact, name: str, inputs,
                 compute: Callable[[TrialArtifact, np.ndarray], np.ndarray]) -> np.ndarray:
    """compute(trial, inputs): what a figure draws from the trial's weights. Where model.pt is,
    it is computed from them and kept in the trial's figure_inputs.npz under `name`, with the
    inputs it was computed for; where it is not (a clean clone: model.pt is not committed), the
    kept array is returned, only if it was computed for these very inputs."""
    inputs = np.asarray(inputs, dtype=np.float32)
    store = trial.directory / FIGURE_INPUTS
    if (trial.directory / WEIGHTS).is_file():
        out = np.asarray(compute(trial, inputs))
        _keep(store, {name: out, f"{name}__inputs": inputs})
        return out
    kept = _read(store)
    if name not in kept or not np.array_equal(kept.get(f"{name}__inputs"), inputs):
        why = "has no" if name not in kept else "was made for other inputs of"
        raise StaleFigureInputs(f"trial {trial.trial_id}: {FIGURE_INPUTS} {why} '{name}' and "
                                f"{WEIGHTS} is not here: redraw the figure where the weights are")
    return kept[name]


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _keep(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Add `arrays` to the npz at `path` (replaced whole, through a temporary file, so a reader
    never sees half of it); a read-only results directory only loses the copy, with a warning."""
    kept = _read(path)
    if all(k in kept and np.array_equal(kept[k], v) for k, v in arrays.items()):
        return  # unchanged: leave the file (and its git status) alone
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{**kept, **arrays})
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not keep %s (%s): the figure is drawn, not kept", path, exc)


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
