"""PNG figures (matplotlib, Agg) from the artifacts trials saved; nothing is retrained here.

A figure is DATA (`FIGURES`): which grid's artifacts it reads (and which grids stand in when
that one has none), which files, which cell (`filters`), which renderer. A figure whose
artifacts do not exist is reported "not run yet" and never drawn with a stand-in.

Artifacts live in `<results>/artifacts/<grid>/<trial_id>/` (bench.trial.save_artifacts):
`latents.npz` (y: test labels; z: test codes; for the semi-supervised family also y_probs =
q(y|x) and representation), `curve.csv` (epoch, loss_*, seconds) and `model.pt` (a flat state
dict of the whole network). The rows (bench.results.read_rows) give each trial's profile, seed
and config; the figures that show images decode through the saved weights (`load_model`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aae_core import model as models
from bench.config import CATEGORICAL_VARIANTS, TrialConfig
from bench.grids import GRIDS
from bench.results import config_of, pick_profile, select

log = logging.getLogger("aae_bench.figures")

MAX_PANELS = 6
MAX_CURVE_CELLS = 8
DPI = 90
# The training phases in the paper's order (Section 2): reconstruction, then regularization;
# then what a phase-3 variant records beside them.
LOSS_ORDER = ("loss_reconstruction", "loss_discriminator", "loss_generator",
              "loss_classification", "validation_error")
WRITTEN, NOT_RUN_YET, NO_RENDERER = "written", "not run yet", "no renderer yet"
MANIFOLD_STEPS = 20  # Fig. 2's manifold: a 20 x 20 grid of decoded codes
WALK_STEPS = 10  # Fig. 4a: images along each mixture component's axis
ROLL_STEPS, ROLL_ROWS = 40, 4  # Fig. 4b: images along the swiss roll, wrapped in 4 rows
STYLE_ROWS = 10  # Fig. 5-6: test images whose style is kept (the first of each label)
CLUSTER_MEMBERS = 10  # Fig. 9: test images shown beside each cluster head
SCALE_FIELDS = ("epochs", "train_examples", "parzen_samples", "parzen_validation", "parzen_test")


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
    artifact: str | tuple[str, ...]
    """File(s) each trial's artifact directory must hold."""
    filters: Mapping[str, object] = field(default_factory=dict)
    """Config fields a trial must have (the grid's cell the figure shows)."""
    fallback: tuple[str, ...] = ()
    """Grids read, in order, when `grid` has no artifacts (their trials have the same cells)."""

    @property
    def files(self) -> tuple[str, ...]:
        return (self.artifact,) if isinstance(self.artifact, str) else tuple(self.artifact)


def _curves_spec(grid: str) -> FigureSpec:
    return FigureSpec(f"{grid}_curves", f"Training losses of the {grid} grid", "", grid, "curves",
                      "curve.csv")


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("table1_latents", "Hold-out codes of the Table 1 model, coloured by label", "",
               "table1", "latents", "latents.npz"),
    FigureSpec("fig2", "Hold-out 2-D codes under a Gaussian and a mixture-of-10-Gaussians prior, "
               "AAE (a-b) against VAE (c-d)", "Fig. 2 a-d", "figure2", "prior_comparison",
               "latents.npz"),
    FigureSpec("fig2_manifold", "Learned manifold of the 2-D Gaussian AAE", "Fig. 2 (manifold)",
               "figure2", "manifold", "model.pt",
               filters={"variant": "unsupervised", "prior": "gaussian"}),
    FigureSpec("fig4", "Hold-out codes of the label-regularized AAE under the mixture and the "
               "swiss-roll priors", "Fig. 4 (codes)", "figure4", "label_codes", "latents.npz"),
    FigureSpec("fig4_mixture_walk", "Walking along each mixture component's axis",
               "Fig. 4 a (walk)", "figure4", "mixture_walk", "model.pt",
               filters={"prior": "mixture"}),
    FigureSpec("fig4_swiss_roll_walk", "Walking along the swiss roll", "Fig. 4 b (walk)",
               "figure4", "swiss_roll_walk", "model.pt", filters={"prior": "swiss-roll"}),
    FigureSpec("fig5", "Disentangling style and content, MNIST", "Fig. 5", "figure5_6", "style",
               ("model.pt", "latents.npz"), filters={"dataset": "mnist"}),
    FigureSpec("fig6", "Disentangling style and content, SVHN", "Fig. 6", "figure5_6", "style",
               ("model.pt", "latents.npz"), filters={"dataset": "svhn"}),
    FigureSpec("fig9", "Cluster heads of unsupervised clustering with 16 clusters", "Fig. 9",
               "figure9", "cluster_heads", ("model.pt", "latents.npz"),
               filters={"clusters": 16}, fallback=("table3",)),
    FigureSpec("fig11", "2-D representations W_C y + z of test images, with the cluster heads",
               "Fig. 11", "figure11", "dim_reduction", ("model.pt", "latents.npz"),
               fallback=("dim_reduction",)),
    *(_curves_spec(g) for g in GRIDS),  # every grid, so a new grid has its curves at once
)


