"""The files of result rows (bench.store through bench.results): one file per trial and code
version, atomic and durable writes, merging by copying files, strict reads, the migration."""

from __future__ import annotations

import os
import shutil
import stat
from glob import glob
from pathlib import Path

import pandas as pd
import pytest

from bench import migrate, results, store

REPO = Path(__file__).resolve().parents[1]


def row(trial, metric="m", value=1.0, status="done", at="2025-01-01T00:00:00+00:00", **extra):
    return {"trial_id": trial, "grid": "g", "metric": metric, "value": value, "status": status,
            "training_version": 2, "evaluator_version": "1", "finished_at": at,
            "lr_decay_epochs": (50, 1000), **extra}


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["trial_id", "metric"]).reset_index(drop=True)


def test_a_finished_trial_writes_only_its_own_file_and_reads_nothing(tmp_path, monkeypatch):
    results.append_rows(tmp_path, "g", [row("a", "m1"), row("a", "m2")])
    before = files_of(tmp_path)
    written = []
    real_write = store.write_text
    monkeypatch.setattr(store, "write_text", lambda p, t: written.append(p) or real_write(p, t))
    monkeypatch.setattr(store, "read_table", lambda p: pytest.fail(f"append read {p}"))
    path = results.append_rows(tmp_path, "g", [row("b", "m1"), row("b", "m2")])
    assert written == [path] and path.parent == tmp_path / "g"
    assert path.name == f"b-t2-e1-{store.this_host()}.csv"
    after = files_of(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # a's file untouched
    assert len(after) == 2


def test_a_rerun_replaces_its_own_file_and_other_versions_stay(tmp_path):
    results.append_rows(tmp_path, "g", [row("a", "m1", float("nan"), status="error")])
    results.append_rows(tmp_path, "g", [row("a", "m1", 5.0, at="2025-01-02T00:00:00+00:00"),
                                        row("a", "m2", 6.0, at="2025-01-02T00:00:00+00:00")])
    assert len(list((tmp_path / "g").iterdir())) == 1
    frame = results.read_rows(tmp_path)
    assert list(frame["status"]) == ["done", "done"] and results.done_trial_ids(tmp_path) == {"a"}
    # Newer training code: its own file beside the old one; both kept (the key holds versions).
    results.append_rows(tmp_path, "g", [row("a", "m1", 7.0, training_version=3)])
    assert len(list((tmp_path / "g").iterdir())) == 2
    assert sorted(results.read_rows(tmp_path, "g")["value"]) == [5.0, 6.0, 7.0]


def test_a_pack_writes_one_file_per_trial_and_says_where(tmp_path):
    where = results.append_rows(tmp_path, "g", [row("a"), row("b"), row("c")])
    assert where == tmp_path / "g"
    assert sorted(p.name.split("-")[0] for p in where.iterdir()) == ["a", "b", "c"]


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    results.append_rows(tmp_path, "g", [row("a")])
    assert calls[-3:] == ["fsync-file", "replace", "fsync-dir"]


def test_two_machines_results_merge_by_copying_files(tmp_path, monkeypatch):
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    monkeypatch.setenv("AAE_BENCH_HOST", "alpha")  # two VMs may share a host name
    results.append_rows(alpha, "g", [row("x", value=1.0, at="2025-01-01T00:00:00+00:00")])
    results.append_rows(alpha, "g", [row("only_a", value=2.0)])
    monkeypatch.setenv("AAE_BENCH_HOST", "beta")
    results.append_rows(beta, "g", [row("x", value=3.0, at="2025-02-01T00:00:00+00:00")])
    results.append_rows(beta, "g", [row("only_b", value=4.0)])
    # No file is written by both machines: copying never overwrites (and git never conflicts).
    assert not set(files_of(alpha)) & set(files_of(beta))
    one, other = tmp_path / "one", tmp_path / "other"
    for target, order in ((one, (alpha, beta)), (other, (beta, alpha))):
        for source in order:
            shutil.copytree(source, target, dirs_exist_ok=True)
    merged = results.read_rows(one)
    assert sorted_rows(merged).equals(sorted_rows(results.read_rows(other)))  # order-free
    assert dict(zip(merged["trial_id"], merged["value"], strict=True)) == {
        "x": 3.0, "only_a": 2.0, "only_b": 4.0}  # x: the newest (beta's) row


def test_old_grid_files_are_read_beside_per_trial_files_newest_wins(tmp_path):
    # An old results dir, or a campaign of older code still appending to <grid>.csv.
    old = results.to_frame([row("a", value=float("nan"), status="error"), row("b", value=2.0),
                            row("c", value=3.0, at="2025-03-01T00:00:00+00:00")])
    old.to_csv(tmp_path / "g.csv", index=False)
    results.append_rows(tmp_path, "g", [row("a", value=1.0, at="2025-02-01T00:00:00+00:00"),
                                        row("c", value=9.0, at="2025-02-01T00:00:00+00:00")])
    for frame in (results.read_rows(tmp_path), results.read_rows(tmp_path, "g")):
        values = dict(zip(frame["trial_id"], frame["value"], strict=True))
        assert values == {"a": 1.0, "b": 2.0, "c": 3.0}  # c: the grid file's row is newer
    assert results.done_trial_ids(tmp_path, "g") == {"a", "b", "c"}
    assert results.read_rows(tmp_path, "other").empty


def test_pandas_alone_reads_the_store(tmp_path):
    results.append_rows(tmp_path, "table1", [row("a", "m1"), row("a", "m2", stderr=0.5)])
    results.append_rows(tmp_path, "table1", [row("b", "m1")])
    plain = pd.concat(map(pd.read_csv, glob(str(tmp_path / "table1" / "*.csv"))))
    ours = results.read_rows(tmp_path, "table1")
    assert sorted(zip(plain["trial_id"], plain["metric"], strict=True)) == sorted(
        zip(ours["trial_id"], ours["metric"], strict=True))


def test_an_all_digit_trial_id_stays_text(tmp_path):
    results.append_rows(tmp_path, "g", [row("0123456789012345")])
    assert list(results.read_rows(tmp_path)["trial_id"]) == ["0123456789012345"]


def test_the_columns_of_a_trial_without_a_value_keep_their_type(tmp_path):
    results.append_rows(tmp_path, "g", [row("a", subset_hash="abc", seed=0)])
    results.append_rows(tmp_path, "g", [row("b", seed=1)])  # no subset_hash: an empty column
    frame = results.read_rows(tmp_path)
    assert frame["seed"].dtype.kind == "i" and frame["subset_hash"].isna().sum() == 1


@pytest.mark.parametrize("damage,why", [
    (lambda t: t[: len(t) - 7], "cut short"),
    (lambda t: "<<<<<<< HEAD\n" + t + "=======\n" + t + ">>>>>>> other\n", "merge conflict"),
    (lambda t: t + t.splitlines()[1] + ",extra\n", "fields"),
    (lambda t: "not,a,results,file\n1,2,3,4\n", "no trial_id"),
])
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, damage, why):
    results.append_rows(tmp_path, "g", [row("a"), row("a", "m2")])
    results.append_rows(tmp_path, "g", [row("b")])
    path = results.trial_file(tmp_path, "g", row("a"))
    path.write_text(damage(path.read_text()))
    with pytest.raises(store.ResultsError) as caught:
        results.read_rows(tmp_path)
    message = str(caught.value)
    assert str(path) in message and why in message and len(message.splitlines()) == 1
    assert "restore it from git" in message and "delete it" in message


