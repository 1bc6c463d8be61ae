import math

import pandas as pd

from bench import results


def row(trial, metric, value, status="done", **extra):
    return {"trial_id": trial, "grid": "g", "metric": metric, "value": value, "status": status,
            "lr_decay_epochs": (50, 1000), **extra}


def test_append_merges_and_keeps_newest(tmp_path):
    results.append_rows(tmp_path, "g", [row("a", "m", 1.0), row("b", "m", 2.0, status="diverged")])
    results.append_rows(tmp_path, "g", [row("b", "m", 3.0), row("c", "m", math.nan, new_col=1)])
    frame = results.read_rows(tmp_path, "g")
    assert sorted(frame["trial_id"]) == ["a", "b", "c"]
    assert frame.set_index("trial_id").loc["b", "value"] == 3.0
    assert "new_col" in frame.columns
    assert frame.set_index("trial_id").loc["a", "lr_decay_epochs"] == "[50, 1000]"
    # key columns first, in each trial's own file
    assert list(pd.read_csv(results.trial_file(tmp_path, "g", row("a", "m", 1.0))).columns[:2]) == [
        "trial_id", "grid"]


def test_done_trial_ids_exclude_failures(tmp_path):
    results.append_rows(tmp_path, "g", [row("a", "m1", 1.0), row("a", "m2", 1.0),
                                        row("b", "m1", math.nan, status="diverged"),
                                        row("c", "m1", math.nan, status="error")])
    assert results.done_trial_ids(tmp_path, "g") == {"a"}
    results.append_rows(tmp_path, "g", [row("b", "m1", 5.0)])
    assert results.done_trial_ids(tmp_path, "g") == {"a", "b"}


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    results.append_rows(tmp_path, "g", [row("a", "m", 1.0)])
    path = results.trial_file(tmp_path, "g", row("a", "m", 1.0))
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    try:
        results.append_rows(tmp_path, "g", [row("a", "m", 2.0)])  # a re-run of trial a
    except OSError:
        pass
    assert path.read_text() == before
    assert not list(path.parent.glob(".*.tmp"))


def test_read_rows_of_empty_dir(tmp_path):
    assert results.read_rows(tmp_path).empty
    assert results.done_trial_ids(tmp_path, "g") == set()