@dataclass
class FigureResult:
    spec: FigureSpec
    status: str
    path: Path | None = None
    caption: str = ""
    grid: str = ""
    """The grid whose artifacts were drawn (spec.grid or one of its fallbacks)."""
    size: tuple[int, int] | None = None
    """(width, height) of the PNG in pixels."""


@dataclass
class TrialArtifact:
    trial_id: str
    seed: int
    path: Path
    """The spec's first file, in the trial's artifact directory."""
    config: TrialConfig | None = None
    source: str = ""
    """The data directory the trial read (its rows' data_source), for figures of test images."""

    @property
    def directory(self) -> Path:
        return self.path.parent


def artifact_dir(results_dir: str | os.PathLike, grid: str, trial_id: str) -> Path:
    return Path(results_dir) / "artifacts" / grid / trial_id


# -- rows -> trials, cells ------------------------------------------------------------------


def find_artifacts(results_dir, frame: pd.DataFrame, spec: FigureSpec, grid: str | None = None
                   ) -> tuple[str | None, list[TrialArtifact]]:
    """(profile, trials): the most faithful profile whose trials saved every file of the spec."""
    grid = grid or spec.grid
    rows = select(frame, grid, spec.filters)
    if rows.empty:
        return None, []
    found = []
    for row in rows.drop_duplicates("trial_id").to_dict("records"):
        directory = artifact_dir(results_dir, grid, row["trial_id"])
        if all((directory / name).is_file() for name in spec.files):
            found.append((str(row["profile"]), row, directory / spec.files[0]))
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


# -- saved weights -> the network ---------------------------------------------------------


def _linear_shapes(state: Mapping[str, torch.Tensor], part: str) -> list[tuple[int, int]]:
    """(out, in) of each linear layer of `part` (e.g. "decoder"), first to last (a saved
    one-seed model: weights (1, out, in))."""
    prefix = f"{part}.net."
    index = sorted(int(k[len(prefix):].split(".")[0]) for k in state
                   if k.startswith(prefix) and k.endswith(".weight"))
    return [tuple(state[f"{prefix}{i}.weight"].shape[-2:]) for i in index]