def test_an_empty_or_missing_dir_has_no_rows(tmp_path):
    assert results.read_rows(tmp_path).empty and results.read_rows(tmp_path / "no").empty
    (tmp_path / "artifacts" / "g" / "a").mkdir(parents=True)
    (tmp_path / "artifacts" / "g" / "a" / "curve.csv").write_text("epoch\n1\n")  # not rows
    (tmp_path / "ray").mkdir()  # Ray's default storage: never rows, whatever its files' names
    (tmp_path / "ray" / "x-t1-e1-h.csv").write_text("a,b\n1,2\n")
    assert results.read_rows(tmp_path).empty
    with pytest.raises(store.ResultsError, match="no result rows"):
        results.require_rows(tmp_path)
    with pytest.raises(store.ResultsError, match="no such directory"):
        results.require_rows(tmp_path / "no")


def test_check_writable_names_what_is_wrong(tmp_path):
    assert store.check_writable(tmp_path / "new" / "dir").is_dir()
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(store.ResultsError, match=f"--results {bad}: cannot create"):
            store.check_writable(bad)


# -- the migration of grid files --------------------------------------------------------------


def grid_file(directory: Path, grid: str, rows: list[dict]) -> Path:
    path = directory / f"{grid}.csv"
    results.to_frame(rows).to_csv(path, index=False)
    return path


