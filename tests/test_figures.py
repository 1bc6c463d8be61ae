"""Figures: from fabricated artifacts (layout, captions) and from tiny real trials (every paper
figure, decoded through the saved weights); missing artifacts are listed, never faked."""

from __future__ import annotations

import dataclasses
import re
import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from report_fixtures import table1_rows, write_artifacts, write_results

from aae_core import datasets, priors
from bench import artifacts, figures, plots
from bench.grids import grid_configs
from bench.report import write_report
from bench.results import append_rows, read_rows
from bench.trial import run_trial

PAPER_KEYS = ("fig2", "fig2_manifold", "fig4", "fig4_mixture_walk", "fig4_swiss_roll_walk",
              "fig5", "fig6", "fig9", "fig11")
DECODING_KEYS = ("fig2_manifold", "fig4_mixture_walk", "fig4_swiss_roll_walk", "fig5", "fig9")


def _pixels(path) -> np.ndarray:
    return mpimg.imread(path)[..., :3]


def _not_blank(path) -> None:
    pixels = _pixels(path)
    assert pixels.var() > 1e-3
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01  # some ink, not a white page


# -- fabricated artifacts ------------------------------------------------------------------


@pytest.fixture
def results(tmp_path):
    rows = table1_rows([340.0, 341.0, 342.0], diverged_seeds=(3,)) + \
        table1_rows([200.0], profile="smoke", epochs=1)
    directory = write_results(tmp_path / "results", rows)
    write_artifacts(directory, rows, n=200)
    return directory


def test_table1_figures_from_artifacts(results, tmp_path):
    out = tmp_path / "figs"
    written = {f.spec.key: f for f in figures.write_figures(results, out)}
    latents, curves = written["table1_latents"], written["table1_curves"]
    for fig in (latents, curves):
        assert fig.status == figures.WRITTEN and fig.path.exists()
        _not_blank(fig.path)
        # the most faithful profile with artifacts; the diverged trial saved none
        assert "Grid table1, profile paper, seeds 0, 1, 2." in fig.caption
    assert "2-D PCA projection of z (z_dim=8)" in latents.caption


def test_paper_figures_without_artifacts_are_not_run_yet(results, tmp_path):
    written = {f.spec.key: f for f in figures.write_figures(results, tmp_path / "figs")}
    for key in (*PAPER_KEYS, "table2_curves", "figure9_curves"):
        assert written[key].status == figures.NOT_RUN_YET and written[key].path is None
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == \
        ["table1_curves.png", "table1_latents.png"]


def test_two_dim_codes_are_plotted_as_they_are(tmp_path):
    rows = table1_rows([1.0], z_dim=2)
    directory = write_results(tmp_path / "results", rows)
    write_artifacts(directory, rows, z_dim=2, n=50)
    fig = {f.spec.key: f for f in figures.write_figures(directory, tmp_path / "f")}
    assert "the two dims of z" in fig["table1_latents"].caption


def test_a_spec_is_data(results, tmp_path):
    # A new figure plugs in as a spec: its grid's artifacts exist, its renderer does not.
    spec = figures.FigureSpec("new", "New", "Fig. 99", "table1", "no_such_kind", "latents.npz")
    (only,) = figures.write_figures(results, tmp_path / "f", read_rows(results), (spec,))
    assert only.status == figures.NO_RENDERER


def test_pca_projection():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 5)) * np.array([10.0, 0.1, 3.0, 0.1, 0.1])
    xy, how = plots.project_2d(z)
    assert xy.shape == (500, 2) and "PCA" in how
    assert xy[:, 0].var() > xy[:, 1].var() > 1.0  # the two widest directions, widest first
    same, how2 = plots.project_2d(z[:, :2])
    assert np.allclose(same, z[:, :2]) and "two dims" in how2


