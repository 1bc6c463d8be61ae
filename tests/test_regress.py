"""The regression gate on fabricated rows (test fixtures in tmp dirs, never results/).

The gate on REAL runs (a planted learning-rate change fails it, unchanged code passes) is an
integration test of the CLI; these check the comparison and the exit codes.
"""

from __future__ import annotations

import json

import pytest
from report_fixtures import table1_rows, write_results

from bench import regress


@pytest.fixture
def baseline(tmp_path):
    results = write_results(tmp_path / "base", table1_rows([-190.0, -188.0, -192.0],
                                                           profile="smoke"))
    return regress.write_baseline(results, tmp_path / "baseline.json")


def _run(tmp_path, lls, name="run", **kw):
    return write_results(tmp_path / name, table1_rows(lls, profile="smoke", **kw))


def test_baseline_contents(baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == regress.FORMAT
    entries = {e["metric"]: e for e in data["entries"]}
    assert "parzen_sigma" not in entries  # skipped by default (a discrete pick)
    ll = entries["parzen_ll"]
    assert ll["expected"] == pytest.approx(-190.0) and ll["std"] == pytest.approx(2.0)
    assert ll["tolerance"] == pytest.approx(6.0)  # max(3 * 2.0, 1.0 floor, 1 % of 190)
    assert ll["profile"] == "smoke" and ll["seeds"] == [0, 1, 2]
    assert ll["filters"] == {"variant": "unsupervised", "dataset": "mnist", "prior": "gaussian"}
    disc = entries["loss_discriminator"]  # no spread: the relative floor applies
    assert disc["std"] == 0 and disc["tolerance"] == pytest.approx(0.013)


def test_pass_on_unchanged_results(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-191.0, -187.0, -192.0]))
    assert code == 0, text
    assert "PASS" in text and "DRIFT" not in text


def test_drift_fails(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-250.0, -251.0, -249.0]))
    assert code == 1
    assert "DRIFT" in text and "FAIL: 2 DRIFT" in text  # parzen_ll and parzen_validation_ll


def test_missing_metric_counts_as_failure(baseline, tmp_path):
    data = json.loads(baseline.read_text())
    data["entries"].append({**data["entries"][0], "metric": "parzen_ll_10m"})
    baseline.write_text(json.dumps(data))
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -188.0, -192.0]))
    assert code == 1 and "MISSING" in text and "counts as a failure" in text


def test_other_profile_is_missing(baseline, tmp_path):
    run = write_results(tmp_path / "run", table1_rows([-190.0, -188.0, -192.0], profile="quick"))
    code, text = regress.check(baseline, run)
    assert code == 1 and "MISSING" in text


def test_new_diverged_trials_fail(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -188.0, -192.0],
                                              diverged_seeds=(3,)))
    assert code == 1 and "FAILED-TRIALS" in text


def test_seed_mismatch_is_noted(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -189.0]))
    assert code == 0 and "seeds differ" in text


@pytest.mark.parametrize("content", [
    None,                                    # no file
    "{not json",                             # corrupt
    json.dumps({"format": "other"}),         # wrong format
    json.dumps({"format": regress.FORMAT, "entries": []}),
    json.dumps({"format": regress.FORMAT, "entries": [{"grid": "table1"}]}),
])
def test_unusable_baseline(tmp_path, content):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    code, text = regress.check(path, _run(tmp_path, [-190.0]))
    assert code == 2 and "unusable baseline" in text


def test_no_results(baseline, tmp_path):
    assert regress.check(baseline, tmp_path / "nowhere")[0] == 2
    (tmp_path / "empty").mkdir()
    code, text = regress.check(baseline, tmp_path / "empty")
    assert code == 2 and "no result rows" in text


def test_cells_become_filters(tmp_path):
    rows = table1_rows([1.0, 2.0], profile="smoke", z_dim=8) + \
        table1_rows([5.0, 6.0], profile="smoke", z_dim=4)
    path = regress.write_baseline(write_results(tmp_path / "r", rows), tmp_path / "b.json",
                                  metrics=["parzen_ll"])
    entries = json.loads(path.read_text())["entries"]
    assert sorted((e["filters"]["z_dim"], e["expected"]) for e in entries) == [(4, 5.5), (8, 1.5)]


def test_several_profiles_need_a_choice(tmp_path):
    # Two profiles name two trials only where their configs differ (the profile is no part of
    # a trial's id): here the quick run's epochs.
    rows = table1_rows([1.0], profile="smoke") + table1_rows([2.0], profile="quick", epochs=10)
    results = write_results(tmp_path / "r", rows)
    with pytest.raises(ValueError, match="pass profile="):
        regress.write_baseline(results, tmp_path / "b.json")
    path = regress.write_baseline(results, tmp_path / "b.json", profile="quick")
    assert {e["profile"] for e in json.loads(path.read_text())["entries"]} == {"quick"}
