"""The plotters: matplotlib (Agg) drawings of a figure's trials, one function per kind of figure.

Each plotter takes the trials a figure shows (bench.artifacts.TrialArtifact, grouped into cells
where it shows several), the PNG to write and its title, and returns the caption's detail. The
figures that show images decode through the saved weights (bench.artifacts.load_model), by
way of bench.artifacts.from_weights, which keeps what they decoded beside the weights, so the
figure is redrawn the same where the weights are not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.artifacts import (
    TrialArtifact,
    cells,
    decode,
    from_weights,
    hold_out_images,
    latents,
    load_model,
    load_state,
    model_args,
)
from bench.config import TrialConfig

MAX_PANELS = 6
MAX_CURVE_CELLS = 8
DPI = 90
# The training phases in the paper's order (Section 2): reconstruction, then regularization;
# then what a phase-3 variant records beside them.
LOSS_ORDER = ("loss_reconstruction", "loss_discriminator", "loss_generator",
              "loss_classification", "validation_error")
MANIFOLD_STEPS = 20  # Fig. 2's manifold: a 20 x 20 grid of decoded codes
WALK_STEPS = 10  # Fig. 4a: images along each mixture component's axis
ROLL_STEPS, ROLL_ROWS = 40, 4  # Fig. 4b: images along the swiss roll, wrapped in 4 rows
STYLE_ROWS = 10  # Fig. 5-6: test images whose style is kept (the first of each label)
CLUSTER_MEMBERS = 10  # Fig. 9: test images shown beside each cluster head


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


def _projection(z: np.ndarray, name: str = "z") -> tuple[np.ndarray, str, Callable[[np.ndarray], np.ndarray]]:
    """(the 2-D points, how they were made, the map that makes them), `name` naming z in the
    words (the dimension is z_dim's for z and for Section 7's representation alike)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if z.shape[1] == 1:
        def flat(v):
            v = np.asarray(v, dtype=np.float64).reshape(len(v), -1)
            return np.column_stack([v[:, 0], np.zeros(len(v))])

        return flat(z), f"{name} (1-D, plotted on a line)", flat
    if z.shape[1] == 2:
        return z, f"the two dims of {name}", lambda v: np.asarray(v, dtype=np.float64)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)

    def pca(v):
        return (np.asarray(v, dtype=np.float64) - mean) @ vt[:2].T

    return pca(z), f"a 2-D PCA projection of {name} (z_dim={z.shape[1]})", pca


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


# -- plotters (trials, out, title) -> caption detail ---------------------------------------


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
        data = latents(trial)
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
        data = latents(trial)
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


def _decoded(trial: TrialArtifact, name: str, codes) -> np.ndarray:
    """Images the trial's decoder gives for `codes` (kept as `name`, bench.artifacts.from_weights)."""
    return from_weights(trial, name, codes, lambda t, c: decode(load_model(t), c))


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
    if config.z_dim != 2:
        raise ValueError(f"the manifold needs a 2-D code; trial {trial.trial_id} has {config.z_dim}")
    n = MANIFOLD_STEPS
    # Uniform steps in the prior's percentiles (the paper's "Gaussian percentiles"), so that the
    # grid covers the prior's mass evenly: percentile (i + 0.5) / n of N(0, prior_std^2).
    values = config.prior_std * norm.ppf((np.arange(n) + 0.5) / n)
    z1, z0 = np.meshgrid(values[::-1], values, indexing="ij")  # rows: z[1] from high to low
    codes = np.stack([z0.ravel(), z1.ravel()], 1)  # (n * n, 2)
    images = _decoded(trial, "manifold", codes)
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
    half = min(3 * config.mixture_std_radial, config.mixture_radius)
    t = np.linspace(config.mixture_radius - half, config.mixture_radius + half, steps)
    angle = 2 * np.pi * np.arange(k) / k  # component j's centre direction (priors.GaussianMixture)
    unit = np.stack([np.cos(angle), np.sin(angle)], 1)  # (K, 2)
    return unit[:, None, :] * t[None, :, None]


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
        data = latents(trial)
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
    images = _decoded(trial, "mixture_walk", points.reshape(-1, 2))
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
    images = _decoded(trial, "swiss_roll_walk", swiss_roll_curve(u))
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
    data = latents(trial)
    y, z = data["y"], data["z"]
    k = model_args(trial)["n_classes"]
    rows = [int(np.flatnonzero(y == label)[0]) for label in range(k) if (y == label).any()]
    rows = rows[:STYLE_ROWS]
    codes = np.concatenate([np.repeat(_one_hot(range(k), k)[None], len(rows), 0),
                            np.repeat(z[rows][:, None], k, 1)], 2)  # (R, K, K + z_dim)
    images = _decoded(trial, "style", codes.reshape(len(rows) * k, -1))
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
    data = latents(trial)
    k = model_args(trial)["n_classes"]
    z_dim = data["z"].shape[1]

    def head_images(t: TrialArtifact, codes: np.ndarray) -> np.ndarray:
        # z = 0: the mean of the style prior, so that the image shows the cluster, not a style.
        net = load_model(t)
        with torch.no_grad():
            return decode(net, net.representation(torch.as_tensor(codes[:, :k]),
                                                   torch.as_tensor(codes[:, k:])))

    heads = from_weights(trial, "cluster_heads",
                         np.concatenate([_one_hot(range(k), k), np.zeros((k, z_dim))], 1),
                         head_images)
    assigned = data["y_probs"].argmax(1)
    originals = hold_out_images(trial, data["y"])
    shown = [np.flatnonzero(assigned == cluster)[:CLUSTER_MEMBERS] for cluster in range(k)]
    every = np.concatenate(shown)
    # Without the test images, their reconstructions; kept either way, for a machine without them.
    rebuilt = _decoded(trial, "cluster_members", data["representation"][every])
    pictures = originals[every] if originals is not None else rebuilt
    shape = heads.shape[1:]
    members = np.full((k, CLUSTER_MEMBERS, *shape), np.nan, np.float32)
    start = 0
    for cluster, index in enumerate(shown):
        members[cluster, :len(index)] = pictures[start:start + len(index)]
        start += len(index)
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