def image_shape(n_pixels: int) -> tuple[int, int, int]:
    """(C, H, W) of a decoder's output size. Every data set of the paper has square images, grey
    (MNIST 28, TFD 48 / 96) or RGB (SVHN 32); 3 s^2 is never a square, so this is unambiguous."""
    for channels in (1, 3):
        side = math.isqrt(n_pixels // channels)
        if channels * side * side == n_pixels:
            return channels, side, side
    raise ValueError(f"a decoder output of {n_pixels} values is not a square grey or RGB image")


def _n_categories(config: TrialConfig, state: Mapping[str, torch.Tensor]) -> int:
    """K (classes or clusters) of a saved network, read from the shapes its variant gives it."""
    z = config.z_dim
    if "cluster_heads" in state:
        return int(state["cluster_heads"].shape[-2])
    if config.variant in CATEGORICAL_VARIANTS:
        return _linear_shapes(state, "encoder")[-1][0] - z  # encoder out: K + z_dim
    if config.variant == "supervised":
        return _linear_shapes(state, "decoder")[0][1] - z  # decoder in: K + z_dim
    if config.variant == "label-regularized":
        return _linear_shapes(state, "discriminator")[0][1] - z - 1  # z, one-hot, "unlabelled"
    return 10  # the other variants have no categories


def load_model(trial: TrialArtifact) -> torch.nn.Module:
    """The trial's network rebuilt from its config and model.pt (every weight, strictly)."""
    state = torch.load(trial.directory / "model.pt", map_location="cpu", weights_only=True)
    config = trial.config
    shape = image_shape(_linear_shapes(state, "decoder")[-1][0])
    net = models.VARIANTS[config.variant](shape, config.z_dim, config.hidden, 1,
                                          n_classes=_n_categories(config, state))
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def decode(net: torch.nn.Module, codes) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] that the decoder gives for codes (N, code_dim)."""
    codes = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    return net.decoder(codes)[0].float().numpy()  # the model's one seed


def _latents(trial: TrialArtifact) -> dict[str, np.ndarray]:
    with np.load(trial.directory / "latents.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@functools.lru_cache(maxsize=2)
def _test_split(name: str, fold: int, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    from aae_core import datasets

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


# -- drawing helpers ----------------------------------------------------------------------


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    """At a fixed DPI and size (no tight bbox), so that a PNG's size follows from its layout."""
    fig.savefig(out, dpi=DPI)
    _figure().close(fig)


def tile(images: np.ndarray, pad: int = 2, background: float = 1.0) -> np.ndarray:
    """(R, K, C, H, W) images in [0, 1] -> one (R (H + pad) + pad, K (W + pad) + pad, 3) RGB array.
    NaN images are left as the background (an empty place)."""
    rows, cols, channels, h, w = images.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), background, np.float32)
    for r in range(rows):
        for c in range(cols):
            image = images[r, c]
            if np.isnan(image).any():
                continue
            rgb = np.repeat(image, 3, axis=0) if channels == 1 else image[:3]
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y:y + h, x:x + w] = np.clip(rgb.transpose(1, 2, 0), 0.0, 1.0)
    return out


SEPARATOR = 4  # pixels between the reference column and the decoded images


def _separator(height: int, width: int = SEPARATOR) -> np.ndarray:
    return np.full((height, width, 3), 0.45, np.float32)


def _centres(n: int, size: int, pad: int = 2, offset: int = 0) -> list[float]:
    return [offset + pad + i * (size + pad) + size / 2 - 0.5 for i in range(n)]


def project_2d(z: np.ndarray) -> tuple[np.ndarray, str]:
    """The first two dims of z when z_dim <= 2, else its first two principal components."""
    xy, how, _ = _projection(z)
    return xy, how


def _projection(z: np.ndarray) -> tuple[np.ndarray, str, Callable[[np.ndarray], np.ndarray]]:
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if z.shape[1] == 1:
        def flat(v):
            v = np.asarray(v, dtype=np.float64).reshape(len(v), -1)
            return np.column_stack([v[:, 0], np.zeros(len(v))])

        return flat(z), "z (1-D, plotted on a line)", flat
    if z.shape[1] == 2:
        return z, "the two dims of z", lambda v: np.asarray(v, dtype=np.float64)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)

    def pca(v):
        return (np.asarray(v, dtype=np.float64) - mean) @ vt[:2].T

    return pca(z), f"a 2-D PCA projection of z (z_dim={z.shape[1]})", pca


def _scatter(ax, xy: np.ndarray, y: np.ndarray):
    return ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", vmin=-0.5, vmax=9.5, s=2, alpha=0.6,
                      rasterized=True)


def _label_colorbar(fig, mappable, axes) -> None:
    bar = fig.colorbar(mappable, ax=axes, label="test label", ticks=range(10))
    bar.solids.set_alpha(1.0)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _seeds_note(groups: list[tuple[str, list[TrialArtifact]]]) -> str:
    seeds = sorted({t.seed for _, trials in groups for t in trials})
    drawn = sorted({trials[0].seed for _, trials in groups})
    if seeds == drawn:
        return f"Drawn: seed {', '.join(map(str, drawn))}."
    return (f"Drawn: the lowest seed of each cell ({', '.join(map(str, drawn))}) of seeds "
            f"{', '.join(map(str, seeds))}.")


# -- renderers (trials, out, title) -> caption detail ---------------------------------------