def test_walks_follow_the_priors():
    # The swiss-roll walk lies on the prior: every prior draw is the curve at its own u.
    draws = priors.SwissRoll(10).sample(500, torch.Generator().manual_seed(0)).double().numpy()
    u = (np.linalg.norm(draws, axis=1) / 3) ** 2  # r = 3 sqrt(u)
    assert np.allclose(plots.swiss_roll_curve(u), draws, atol=1e-5)
    # The mixture walk runs through each component's centre, in the prior's component order.
    config = grid_configs("figure4", "smoke", 1)[0]
    axis = plots.mixture_axis(config, steps=7)  # (K, 7, 2); the middle step is at the radius
    mixture = priors.GaussianMixture(10, config.mixture_radius, config.mixture_std_radial,
                                     config.mixture_std_tangential)
    assert np.allclose(axis[:, 3], mixture.centres().numpy(), atol=1e-6)


# -- tiny real trials (MNIST, smoke profile, narrow networks) ----------------------------------

TINY = dict(hidden_units=64)  # a real trial, narrow enough for a test


def _run(results_dir, data, configs) -> None:
    for config in configs:
        config = dataclasses.replace(config, **TINY)
        rows = run_trial(config, data=data, threads=1, command="test_figures",
                         artifacts_dir=results_dir / "artifacts" / config.grid)
        append_rows(results_dir, config.grid, rows)


@pytest.fixture(scope="module")
def real(tmp_path_factory, mnist_dir):
    """figure2, figure4, figure5_6 (MNIST, seeds 0 and 1), figure9 and figure11 trials; and a
    second results directory with a table3 trial only (Fig. 9 falls back to it)."""
    root = tmp_path_factory.mktemp("real")
    data = datasets.load("mnist", mnist_dir)
    main, fallback = root / "results", root / "fallback"
    configs = [*grid_configs("figure2", "smoke", 1), *grid_configs("figure4", "smoke", 1),
               *grid_configs("figure5_6", "smoke", 2, ("mnist",)),
               *grid_configs("figure9", "smoke", 1), *grid_configs("figure11", "smoke", 1)]
    _run(main, data, configs)
    _run(fallback, data, [c for c in grid_configs("table3", "smoke", 1) if c.clusters == 16])
    # The report draws every figure once; its FigureResults are kept for the tests.
    drawn: list[figures.FigureResult] = []
    draw = figures.write_figures

    def keep(*args, **kwargs):
        drawn.extend(draw(*args, **kwargs))
        return drawn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "write_figures", keep)
        write_report(main, root / "reports")
    written = {f.spec.key: f for f in drawn}
    return {"results": main, "fallback": fallback, "written": written, "reports": root / "reports"}


def test_every_paper_figure_from_real_artifacts(real):
    written = real["written"]
    for key in (k for k in PAPER_KEYS if k != "fig6"):  # SVHN is not run here
        fig = written[key]
        assert fig.status == figures.WRITTEN, (key, fig.status)
        _not_blank(fig.path)
        assert _pixels(fig.path).shape[1::-1] == fig.size
    assert written["fig6"].status == figures.NOT_RUN_YET and written["fig6"].path is None
    # the representation's words name it, and keep z_dim's name (a replace of every "z" made
    # "it_dim" of it)
    assert "(a 2-D PCA projection of it (z_dim=10))" in written["fig11d"].caption
    assert "(the two dims of it)" in written["fig11"].caption
    for grid in ("figure2", "figure4", "figure5_6", "figure9", "figure11"):
        assert written[f"{grid}_curves"].status == figures.WRITTEN
    assert written["table1_curves"].status == figures.NOT_RUN_YET


def test_every_renderer_is_exercised(real, tmp_path):
    kinds = {f.spec.kind for f in real["written"].values() if f.status == figures.WRITTEN}
    # table1's scatter renderer, pointed at another grid's real codes
    spec = figures.FigureSpec("codes", "Codes", "", "figure11", "latents", "latents.npz")
    (extra,) = figures.write_figures(real["results"], tmp_path, figures=(spec,))
    assert extra.status == figures.WRITTEN
    _not_blank(extra.path)
    # Table 3's cluster use, pointed at figure9's real 16-cluster codes (no table3 trial here)
    spec = figures.FigureSpec("use", "Use", "", "figure9", "cluster_use", "latents.npz")
    (use,) = figures.write_figures(real["results"], tmp_path, figures=(spec,))
    assert use.status == figures.WRITTEN, use.status
    _not_blank(use.path)
    counts = plots.cluster_use(np.load(use_codes(real))["y_probs"])
    assert f"seed 0: {(counts > 0).sum()} of 16." in use.caption
    assert kinds | {"latents", "cluster_use"} == set(figures.RENDERERS)


