"""A trial is its config alone (#14 part 3): a figure grid whose configs a table grid ran runs
nothing new and draws from those rows and artifacts; committed rows are migrated to the new ids."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import artifacts, cli, figures, migrate, results, runner
from bench.config import config_from_dict
from bench.grids import grid_configs

REPO = Path(__file__).resolve().parents[1]


def done_rows(config, metric="clustering_error", value=10.0):
    context = results.RunContext("2026-01-01T00:00:00+00:00", {"threads": 1})
    return results.trial_rows(config, context, "done", {metric: (value, 0.0, 100)})


def test_the_trial_id_leaves_out_grid_and_profile():
    table3 = grid_configs("table3", "smoke", 2)
    figure9 = grid_configs("figure9", "smoke", 2)
    assert {c.trial_id for c in figure9} <= {c.trial_id for c in table3}
    dim = {c.trial_id for c in grid_configs("dim_reduction", "quick", 1)}
    fig11 = grid_configs("figure11", "quick", 1)
    assert sum(c.trial_id in dim for c in fig11) == 2  # 1000 labels and 20 clusters in 2-D
    one = table3[0]
    assert dataclasses.replace(one, profile="paper").trial_id == one.trial_id
    assert dataclasses.replace(one, epochs=one.epochs + 1).trial_id != one.trial_id
    # a config still rebuilds from its rows (grid and profile are kept there, as labels)
    assert config_from_dict(one.as_dict() | {"trial_id": one.trial_id}) == one


def test_a_figure_grid_runs_nothing_a_table_grid_ran(tmp_path, capsys):
    table3 = grid_configs("table3", "smoke", 2)
    for config in table3:
        results.append_rows(tmp_path, "table3", done_rows(config))
    figure9 = grid_configs("figure9", "smoke", 2)
    assert runner.pending_configs(figure9, tmp_path) == []
    planned = runner.plan(figure9, tmp_path)
    assert {p.why for p in planned} == {"already run by table3"}
    assert cli.main(["run", "figure9", "--profile", "smoke", "--seeds", "3", "--dry-run", "--no-estimate",
                     "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "[done: already run by table3]" in lines[0] and "[done" not in lines[2]
    assert lines[-1] == "3 trials: 2 done, 1 to run"


def test_a_figure_finds_the_rows_and_artifacts_another_grid_ran(tmp_path):
    config, = grid_configs("table3", "smoke", 1)[:1]
    results.append_rows(tmp_path, "table3", done_rows(config))
    frame = results.read_rows(tmp_path)
    assert list(results.select(frame, "figure9", {"clusters": 16})["trial_id"]) == [config.trial_id]
    assert results.select(frame, "figure9", {"clusters": 30}).empty
    directory = artifacts.artifact_dir(tmp_path, "table3", config.trial_id)
    directory.mkdir(parents=True)
    np.savez(directory / "latents.npz", z=np.zeros((2, 10)), y=np.zeros(2))
    (directory / "model.pt").write_bytes(b"")
    profile, found = artifacts.find_artifacts(tmp_path, frame, "figure9", {"clusters": 16},
                                              ("model.pt", "latents.npz"))
    assert profile == "smoke" and [t.directory for t in found] == [directory]


def test_figure11_has_the_10d_cell_drawn_in_2d():
    cells = grid_configs("figure11", "smoke", 1)
    ten, = [c for c in cells if c.z_dim == 10]
    assert ten.clusters == 20 and ten.labels is None
    spec, = [f for f in figures.FIGURES if f.key == "fig11d"]
    assert spec.grid == "figure11" and dict(spec.filters) == {"z_dim": 10}
    assert spec.kind == "dim_reduction"  # draws a PCA of the representation (plots.project_2d)


def test_migrate_recomputes_ids_keeps_the_old_one_and_renames_artifacts(tmp_path):
    config = grid_configs("table1", "smoke", 1, ("mnist",))[0]
    frame = results.to_frame(done_rows(config, "parzen_ll", -200.0))
    frame["trial_id"] = "0123456789abcdef"  # an id computed the old way
    frame.to_csv(tmp_path / "table1.csv", index=False)
    old_dir = tmp_path / "artifacts" / "table1" / "0123456789abcdef"
    old_dir.mkdir(parents=True)
    (old_dir / "curve.csv").write_text("epoch\n1\n")
    lines = migrate.migrate(tmp_path)
    assert lines[0] == "table1.csv: 1 trial ids recomputed from their configs"
    rows = pd.read_csv(tmp_path / "table1.csv")
    assert list(rows["trial_id"]) == [config.trial_id]
    assert list(rows["legacy_trial_id"]) == ["0123456789abcdef"]
    assert (tmp_path / "artifacts" / "table1" / config.trial_id / "curve.csv").exists()
    assert not old_dir.exists()
    assert migrate.migrate(tmp_path) == []  # idempotent


@pytest.mark.parametrize("grid,dataset", [("table1", ("mnist",)), ("table2", ("mnist",))])
def test_committed_rows_are_found_as_done(grid, dataset):
    frame = results.read_rows(REPO / "results")
    mine = frame[frame["grid"] == grid]
    for row in mine.drop_duplicates("trial_id").to_dict("records"):
        assert results.config_of(row).trial_id == row["trial_id"]  # ids match their configs
        # the quick rows predate ids without grid and profile (migrated); later rows have none
        assert isinstance(row["legacy_trial_id"], str) == (row["profile"] == "quick")
    mine = mine[mine["profile"] == "quick"]
    seeds = int(mine["seed"].max()) + 1
    configs = grid_configs(grid, "quick", seeds, dataset)
    if grid == "table2":
        configs = [c for c in configs if c.dataset == "mnist"]
        # made by training version 1 (#19): found, but stale unless old versions are kept
        assert runner.pending_configs(configs, REPO / "results") == configs
    assert runner.pending_configs(configs, REPO / "results", keep_old_versions=True) == []