def test_migrate_splits_grid_files_and_keeps_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(migrate, "migrate", lambda d: [])  # ids and versions: their own tests
    grid_file(tmp_path, "g", [row("a", "m1", hostname="vm"), row("a", "m2", hostname="vm"),
                              row("b", "m1", hostname="vm", training_version=1)])
    grid_file(tmp_path, "h", [row("c", "m1", grid="h")])
    before = results.read_rows(tmp_path)
    assert migrate.main([str(tmp_path)]) == 0
    assert not list(tmp_path.glob("*.csv"))
    assert sorted(files_of(tmp_path)) == [
        "g/a-t2-e1-vm.csv", "g/b-t1-e1-vm.csv", f"h/c-t2-e1-{store.this_host()}.csv"]
    after = results.read_rows(tmp_path)
    pd.testing.assert_frame_equal(sorted_rows(before)[after.columns], sorted_rows(after))
    files = files_of(tmp_path)
    assert migrate.main([str(tmp_path)]) == 0 and files_of(tmp_path) == files  # idempotent


def test_migrate_merges_with_per_trial_files_already_there_newest_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(migrate, "migrate", lambda d: [])
    monkeypatch.setattr(store, "this_host", lambda: "vm")
    results.append_rows(tmp_path, "g", [row("a", "m1", 9.0, at="2025-05-01T00:00:00+00:00")])
    grid_file(tmp_path, "g", [row("a", "m1", 1.0, hostname="vm"),
                              row("a", "m2", 2.0, hostname="vm")])
    lines = migrate.split_grid_files(tmp_path)
    assert "1 merged with files already there" in lines[0]
    frame = results.read_rows(tmp_path)
    assert dict(zip(frame["metric"], frame["value"], strict=True)) == {"m1": 9.0, "m2": 2.0}


def test_migrate_keeps_a_grid_file_it_cannot_read(tmp_path, capsys):
    path = grid_file(tmp_path, "g", [row("a")])
    path.write_text(path.read_text() + "<<<<<<< HEAD\n")
    before = path.read_text()
    assert migrate.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err
    assert path.read_text() == before and not (tmp_path / "g").exists()


def test_the_committed_results_are_in_the_per_trial_layout():
    for base in (REPO / "results", REPO / "results" / "precision-check"):
        assert not list(base.glob("*.csv")), f"{base}: grid files left; python -m bench.migrate"
        paths = store.row_files(base)
        assert paths
        for path in paths:
            frame = store.read_file(path)
            assert frame["trial_id"].nunique() == 1, path  # one trial per file, named by it
            first = frame.iloc[0]
            assert path.name == store.trial_file_name(
                first["trial_id"], first["training_version"], first["evaluator_version"],
                first["hostname"]), path
            assert path.parent.name == first["grid"]
