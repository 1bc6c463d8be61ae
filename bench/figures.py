"""PNG figures (matplotlib, Agg) from the artifacts trials saved; nothing is retrained here.

A figure is DATA (`FIGURES`): which grid's artifacts it reads, which file, which renderer. The
paper's figures that no grid produces yet are listed with `grid` names reserved for them; the
report shows them as "not run yet" until artifacts exist, and never draws a stand-in.

Artifacts live in `<results>/artifacts/<grid>/<trial_id>/` (bench.trial.save_artifacts):
`latents.npz` (z: (N, z_dim) test-set codes, y: labels) and `curve.csv` (epoch, loss_*, seconds).
The rows (bench.results.read_rows) give each trial's profile and seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.tables import pick_profile, select

MAX_PANELS = 6
# The training phases in the paper's order (Section 2): reconstruction, then regularization.
LOSS_ORDER = ("loss_reconstruction", "loss_discriminator", "loss_generator")
WRITTEN, NOT_RUN_YET, NO_RENDERER = "written", "not run yet", "no renderer yet"


@dataclass(frozen=True)
class FigureSpec:
    key: str
    """File stem of the PNG and anchor in the report."""
    title: str
    paper: str
    """The paper's figure this mirrors ("" for our own diagnostics)."""
    grid: str
    kind: str
    """Renderer key in RENDERERS."""
    artifact: str
    """File each trial's artifact directory must hold."""
    filters: Mapping[str, object] = field(default_factory=dict)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("table1_latents", "Hold-out codes of the Table 1 model, coloured by label", "",
               "table1", "latents", "latents.npz"),
    FigureSpec("table1_curves", "Training losses of the Table 1 grid", "", "table1", "curves",
               "curve.csv"),
    # Seams for the paper's figures: a grid of this name saving this artifact makes them appear
    # (with a renderer registered under `kind`).
    FigureSpec("fig2", "AAE vs VAE codes of hold-out images under a Gaussian and a mixture prior, "
               "with the learned manifold", "Fig. 2", "figure2", "latents_compare", "latents.npz"),
    FigureSpec("fig4", "Paper Fig. 4", "Fig. 4", "figure4", "latents", "latents.npz"),
    FigureSpec("fig5_6", "Paper Figs. 5-6", "Figs. 5-6", "figure5_6", "samples", "samples.npz"),
    FigureSpec("fig9", "Paper Fig. 9", "Fig. 9", "figure9", "clusters", "clusters.npz"),
    FigureSpec("fig11", "Paper Fig. 11", "Fig. 11", "figure11", "latents", "latents.npz"),
)


@dataclass
class FigureResult:
    spec: FigureSpec
    status: str
    path: Path | None = None
    caption: str = ""


@dataclass
class TrialArtifact:
    trial_id: str
    seed: int
    path: Path


def artifact_dir(results_dir: str | os.PathLike, grid: str, trial_id: str) -> Path:
    return Path(results_dir) / "artifacts" / grid / trial_id