def plot_latents(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """One scatter panel per seed (at most MAX_PANELS); returns the caption's detail."""
    plt = _figure()
    shown = trials[:MAX_PANELS]
    cols = min(3, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols + 1, 4 * nrows + 0.6),
                             squeeze=False, layout="constrained")
    how = ""
    for ax, trial in zip(axes.flat, shown, strict=False):
        data = _latents(trial)
        xy, how = project_2d(data["z"])
        scatter = _scatter(ax, xy, data["y"] if "y" in data else np.zeros(len(xy)))
        ax.set_title(f"seed {trial.seed}")
        ax.set_xlabel("z[0]" if how.startswith("the two") else "PC 1")
        ax.set_ylabel("z[1]" if how.startswith("the two") else "PC 2")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    _label_colorbar(fig, scatter, list(axes.flat))
    fig.suptitle(title)
    _save(fig, out)
    extra = f" (first {MAX_PANELS} of {len(trials)} seeds)" if len(trials) > MAX_PANELS else ""
    return f"Points: test-set codes, {how}, coloured by label{extra}."


FIG2_PANELS = (("unsupervised", "gaussian", "(a) AAE, Gaussian prior"),
               ("unsupervised", "mixture", "(b) AAE, mixture of 10 Gaussians"),
               ("vae", "gaussian", "(c) VAE, Gaussian prior"),
               ("vae", "mixture", "(d) VAE, mixture of 10 Gaussians"))


def plot_prior_comparison(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 2 a-d: a 2 x 2 panel of test codes, AAE above VAE, Gaussian left of mixture."""
    plt = _figure()
    groups = cells(trials)
    by_cell = {(ts[0].config.variant, ts[0].config.prior): ts for _, ts in groups}
    fig, axes = plt.subplots(2, 2, figsize=(10, 9.5), squeeze=False, layout="constrained")
    scatter = None
    for ax, (variant, prior, name) in zip(axes.flat, FIG2_PANELS, strict=True):
        ax.set_title(name)
        if (variant, prior) not in by_cell:
            _empty(ax, "not run yet")
            continue
        trial = by_cell[variant, prior][0]
        data = _latents(trial)
        xy, how = project_2d(data["z"])
        scatter = _scatter(ax, xy, data["y"])
        ax.set_xlabel("z[0]" if how.startswith("the two") else "PC 1")
        ax.set_ylabel("z[1]" if how.startswith("the two") else "PC 2")
        ax.set_aspect("equal", adjustable="datalim")
    if scatter is not None:
        _label_colorbar(fig, scatter, list(axes.flat))
    fig.suptitle(title)
    _save(fig, out)
    stds = sorted({t.config.prior_std for _, ts in groups for t in ts
                   if t.config.prior == "gaussian"})
    gaussian = f" Gaussian prior N(0, {', '.join(f'{s:g}' for s in stds)}^2 I)." if stds else ""
    return (f"Points: test-set codes (2-D), coloured by label; one panel per cell.{gaussian} "
            f"{_seeds_note(groups)}")


def _image_figure(mosaic: np.ndarray, scale: int = 2, margins: tuple[float, float, float, float]
                  = (1.0, 0.3, 0.7, 0.8)):
    """A figure showing `mosaic` at exactly `scale` screen pixels per image pixel (crisp, no
    resampling); margins (left, right, bottom, top) in inches hold tick labels and the title."""
    plt = _figure()
    h, w = mosaic.shape[:2]
    left, right, bottom, top = margins
    width, height = w * scale / DPI, h * scale / DPI
    fig = plt.figure(figsize=(width + left + right, height + bottom + top))
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_frame_on(False)
    ax.tick_params(length=0, labelsize=8)
    return fig, ax


def plot_manifold(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 2's manifold: decode a regular grid over the 2-D Gaussian prior's percentiles."""
    from scipy.stats import norm

    trial = trials[0]
    config = trial.config
    net = load_model(trial)
    if config.z_dim != 2:
        raise ValueError(f"the manifold needs a 2-D code; trial {trial.trial_id} has {config.z_dim}")
    n = MANIFOLD_STEPS
    # Uniform steps in the prior's percentiles (the paper's "Gaussian percentiles"), so that the
    # grid covers the prior's mass evenly: percentile (i + 0.5) / n of N(0, prior_std^2).
    values = config.prior_std * norm.ppf((np.arange(n) + 0.5) / n)
    z1, z0 = np.meshgrid(values[::-1], values, indexing="ij")  # rows: z[1] from high to low
    codes = np.stack([z0.ravel(), z1.ravel()], 1)  # (n * n, 2)
    images = decode(net, codes)
    mosaic = tile(images.reshape(n, n, *images.shape[1:]), pad=0)
    size = images.shape[-1]
    fig, ax = _image_figure(mosaic, 1)
    ticks = list(range(0, n, 3))
    ax.set_xticks([_centres(n, size, 0)[i] for i in ticks], [f"{values[i]:.1f}" for i in ticks])
    ax.set_yticks([_centres(n, size, 0)[i] for i in ticks],
                  [f"{values[::-1][i]:.1f}" for i in ticks])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    fig.suptitle(title)
    _save(fig, out)
    return (f"Images: the decoder of model.pt (seed {trial.seed}) at a {n} x {n} grid of codes, "
            f"each axis at the percentiles (i + 0.5)/{n} of the prior N(0, {config.prior_std:g}^2).")


def mixture_axis(config: TrialConfig, steps: int = WALK_STEPS) -> np.ndarray:
    """(K, steps, 2): points along each mixture component's main (radial) axis, radius +- 3
    std_radial (+- radius where that would cross the origin), centred on the component."""
    k = 10
    half = walk_half_width(config)
    t = np.linspace(config.mixture_radius - half, config.mixture_radius + half, steps)
    angle = 2 * np.pi * np.arange(k) / k  # component j's centre direction (priors.GaussianMixture)
    unit = np.stack([np.cos(angle), np.sin(angle)], 1)  # (K, 2)
    return unit[:, None, :] * t[None, :, None]


def walk_half_width(config: TrialConfig) -> float:
    return min(3 * config.mixture_std_radial, config.mixture_radius)


def swiss_roll_curve(u: np.ndarray) -> np.ndarray:
    """(len(u), 2): the swiss roll at its parameter u in [0, 1] (priors.SwissRoll: r = 3 sqrt(u),
    theta = 4 pi sqrt(u); label j owns u in [j/10, (j+1)/10))."""
    r, theta = 3 * np.sqrt(u), 4 * np.pi * np.sqrt(u)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], 1)


