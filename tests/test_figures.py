"""Figures drawn from (fabricated) saved artifacts; missing ones listed, never faked."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
from report_fixtures import table1_rows, write_artifacts, write_results

from bench import figures
from bench.results import read_rows


def _not_blank(path) -> None:
    pixels = mpimg.imread(path)[..., :3]
    assert pixels.var() > 1e-3
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01  # some ink, not a white page


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
    for key in ("fig2", "fig4", "fig5_6", "fig9", "fig11"):
        assert written[key].status == figures.NOT_RUN_YET and written[key].path is None
    assert not (tmp_path / "figs" / "fig2.png").exists()


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
    xy, how = figures.project_2d(z)
    assert xy.shape == (500, 2) and "PCA" in how
    assert xy[:, 0].var() > xy[:, 1].var() > 1.0  # the two widest directions, widest first
    same, how2 = figures.project_2d(z[:, :2])
    assert np.allclose(same, z[:, :2]) and "two dims" in how2
