"""PNG figures from the artifacts trials saved; nothing is retrained here.

A figure is DATA (`FIGURES`): which grid's artifacts it reads (and which grids stand in when
that one has none), which files, which cell (`filters`), which plotter (`kind`, a key of
`RENDERERS`). A figure whose artifacts do not exist is reported "not run yet" and never drawn with
a stand-in; one whose checkpoint was saved without its model's arguments is reported pending.
Finding and loading the artifacts is bench.artifacts; the drawing is bench.plots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import paper, plots
from bench.artifacts import (
    FROM_WEIGHTS,
    NoModelArgs,
    StaleFigureInputs,
    TrialArtifact,
    find_artifacts,
)
from bench.grids import GRIDS, VIEW_GRIDS
from bench.results import read_rows

log = logging.getLogger("aae_bench.figures")

WRITTEN, NOT_RUN_YET, NO_RENDERER = "written", "not run yet", "no renderer yet"
PENDING = "pending"


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
    artifact: str | tuple[str | tuple[str, ...], ...]
    """File(s) each trial's artifact directory must hold; an entry that is a tuple is met by
    any one of its names (FROM_WEIGHTS: model.pt, or what was drawn from it)."""
    filters: Mapping[str, object] = field(default_factory=dict)
    """Config fields a trial must have (the grid's cell the figure shows)."""
    fallback: tuple[str, ...] = ()
    """Grids read, in order, when `grid` has no artifacts (their trials have the same cells)."""

    @property
    def files(self) -> tuple[str | tuple[str, ...], ...]:
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
               "figure2", "manifold", (FROM_WEIGHTS,),
               filters={"variant": "unsupervised", "prior": "gaussian"}),
    FigureSpec("fig4", "Hold-out codes of the label-regularized AAE under the mixture and the "
               "swiss-roll priors", "Fig. 4 (codes)", "figure4", "label_codes", "latents.npz"),
    FigureSpec("fig4_mixture_walk", "Walking along each mixture component's axis",
               "Fig. 4 a (walk)", "figure4", "mixture_walk", (FROM_WEIGHTS,),
               filters={"prior": "mixture"}),
    FigureSpec("fig4_swiss_roll_walk", "Walking along the swiss roll", "Fig. 4 b (walk)",
               "figure4", "swiss_roll_walk", (FROM_WEIGHTS,), filters={"prior": "swiss-roll"}),
    FigureSpec("fig5", "Disentangling style and content, MNIST", "Fig. 5", "figure5_6", "style",
               (FROM_WEIGHTS, "latents.npz"), filters={"dataset": "mnist"}),
    FigureSpec("fig6", "Disentangling style and content, SVHN", "Fig. 6", "figure5_6", "style",
               (FROM_WEIGHTS, "latents.npz"), filters={"dataset": "svhn"}),
    FigureSpec("fig9", "Cluster heads of unsupervised clustering with 16 clusters", "Fig. 9",
               "figure9", "cluster_heads", (FROM_WEIGHTS, "latents.npz"),
               filters={"clusters": 16}, fallback=("table3",)),
    FigureSpec("fig11", "2-D representations W_C y + z of test images, with the cluster heads",
               "Fig. 11", "figure11", "dim_reduction", (FROM_WEIGHTS, "latents.npz"),
               filters={"z_dim": 2}, fallback=("dim_reduction",)),
    # PAPER-GAP: how the paper draws the 10-D representation in 2-D is not known to us; its
    # first two principal components (bench.plots.project_2d), the heads projected alike.
    FigureSpec("fig11d", "10-D representations W_C y + z of test images (20 clusters), shown "
               "in 2-D, with the cluster heads", "Fig. 11 d", "figure11", "dim_reduction",
               (FROM_WEIGHTS, "latents.npz"), filters={"z_dim": 10}),
    # Ours, not the paper's: whether the clusters are used at all explains a Table 3 cell.
    FigureSpec("table3_cluster_use", "Test images per cluster (argmax q(y|x)) of the Table 3 "
               "models", "", "table3", "cluster_use", "latents.npz"),
    # every grid, so a new grid has its curves at once; a view's trials are drawn with their owner
    *(_curves_spec(g) for g in GRIDS if g not in VIEW_GRIDS),
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