def find_artifacts(results_dir, frame: pd.DataFrame, spec: FigureSpec
                   ) -> tuple[str | None, list[TrialArtifact]]:
    """(profile, trials): the most faithful profile whose trials saved the spec's artifact."""
    rows = select(frame, spec.grid, spec.filters)
    if rows.empty:
        return None, []
    trials = rows.drop_duplicates("trial_id")
    found = [(str(r.profile), TrialArtifact(str(r.trial_id), int(r.seed),
                                            artifact_dir(results_dir, spec.grid, r.trial_id)
                                            / spec.artifact))
             for r in trials.itertuples()]
    found = [(p, a) for p, a in found if a.path.is_file()]
    profile = pick_profile([p for p, _ in found])
    chosen = sorted((a for p, a in found if p == profile), key=lambda a: a.seed)
    return profile, chosen


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def project_2d(z: np.ndarray) -> tuple[np.ndarray, str]:
    """The first two dims of z when z_dim <= 2, else its first two principal components."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), "z (1-D, plotted on a line)"
    if z.shape[1] == 2:
        return z, "the two dims of z"
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, f"a 2-D PCA projection of z (z_dim={z.shape[1]})"


def plot_latents(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """One scatter panel per seed (at most MAX_PANELS); returns the caption's detail."""
    plt = _figure()
    shown = trials[:MAX_PANELS]
    cols = min(3, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4 * nrows), squeeze=False)
    how = ""
    for ax, trial in zip(axes.flat, shown, strict=False):
        with np.load(trial.path, allow_pickle=False) as data:
            xy, how = project_2d(data["z"])
            y = data["y"] if "y" in data.files else np.zeros(len(xy))
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", s=2, alpha=0.6,
                             rasterized=True)
        ax.set_title(f"seed {trial.seed}")
        ax.set_xlabel("z[0]" if how.startswith("the two") else "PC 1")
        ax.set_ylabel("z[1]" if how.startswith("the two") else "PC 2")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.colorbar(scatter, ax=list(axes.flat), label="label")
    fig.suptitle(title)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    extra = f" (first {MAX_PANELS} of {len(trials)} seeds)" if len(trials) > MAX_PANELS else ""
    return f"Points: test-set codes, {how}, coloured by label{extra}."


def plot_curves(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """One panel per loss column, one line per seed, against epoch."""
    plt = _figure()
    from matplotlib.ticker import MaxNLocator

    curves = [(t, pd.read_csv(t.path)) for t in trials]
    found = {c for _, df in curves for c in df.columns if c.startswith("loss_")}
    losses = [c for c in LOSS_ORDER if c in found] + sorted(found - set(LOSS_ORDER))
    fig, axes = plt.subplots(1, max(1, len(losses)), figsize=(4.5 * max(1, len(losses)), 3.6),
                             squeeze=False)
    for ax, loss in zip(axes.flat, losses, strict=False):
        for trial, df in curves:
            if loss in df.columns and "epoch" in df.columns:
                ax.plot(df["epoch"], df[loss], marker="o", markersize=3, label=f"seed {trial.seed}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(loss.removeprefix("loss_"))
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return "Lines: per-epoch mean training losses (curve.csv), one per seed."


RENDERERS: dict[str, Callable[[list[TrialArtifact], Path, str], str]] = {
    "latents": plot_latents,
    "curves": plot_curves,
}


def caption(spec: FigureSpec, profile: str | None, trials: list[TrialArtifact], detail: str) -> str:
    seeds = ", ".join(str(t.seed) for t in trials)
    paper = f" (mirrors the paper's {spec.paper})" if spec.paper else ""
    return (f"{spec.title}{paper}. Grid {spec.grid}, profile {profile}, seeds {seeds}. "
            f"{detail}").strip()


def write_figures(results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  frame: pd.DataFrame | None = None,
                  figures: tuple[FigureSpec, ...] = FIGURES) -> list[FigureResult]:
    """Every figure in `figures` whose artifacts exist, as out_dir/<key>.png; the others are
    returned with status "not run yet" (no artifacts) or "no renderer yet"."""
    if frame is None:
        from bench.results import read_rows

        frame = read_rows(results_dir)
    out_dir = Path(out_dir)
    results: list[FigureResult] = []
    for spec in figures:
        profile, trials = find_artifacts(results_dir, frame, spec)
        if not trials:
            results.append(FigureResult(spec, NOT_RUN_YET))
            continue
        renderer = RENDERERS.get(spec.kind)
        if renderer is None:
            results.append(FigureResult(spec, NO_RENDERER))
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{spec.key}.png"
        title = f"{spec.title} [{spec.grid}, {profile}]"
        detail = renderer(trials, path, title)
        results.append(FigureResult(spec, WRITTEN, path, caption(spec, profile, trials, detail)))
    return results