def use_codes(real):
    (path,) = (real["results"] / "artifacts" / "figure9").glob("*/latents.npz")
    return path


def test_cluster_use_counts_argmax_assignments_largest_first():
    probs = np.eye(4)[[2, 2, 2, 0, 2, 0]] * 0.7 + 0.075  # rows sum to 1, argmax as given
    assert plots.cluster_use(probs).tolist() == [4, 2, 0, 0]
    # a flat row's argmax is its first cluster (numpy's tie rule), not spread
    assert plots.cluster_use(np.full((3, 5), 0.2)).tolist() == [3, 0, 0, 0, 0]


# (width, height) in pixels, from each layout: image mosaics are drawn at an exact scale (28-px
# MNIST digits, 2-px white padding) inside fixed margins (inches x 90 dpi).
EXPECTED_SIZE = {
    "fig2": (900, 855),  # 10 x 9.5 in
    "fig2_manifold": (560 + 117, 560 + 135),  # 20 x 20 digits, no padding, scale 1
    "fig4": (990, 486),  # 11 x 5.4 in
    "fig4_mixture_walk": (2 * 302 + 135, 2 * 302 + 153),  # 10 x 10 digits, scale 2
    "fig4_swiss_roll_walk": (2 * 302 + 135, 2 * 122 + 153),  # 4 rows of 10, scale 2
    "fig5": (2 * (32 + 4 + 302) + 153, 2 * 302 + 153),  # test image | 10 labels, 10 rows
    "fig9": (2 * (32 + 4 + 302) + 153, 2 * 482 + 126),  # head | 10 members, 16 clusters
    "fig11": (1062, 504),  # two cells: (5.4 x 2 + 1) x 5.6 in
}


@pytest.mark.parametrize("key", sorted(EXPECTED_SIZE))
def test_expected_size(real, key):
    assert real["written"][key].size == EXPECTED_SIZE[key]


def test_captions_name_grid_profile_and_seeds(real):
    written = real["written"]
    for key, fig in written.items():
        if fig.status != figures.WRITTEN:
            continue
        seeds = "0, 1" if fig.grid == "figure5_6" else "0"
        assert f"Grid {fig.spec.grid}, profile smoke, seeds {seeds}." in fig.caption, key
    assert "the test image, then" in written["fig5"].caption  # MNIST found via data_source
    assert "first test images (in test order)" in written["fig9"].caption
    assert "Drawn: seed 0." in written["fig2"].caption


def test_decoding_figures_go_through_the_saved_weights(real, monkeypatch, tmp_path):
    load = plots.load_model

    def zero_decoder(trial):
        net = load(trial)
        with torch.no_grad():
            for p in net.decoder.parameters():
                p.zero_()
        return net

    monkeypatch.setattr(plots, "load_model", zero_decoder)
    specs = tuple(s for s in figures.FIGURES if s.key in DECODING_KEYS)
    results = tmp_path / "results"  # a copy: what the zero decoder drew is kept beside its weights
    shutil.copytree(real["results"], results)
    zeroed = {f.spec.key: f for f in figures.write_figures(results, tmp_path / "f", figures=specs)}
    for key in DECODING_KEYS:
        before, after = _pixels(real["written"][key].path), _pixels(zeroed[key].path)
        assert before.shape == after.shape
        # A zero decoder gives sigmoid(0) = 0.5 everywhere; a one-epoch decoder's images differ
        # from that by a few grey levels at least (a PNG level is 1/255).
        assert np.abs(before - after).max() > 0.01, key
        assert np.isclose(after, 0.5, atol=1 / 255).all(-1).sum() > 50 * 50, key