RENDERERS: dict[str, Callable[[list[TrialArtifact], Path, str], str]] = {
    "latents": plots.plot_latents,
    "curves": plots.plot_curves,
    "prior_comparison": plots.plot_prior_comparison,
    "manifold": plots.plot_manifold,
    "label_codes": plots.plot_label_codes,
    "mixture_walk": plots.plot_mixture_walk,
    "swiss_roll_walk": plots.plot_swiss_roll_walk,
    "style": plots.plot_style,
    "cluster_heads": plots.plot_cluster_heads,
    "dim_reduction": plots.plot_dim_reduction,
    "cluster_use": plots.plot_cluster_use,
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
    returned with status "not run yet" (no artifacts), "no renderer yet", "pending: ..." (a
    checkpoint saved without its model's arguments, or no model.pt and a figure_inputs.npz
    without what the figure now asks of it) or "error: ..."."""
    if frame is None:
        frame = read_rows(results_dir)
    out_dir = Path(out_dir)
    results: list[FigureResult] = []
    for spec in figures:
        try:
            results.append(_write_one(results_dir, out_dir, frame, spec))
        except (NoModelArgs, StaleFigureInputs) as exc:  # an older run's: redraw it from weights
            plots.close_all()
            (out_dir / f"{spec.key}.png").unlink(missing_ok=True)
            results.append(FigureResult(spec, f"{PENDING}: {exc}"))
        except Exception as exc:  # one broken artifact must not take the whole report down
            log.exception("figure %s failed", spec.key)
            plots.close_all()
            (out_dir / f"{spec.key}.png").unlink(missing_ok=True)
            results.append(FigureResult(spec, f"error: {type(exc).__name__}: {exc}"))
    return results


def _write_one(results_dir, out_dir: Path, frame: pd.DataFrame, spec: FigureSpec) -> FigureResult:
    for grid in (spec.grid, *spec.fallback):
        profile, trials = find_artifacts(results_dir, frame, grid, spec.filters, spec.files)
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
                        plots.png_size(path))


# -- one validation-curve figure per table cell (#16 part 1) ---------------------------------


@dataclass(frozen=True)
class CellCurveFigure:
    """A table cell's curve figure: written (`path`), or why not (`status`: the curve's words,
    e.g. bench.curves.NO_VALIDATION, or "error: ...")."""

    table: str
    column: str
    label: str
    status: str
    path: Path | None = None
    caption: str = ""


def cell_curve_name(table: str, column: str) -> str:
    return f"curve_{table}_{column}.png"


def write_cell_curves(view, out_dir: str | os.PathLike) -> list[CellCurveFigure]:
    """For each cell of a table view (bench.tables.TableView, built with its results
    directory) that has rows: its curve figure as out_dir/curve_<table>_<column>.png, or the
    reason it has none (never a stand-in)."""
    spec = view.spec
    out_dir = Path(out_dir)
    written: list[CellCurveFigure] = []
    for column in spec.columns:
        result, curve = view.results.get(column.key), view.curves.get(column.key)
        if result is None or curve is None:
            continue
        path = out_dir / cell_curve_name(spec.key, column.key)
        if not curve.drawn:
            path.unlink(missing_ok=True)
            written.append(CellCurveFigure(spec.key, column.key, column.label, curve.words))
            continue
        number = paper.paper_number(spec.key, spec.method, column.key)
        title = (f"{spec.title.split(':')[0]}, {column.label}: validation curve\n"
                 f"[grid {column.ours.grid}, profile {result.profile}]")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            detail = plots.plot_cell_curve(curve, number.value if number else None, path, title)
        except Exception as exc:  # one broken curve must not take the whole report down
            log.exception("curve figure %s failed", path.name)
            plots.close_all()
            path.unlink(missing_ok=True)
            written.append(CellCurveFigure(spec.key, column.key, column.label,
                                           f"error: {type(exc).__name__}: {exc}"))
            continue
        seeds = ", ".join(str(s.seed) for s in curve.seeds)
        caption = (f"{spec.title.split(':')[0]}, {column.label}: validation curve. Grid "
                   f"{column.ours.grid}, profile {result.profile}, seeds {seeds}. {detail}")
        written.append(CellCurveFigure(spec.key, column.key, column.label, WRITTEN, path,
                                       caption))
    return written