def plot_label_codes(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 4's codes: one panel per prior, coloured by label, with the walks' paths drawn."""
    plt = _figure()
    groups = cells(trials)
    by_prior = {ts[0].config.prior: ts for _, ts in groups}
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), squeeze=False, layout="constrained")
    scatter = None
    for ax, (prior, name) in zip(axes.flat, (("mixture", "(a) mixture of 10 Gaussians"),
                                             ("swiss-roll", "(b) swiss roll")), strict=True):
        ax.set_title(name)
        if prior not in by_prior:
            _empty(ax, "not run yet")
            continue
        trial = by_prior[prior][0]
        data = _latents(trial)
        scatter = _scatter(ax, data["z"], data["y"])
        if prior == "mixture":
            for line in mixture_axis(trial.config):
                ax.plot(line[:, 0], line[:, 1], color="k", lw=0.6)
        else:
            curve = swiss_roll_curve(np.linspace(0, 1, 400))
            ax.plot(curve[:, 0], curve[:, 1], color="k", lw=0.6)
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        ax.set_aspect("equal", adjustable="datalim")
    if scatter is not None:
        _label_colorbar(fig, scatter, list(axes.flat))
    fig.suptitle(title)
    _save(fig, out)
    labels = sorted({t.config.labels for _, ts in groups for t in ts})
    return (f"Points: test-set codes, coloured by label; black: the paths walked in the walk "
            f"figures. Labelled training examples: {', '.join(map(str, labels))}. "
            f"{_seeds_note(groups)}")


def plot_mixture_walk(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 4a's walk: row j decodes points along mixture component j's radial axis."""
    trial = trials[0]
    config = trial.config
    points = mixture_axis(config)  # (K, steps, 2)
    images = decode(load_model(trial), points.reshape(-1, 2))
    k, steps = points.shape[:2]
    size = images.shape[-1]
    fig, ax = _image_figure(tile(images.reshape(k, steps, *images.shape[1:])), 2,
                            margins=(1.2, 0.3, 0.9, 0.8))
    ax.set_yticks(_centres(k, size), [f"component {j}" for j in range(k)])
    t = np.linalg.norm(points[0], axis=1)
    ax.set_xticks(_centres(steps, size), [f"{v:.2f}" for v in t])
    ax.set_xlabel("distance from the origin along the component's axis")
    fig.suptitle(title)
    _save(fig, out)
    return (f"Images: the decoder of model.pt (seed {trial.seed}) at {steps} points along each "
            f"component's axis (row j: component j, the one label j is pushed to), at distances "
            f"{t[0]:.2f} to {t[-1]:.2f} from the origin: the centre's radius "
            f"{config.mixture_radius:g} +- 3 radial std ({config.mixture_std_radial:g}), at most "
            f"+- the radius.")


def plot_swiss_roll_walk(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 4b's walk: decode the swiss roll from u = 0 to u = 1 (an image strip in rows)."""
    trial = trials[0]
    u = np.linspace(0, 1, ROLL_STEPS)
    images = decode(load_model(trial), swiss_roll_curve(u))
    per_row = ROLL_STEPS // ROLL_ROWS
    size = images.shape[-1]
    fig, ax = _image_figure(tile(images.reshape(ROLL_ROWS, per_row, *images.shape[1:])), 2,
                            margins=(1.2, 0.3, 0.9, 0.8))
    ax.set_yticks(_centres(ROLL_ROWS, size),
                  [f"u {u[r * per_row]:.2f}-{u[(r + 1) * per_row - 1]:.2f}" for r in range(ROLL_ROWS)])
    ticks = list(range(0, per_row, 4))
    ax.set_xticks([_centres(per_row, size)[i] for i in ticks], [f"+{i}" for i in ticks])
    ax.set_xlabel("step along the roll (left to right, then the next row)")
    fig.suptitle(title)
    _save(fig, out)
    return (f"Images: the decoder of model.pt (seed {trial.seed}) at {ROLL_STEPS} evenly spaced "
            f"values of the roll's parameter u in [0, 1]; label j owns u in [j/10, (j+1)/10).")


def _one_hot(index, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[np.asarray(index)]


def plot_style(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 5-6: row r keeps the style z of a test image, column l decodes [one-hot(l), z]."""
    trial = trials[0]
    net = load_model(trial)
    data = _latents(trial)
    y, z = data["y"], data["z"]
    k = net.n_classes
    rows = [int(np.flatnonzero(y == label)[0]) for label in range(k) if (y == label).any()]
    rows = rows[:STYLE_ROWS]
    codes = np.concatenate([np.repeat(_one_hot(range(k), k)[None], len(rows), 0),
                            np.repeat(z[rows][:, None], k, 1)], 2)  # (R, K, K + z_dim)
    images = decode(net, codes.reshape(len(rows) * k, -1))
    images = images.reshape(len(rows), k, *images.shape[1:])
    size = images.shape[-1]
    grid = tile(images)
    originals = hold_out_images(trial, y)
    offset = 0
    if originals is not None:
        left = tile(originals[rows][:, None])
        grid = np.concatenate([left, _separator(len(grid)), grid], 1)
        offset = left.shape[1] + SEPARATOR
    fig, ax = _image_figure(grid, 2, margins=(1.4, 0.3, 0.9, 0.8))
    xt = _centres(k, size, offset=offset)
    xl = [str(label) for label in range(k)]
    if originals is not None:
        xt, xl = [_centres(1, size)[0], *xt], ["test image", *xl]
    ax.set_xticks(xt, xl)
    ax.set_yticks(_centres(len(rows), size), [f"#{i} ({y[i]})" for i in rows])
    ax.set_xlabel("label given to the decoder")
    ax.set_ylabel("style z of test image # (its label)")
    fig.suptitle(title)
    _save(fig, out)
    first = ("the test image, then " if originals is not None
             else "(test images not shown: their data files were not found) ")
    return (f"Images: the decoder of model.pt (seed {trial.seed}); each row keeps the style z "
            f"(encoded) of the first test image of a label, showing {first}the decoder's output "
            f"for [one-hot(label), z] with each of the {k} labels.")


def plot_cluster_heads(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 9: row k decodes y = one-hot(k), z = 0 (the cluster head), then test images that
    q(y|x) assigns to cluster k."""
    trial = trials[0]
    net = load_model(trial)
    data = _latents(trial)
    k = net.n_classes
    z_dim = data["z"].shape[1]
    # z = 0: the mean of the style prior, so that the image shows the cluster, not a style.
    heads = decode(net, net.representation(torch.as_tensor(_one_hot(range(k), k)),
                                           torch.zeros(k, z_dim)))
    assigned = data["y_probs"].argmax(1)
    originals = hold_out_images(trial, data["y"])
    shape = heads.shape[1:]
    members = np.full((k, CLUSTER_MEMBERS, *shape), np.nan, np.float32)
    for cluster in range(k):
        index = np.flatnonzero(assigned == cluster)[:CLUSTER_MEMBERS]
        if len(index) == 0:
            continue
        if originals is not None:
            members[cluster, :len(index)] = originals[index]
        else:
            members[cluster, :len(index)] = decode(net, data["representation"][index])
    left, right = tile(heads[:, None]), tile(members)
    grid = np.concatenate([left, _separator(len(left)), right], 1)
    size = shape[-1]
    fig, ax = _image_figure(grid, 2 if k <= 16 else 1, margins=(1.4, 0.3, 0.6, 0.8))
    counts = np.bincount(assigned, minlength=k)
    ax.set_yticks(_centres(k, size), [f"{c} ({counts[c]})" for c in range(k)])
    ax.set_xticks([_centres(1, size)[0], left.shape[1] + SEPARATOR + right.shape[1] / 2],
                  ["head", "test images assigned to the cluster"])
    ax.set_ylabel("cluster k (test images assigned to it)")
    fig.suptitle(title)
    _save(fig, out)
    what = ("the first test images (in test order)" if originals is not None else
            "reconstructions of the first test images (in test order; their data files were "
            "not found)")
    return (f"Images: the decoder of model.pt (seed {trial.seed}); first column: the cluster "
            f"head, decoded from y = one-hot(k) and z = 0 (the style prior's mean); then "
            f"{what} whose argmax q(y|x) is k.")


def plot_dim_reduction(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Fig. 11: one panel per cell: W_C y + z of test images by label, the heads W_C marked."""
    plt = _figure()
    groups = cells(trials)
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n + 1, 5.6), squeeze=False,
                             layout="constrained")
    scatter, how = None, ""
    for ax, (label, cell) in zip(axes.flat, groups, strict=True):
        trial = cell[0]
        data = _latents(trial)
        state = torch.load(trial.directory / "model.pt", map_location="cpu", weights_only=True)
        xy, how, project = _projection(data["representation"])
        heads = project(state["cluster_heads"][0].float().numpy())  # (K, 2)
        scatter = _scatter(ax, xy, data["y"])
        ax.scatter(heads[:, 0], heads[:, 1], marker="X", s=70, c="k", edgecolors="w",
                   linewidths=0.8)
        for index, (hx, hy) in enumerate(heads):
            ax.annotate(str(index), (hx, hy), xytext=(4, 4), textcoords="offset points",
                        fontsize=7, weight="bold")
        ax.set_title(label)
        ax.set_aspect("equal", adjustable="datalim")
    _label_colorbar(fig, scatter, list(axes.flat))
    fig.suptitle(title)
    _save(fig, out)
    return (f"Points: the representation W_C y + z of each test image ({how.replace('z', 'it')}), "
            f"coloured by its label; black crosses: the cluster heads (rows of W_C), numbered. "
            f"{_seeds_note(groups)}")


def plot_curves(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """One row of panels per cell (one panel per loss), one line per seed, against epoch."""
    plt = _figure()
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    groups = cells(trials)
    shown = groups[:MAX_CURVE_CELLS]
    curves = {t.trial_id: pd.read_csv(t.path) for _, ts in shown for t in ts}
    found = {c for df in curves.values() for c in df.columns if c in LOSS_ORDER or
             c.startswith("loss_")}
    losses = [c for c in LOSS_ORDER if c in found] + sorted(found - set(LOSS_ORDER))
    ncols = max(1, len(losses))
    fig, axes = plt.subplots(len(shown), ncols, figsize=(3.6 * ncols + 0.6, 2.7 * len(shown) + 0.8),
                             squeeze=False, layout="constrained")
    for row, (label, cell) in zip(axes, shown, strict=True):
        for ax, loss in zip(row, losses, strict=False):
            for trial in cell:
                df = curves[trial.trial_id]
                if loss in df.columns and "epoch" in df.columns:
                    ax.plot(df["epoch"], df[loss], marker="o", markersize=3,
                            label=f"seed {trial.seed}")
            last = max(len(curves[t.trial_id]) for t in cell)
            ax.set_xlim(0.5, last + 0.5)
            if last <= 10:
                ax.set_xticks(range(1, last + 1))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
            ax.set_title(loss.removeprefix("loss_").replace("_", " "), fontsize=9)
            ax.tick_params(labelsize=7)
            if not ax.lines:
                _empty(ax, "not recorded\nfor this cell")
        row[0].set_ylabel(label if len(label) < 40 else label.replace(", ", ",\n"), fontsize=7)
        row[0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    _save(fig, out)
    extra = (f" First {MAX_CURVE_CELLS} of {len(groups)} cells." if len(groups) > MAX_CURVE_CELLS
             else "")
    return ("Lines: per-epoch mean training losses (curve.csv); one row of panels per cell, one "
            f"line per seed.{extra}")


RENDERERS: dict[str, Callable[[list[TrialArtifact], Path, str], str]] = {
    "latents": plot_latents,
    "curves": plot_curves,
    "prior_comparison": plot_prior_comparison,
    "manifold": plot_manifold,
    "label_codes": plot_label_codes,
    "mixture_walk": plot_mixture_walk,
    "swiss_roll_walk": plot_swiss_roll_walk,
    "style": plot_style,
    "cluster_heads": plot_cluster_heads,
    "dim_reduction": plot_dim_reduction,
}

def caption(spec: FigureSpec, profile: str | None, trials: list[TrialArtifact], detail: str,
            grid: str | None = None) -> str:
    seeds = ", ".join(str(s) for s in sorted({t.seed for t in trials}))
    paper = f" (mirrors the paper's {spec.paper})" if spec.paper else ""
    return (f"{spec.title}{paper}. Grid {grid or spec.grid}, profile {profile}, seeds {seeds}. "
            f"{detail}").strip()


def write_figures(results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  frame: pd.DataFrame | None = None,
                  figures: tuple[FigureSpec, ...] = FIGURES) -> list[FigureResult]:
    """Every figure in `figures` whose artifacts exist, as out_dir/<key>.png; the others are
    returned with status "not run yet" (no artifacts), "no renderer yet" or "error: ..."."""
    if frame is None:
        from bench.results import read_rows

        frame = read_rows(results_dir)
    out_dir = Path(out_dir)
    results: list[FigureResult] = []
    for spec in figures:
        try:
            results.append(_write_one(results_dir, out_dir, frame, spec))
        except Exception as exc:  # one broken artifact must not take the whole report down
            log.exception("figure %s failed", spec.key)
            _figure().close("all")
            (out_dir / f"{spec.key}.png").unlink(missing_ok=True)
            results.append(FigureResult(spec, f"error: {type(exc).__name__}: {exc}"))
    return results


def _write_one(results_dir, out_dir: Path, frame: pd.DataFrame, spec: FigureSpec) -> FigureResult:
    for grid in (spec.grid, *spec.fallback):
        profile, trials = find_artifacts(results_dir, frame, spec, grid)
        if trials:
            break
    if not trials:
        return FigureResult(spec, NOT_RUN_YET)
    renderer = RENDERERS.get(spec.kind)
    if renderer is None:
        return FigureResult(spec, NO_RENDERER, grid=grid)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.key}.png"
    title = f"{spec.title}\n[{spec.paper + ', ' if spec.paper else ''}grid {grid}, {profile}]"
    detail = renderer(trials, path, title)
    return FigureResult(spec, WRITTEN, path, caption(spec, profile, trials, detail, grid), grid,
                        _png_size(path))


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    return int(pixels.shape[1]), int(pixels.shape[0])