def test_load_model_restores_every_weight(real):
    written = real["written"]
    for key in ("fig2_manifold", "fig5", "fig9"):
        spec = written[key].spec
        profile, trials = artifacts.find_artifacts(real["results"], read_rows(real["results"]),
                                                   spec.grid, spec.filters, spec.files)
        trial = trials[0]
        saved = torch.load(trial.directory / "model.pt", weights_only=True)
        first = saved["decoder.net.0.weight"]
        assert first.dim() == 3 and first.shape[0] == 1  # a one-seed model: (1, out, in)
        state = artifacts.load_model(trial).state_dict()
        assert state.keys() == saved.keys()
        assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_a_checkpoint_without_its_model_args_is_pending(real, tmp_path):
    # An older run saved model.pt alone: the figures that build its network say so, and nothing
    # is inferred from the weights' shapes; fig11 reads the heads from the weights, no network.
    results = tmp_path / "results"
    shutil.copytree(real["results"], results)
    for name in ("figure5_6", "figure11"):
        for path in (results / "artifacts" / name).glob(f"*/{artifacts.MODEL_ARGS}"):
            path.unlink()
    specs = tuple(s for s in figures.FIGURES if s.key in ("fig5", "fig11"))
    fig5, fig11 = figures.write_figures(results, tmp_path / "f", figures=specs)
    assert fig5.status.startswith("pending: trial ") and "without model_args.json" in fig5.status
    assert fig5.path is None and not (tmp_path / "f" / "fig5.png").exists()
    assert fig11.status == figures.WRITTEN