def cluster_use(y_probs: np.ndarray) -> np.ndarray:
    """Each cluster's count of test images whose argmax q(y|x) it is, largest first."""
    return np.sort(np.bincount(y_probs.argmax(1), minlength=y_probs.shape[1]))[::-1]


def plot_cluster_use(trials: list[TrialArtifact], out: Path, title: str) -> str:
    """Our diagnostic beside Table 3: how the test images spread over the clusters, per cell
    and seed. Clusters that hold no image bound the clustering error from below (K used
    clusters can label at most K digits), which a collapsed model shows at once."""
    plt = _figure()
    panels = [(label, trial) for label, cell in cells(trials) for trial in cell]
    shown = panels[:MAX_PANELS]
    cols = min(3, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols + 0.4, 3.4 * nrows + 0.6),
                             squeeze=False, layout="constrained")
    used = []
    for ax, (label, trial) in zip(axes.flat, shown, strict=False):
        counts = cluster_use(latents(trial)["y_probs"])
        k, n = len(counts), counts.sum()
        ax.bar(np.arange(1, k + 1), counts / n, color="tab:blue")
        ax.axhline(1 / k, color="k", linestyle="--", linewidth=1, label="1/K (uniform prior)")
        in_use = int((counts > 0).sum())
        used.append(f"{label} seed {trial.seed}: {in_use} of {k}")
        ax.set_title(f"{label}, seed {trial.seed}: {in_use} of {k} used", fontsize=10)
        ax.set_xlabel("cluster, by its share (largest first)")
        ax.set_ylabel("share of test images")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, out)
    extra = f" (first {MAX_PANELS} of {len(panels)} panels)" if len(panels) > MAX_PANELS else ""
    return (f"Bars: each cluster's share of the test images whose argmax q(y|x) it is, largest "
            f"first; dashed: 1/K, each cluster's share under the uniform prior on y. Clusters "
            f"holding at least one test image: {'; '.join(used)}{extra}.")


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
        data = latents(trial)
        xy, how, project = _projection(data["representation"], "it")
        matrix = from_weights(trial, "cluster_head_matrix", np.zeros(0),
                              lambda t, _: load_state(t)["cluster_heads"][0].float().numpy())
        heads = project(matrix)  # (K, 2)
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
    return (f"Points: the representation W_C y + z of each test image ({how}), "
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


PAPER_LINE_LABEL = "paper (test split)"


def plot_cell_curve(curve, paper_value: float | None, out: Path, title: str) -> str:
    """One table cell's validation curve (bench.curves.CellCurve): one line per seed of its
    metric against epoch; the paper's number as a labelled dashed line where the curve measures
    the cell's metric (`paper_value` not None); the curve's note under the axes."""
    plt = _figure()
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    many = curve.epochs > 20
    for seed in curve.seeds:
        ax.plot(seed.epochs, seed.values, marker=None if many else "o", markersize=3, lw=1.2,
                label=f"seed {seed.seed}")
    line = paper_value is not None and curve.measures_cell
    if line:
        ax.axhline(paper_value, ls="--", color="k", lw=1.0, label=PAPER_LINE_LABEL)
        ax.annotate(f"{PAPER_LINE_LABEL}: {paper_value:g}", (0.01, paper_value),
                    xycoords=("axes fraction", "data"), xytext=(0, 3),
                    textcoords="offset points", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.set_xlabel("epoch")
    ax.set_ylabel(curve.metric.replace("_", " "), fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.text(0.01, 0.005, f"trend: {curve.text()}" + (f"\n{curve.note}" if curve.note else ""),
             fontsize=7, va="bottom", color="0.25", wrap=True)
    fig.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
    _save(fig, out)
    if line:
        paper_part = ("; dashed: the paper's number (on the test split; the curve is on the "
                      "validation split)")
    elif paper_value is None:
        paper_part = "; no paper line (no number of the paper for this cell)"
    else:
        paper_part = "; no paper line (the curve does not measure the paper's metric)"
    return (f"Lines: {curve.metric} per epoch (curve.csv), one per seed{paper_part}. "
            f"Trend at the end: {curve.text()}." + (f" Note: {curve.note}." if curve.note else ""))


def close_all() -> None:
    """Close every open figure (after a plotter failed half-way)."""
    _figure().close("all")


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    return int(pixels.shape[1]), int(pixels.shape[0])
