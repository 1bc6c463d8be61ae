"""Rows of one training and one evaluator version per cell (#19): every row records both; a cell
pools the newest; `run` re-runs a trial done by older training code, keeping its old rows; the
gate never compares across versions; the committed rows carry the versions they were made with."""

from __future__ import annotations

import json
from pathlib import Path

from report_fixtures import fake_trial_rows, table1_rows, write_results

from bench import cli, regress, results, runner, tables, versions
from bench.grids import grid_configs

REPO = Path(__file__).resolve().parents[1]


def at_version(rows, training, evaluator=1):
    return [{**r, "training_version": training, "evaluator_version": evaluator} for r in rows]


def table2_cell(tmp_path, versions_by_seed):
    configs = [c for c in grid_configs("table2", "quick", len(versions_by_seed))
               if c.labels == 100]
    for config, version in zip(configs, versions_by_seed, strict=True):
        rows = fake_trial_rows(config, {"classification_error": 5.0 + config.seed})
        results.append_rows(tmp_path, "table2", at_version(rows, version))
    return configs


def test_every_row_records_both_versions():
    config = grid_configs("table1", "smoke", 1, ("mnist",))[0]
    context = results.RunContext("2026-01-01T00:00:00+00:00")
    for status in ("done", "diverged", "error"):
        row, = results.trial_rows(config, context, status, {"parzen_ll": (1.0, 0.0, 1)})
        assert row["training_version"] == versions.TRAINING_VERSION
        assert row["evaluator_version"] == versions.METRICS_VERSION


def test_rows_of_another_version_are_kept_not_replaced(tmp_path):
    (config,) = table2_cell(tmp_path, [1])
    rows = fake_trial_rows(config, {"classification_error": 9.0})
    results.append_rows(tmp_path, "table2", at_version(rows, 2, "1"))  # "1" is the CSV's 1
    results.append_rows(tmp_path, "table2", at_version(rows, 2, "1"))
    frame = results.read_rows(tmp_path)
    assert sorted(results.versions_of(frame, "training_version")) == [1, 2]
    assert sorted(frame["value"]) == [5.0, 9.0]


def test_a_trial_of_older_training_code_is_stale_and_runs_again(tmp_path, capsys):
    configs = table2_cell(tmp_path, [1, 2])
    planned = runner.plan(configs, tmp_path)
    assert [p.state for p in planned] == [runner.STALE, runner.DONE]
    assert "training version 1, the code is 2" in planned[0].why
    assert runner.pending_configs(configs, tmp_path) == configs[:1]
    assert runner.pending_configs(configs, tmp_path, keep_old_versions=True) == []
    assert cli.main(["run", "table2", "--profile", "quick", "--seeds", "2", "--dataset", "mnist",
                     "--dry-run", "--no-estimate", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    stale = [line for line in out if configs[0].trial_id in line]
    assert stale and "[stale: its done rows are training version 1" in stale[0]
    assert out[-1].startswith("6 trials:") and "1 stale" in out[-1]
    assert cli.main(["run", "table2", "--profile", "quick", "--seeds", "2", "--dataset", "mnist",
                     "--dry-run", "--no-estimate", "--keep-old-versions", "--results", str(tmp_path)]) == 0
    assert "kept (--keep-old-versions)" in capsys.readouterr().out


def test_a_cell_pools_the_newest_version_and_says_what_it_left_out(tmp_path):
    table2_cell(tmp_path, [1, 2, 2])  # seed 0 by older code
    frame = results.read_rows(tmp_path)
    spec = tables.TABLES["table2"]
    column = next(c for c in spec.columns if c.key == "mnist_100")
    result = tables.summarize(frame, column.ours)
    assert result.seeds == [1, 2] and result.n == 2  # the verdict counts pooled seeds only
    assert result.left_out == {"training version 1, evaluator version 1": 1}
    assert result.rerun == "aae-bench run table2 --profile quick --seeds 3 --dataset mnist"
    lines = tables.our_cell(spec, column, result).lines
    assert any("1 rows of older code left out (training version 1, evaluator version 1): "
               "re-run them with `aae-bench run table2" in line for line in lines)
    card = dict(tables.protocol_card(tables.build_view(spec, frame), []))
    assert "training version 2, evaluator version 1" in card[column.label]


def test_the_gate_refuses_to_compare_across_versions(tmp_path):
    base = write_results(tmp_path / "base", at_version(table1_rows([-190.0, -188.0], profile="smoke"), 2))
    baseline = regress.write_baseline(base, tmp_path / "b.json")
    data = json.loads(baseline.read_text())
    assert (data["training_version"], data["evaluator_version"]) == (2, 1)
    old = write_results(tmp_path / "old", at_version(table1_rows([-190.0, -188.0], profile="smoke"), 1))
    code, text = regress.check(baseline, old)
    assert code == regress.EXIT_UNUSABLE and len(text.strip().splitlines()) == 1
    assert "does not compare across versions" in text and "training 1 / evaluator 1" in text
    assert regress.check(baseline, base)[0] == regress.PASS
    del data["training_version"]
    (tmp_path / "legacy.json").write_text(json.dumps(data))
    code, text = regress.check(tmp_path / "legacy.json", base)
    assert code == regress.EXIT_UNUSABLE and "records no training_version" in text


def test_the_committed_baselines_carry_the_current_version():
    gate = json.loads((REPO / "tests" / "baselines" / "table1-smoke.json").read_text())
    assert gate["training_version"] == versions.TRAINING_VERSION
    assert str(gate["evaluator_version"]) == str(versions.METRICS_VERSION)


def test_the_committed_rows_carry_the_versions_they_were_made_with():
    # results/*.csv: the study's rows (results/precision-check/ holds a separate comparison,
    # made at training version 2)
    frame = results.read_rows(REPO / "results")
    made_by = frame.groupby(["grid", "profile", "commit"])["training_version"].agg(lambda v: sorted(set(v)))
    old = {("table2", "quick"): [1]}  # commit 03f085b: before a99f140, the seed-batched code
    for (grid, profile, commit), found in made_by.items():
        assert found == old.get((grid, profile), [2]), (grid, profile, commit)
    assert set(frame["evaluator_version"]) == {1}