def test_cluster_heads_are_read_from_the_checkpoint(real, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(real["results"], results)
    spec = next(s for s in figures.FIGURES if s.key == "fig11")
    for path in (results / "artifacts" / "figure11").glob("*/model.pt"):
        state = torch.load(path, weights_only=True)
        state["cluster_heads"] = state["cluster_heads"] * 3 + 5
        torch.save(state, path)
    (moved,) = figures.write_figures(results, tmp_path / "f", figures=(spec,))
    assert np.abs(_pixels(moved.path) - _pixels(real["written"]["fig11"].path)).max() > 0.2


def test_missing_files_mean_not_run_yet(real, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(real["results"], results)
    for name in ("model.pt", artifacts.FIGURE_INPUTS):
        for path in (results / "artifacts" / "figure9").glob(f"*/{name}"):
            path.unlink()
    specs = tuple(s for s in figures.FIGURES if s.key in ("fig9", "figure9_curves"))
    written = {f.spec.key: f for f in figures.write_figures(results, tmp_path / "f", figures=specs)}
    assert written["fig9"].status == figures.NOT_RUN_YET  # latents alone cannot draw the heads
    assert written["figure9_curves"].status == figures.WRITTEN
    assert not (tmp_path / "f" / "fig9.png").exists()


def _without_weights(real, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(real["results"], results)
    weights = list((results / "artifacts").glob("*/*/model.pt"))
    assert weights
    for path in weights:
        path.unlink()
    return results


def test_weight_figures_keep_what_they_drew_beside_the_weights(real):
    kept = {}
    for path in (real["results"] / "artifacts").glob(f"*/*/{artifacts.FIGURE_INPUTS}"):
        with np.load(path) as data:
            kept.update({name: data[name] for name in data.files})
    for name in ("manifold", "mixture_walk", "swiss_roll_walk", "style", "cluster_heads",
                 "cluster_members", "cluster_head_matrix"):
        assert name in kept and f"{name}__inputs" in kept, name
    assert kept["manifold"].shape == (plots.MANIFOLD_STEPS ** 2, 1, 28, 28)
    assert kept["manifold__inputs"].shape == (plots.MANIFOLD_STEPS ** 2, 2)


def test_weight_figures_redraw_the_same_without_the_weights(real, tmp_path):
    # model.pt is not committed: a clean clone draws the images that were drawn from it.
    results = _without_weights(real, tmp_path)
    keys = (*DECODING_KEYS, "fig11", "fig11d")
    specs = tuple(s for s in figures.FIGURES if s.key in keys)
    redrawn = {f.spec.key: f for f in figures.write_figures(results, tmp_path / "f", figures=specs)}
    for key in keys:
        if real["written"][key].status != figures.WRITTEN:
            continue
        assert redrawn[key].status == figures.WRITTEN, (key, redrawn[key].status)
        assert np.array_equal(_pixels(redrawn[key].path), _pixels(real["written"][key].path)), key
        # the seeds named are those whose drawings were kept (a figure draws its first seed)
        def unseeded(caption):
            return re.sub(r"seeds [0-9, ]+\.", "seeds ...", caption)

        assert unseeded(redrawn[key].caption) == unseeded(real["written"][key].caption), key


def test_without_the_weights_other_inputs_are_pending_not_guessed(real, tmp_path, monkeypatch):
    results = _without_weights(real, tmp_path)
    monkeypatch.setattr(plots, "MANIFOLD_STEPS", plots.MANIFOLD_STEPS // 2)
    spec = next(s for s in figures.FIGURES if s.key == "fig2_manifold")
    (fig,) = figures.write_figures(results, tmp_path / "f", figures=(spec,))
    assert fig.status.startswith("pending: trial ") and "other inputs of 'manifold'" in fig.status
    assert fig.path is None and not (tmp_path / "f" / "fig2_manifold.png").exists()


def test_cluster_heads_fall_back_to_table3(real, tmp_path):
    written = {f.spec.key: f for f in figures.write_figures(real["fallback"], tmp_path)}
    fig9 = written["fig9"]
    assert fig9.status == figures.WRITTEN and fig9.grid == "table3"
    assert "Grid table3, profile smoke, seeds 0." in fig9.caption
    _not_blank(fig9.path)


def test_report_shows_every_written_figure(real):
    out = real["reports"]
    page = (out / "index.html").read_text()
    for key in (*PAPER_KEYS, "figure2_curves"):
        if key == "fig6":
            assert "Fig. 6: Disentangling style and content, SVHN (grid figure5_6, cell " \
                   "dataset=svhn): not run yet" in page
        else:
            assert f'src="figures/{key}.png"' in page and (out / "figures" / f"{key}.png").is_file()
    assert "<h3>Not run yet</h3>" in page and "<h3>The paper&#x27;s figures</h3>" in page
    report_md = (out / "report.md").read_text()
    assert "![Learned manifold of the 2-D Gaussian AAE](figures/fig2_manifold.png)" in report_md


def test_every_grid_has_its_training_curves_and_views_none_of_their_own():
    from bench.grids import GRIDS, VIEW_GRIDS

    drawn = {s.grid for s in figures.FIGURES if s.kind == "curves"}
    assert "precision_check" in VIEW_GRIDS and "precision_check" not in drawn
    assert drawn == set(GRIDS) - set(VIEW_GRIDS)


def test_a_broken_checkpoint_is_reported_not_fatal(real, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(real["results"], results)
    for path in (results / "artifacts" / "figure9").glob("*/model.pt"):
        path.write_bytes(b"not a checkpoint")
    specs = tuple(s for s in figures.FIGURES if s.key in ("fig9", "fig11"))
    fig9, fig11 = figures.write_figures(results, tmp_path / "f", figures=specs)
    assert fig9.status.startswith("error: ") and fig9.path is None
    assert not (tmp_path / "f" / "fig9.png").exists()
    assert fig11.status == figures.WRITTEN


def test_table_cells_get_validation_curves_from_real_trials(real, tmp_path):
    # The fallback results hold a real Table 3 trial (16 clusters): its curve.csv has the
    # clustering error on the validation split, drawn for the cell (one epoch: no trend yet).
    from bench import curves, tables

    view = tables.build_view(tables.TABLES["table3"], read_rows(real["fallback"]), real["fallback"])
    curve = view.curves["clusters_16"]
    assert curve.metric == "validation_clustering_error" and curve.measures_cell
    assert curve.words == curves.TOO_SHORT and len(curve.seeds[0].values) == 1
    assert f"trend {curves.TOO_SHORT}" in dict(view.rows)["AAE (ours)"][0].lines
    drawn, = figures.write_cell_curves(view, tmp_path)
    assert drawn.status == figures.WRITTEN and drawn.path.name == "curve_table3_clusters_16.png"
    _not_blank(drawn.path)
