"""bench.data_command: `aae-bench data info` on real MNIST, `data fetch` with a fake transport."""

from __future__ import annotations

import json

import pytest
from fake_data import (
    offline,  # noqa: F401  (autouse: no network, no user cache)
    pin,
    tfd_folds,
    write_svhn,
    write_tfd,
)

from aae_core import datasets, files
from aae_core.files import DataError
from bench import data_command

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]




def test_info_text_on_real_mnist(mnist_dir):
    text = data_command.info("mnist", str(mnist_dir), as_json=False)
    lines = text.splitlines()
    assert lines[0] == "mnist: 70000 images of 1x28x28, 10 classes"
    assert f"found in: {mnist_dir.absolute()}" in lines
    rows = {
        line.split()[0]: line.split()
        for line in lines
        if line.split()[:1] in (["split"], ["train"], ["valid"], ["test"])
    }
    assert rows["split"] == ["split", "n", "shape", *(f"y={k}" for k in range(10))]
    assert rows["train"][:3] == ["train", "50000", "1x28x28"] and rows["valid"][1] == "10000"
    assert [int(v) for v in rows["test"][3:]] == MNIST_TEST_COUNTS
    table = [
        line for line in lines if line.split()[:1] in (["split"], ["train"], ["valid"], ["test"])
    ]
    assert len({len(line) for line in table}) == 1  # aligned columns


def test_info_json_on_real_mnist(mnist_dir):
    info = json.loads(data_command.info("mnist", str(mnist_dir), as_json=True))
    assert info["name"] == "mnist" and info["source"] == str(mnist_dir.absolute())
    assert {k: v["n"] for k, v in info["splits"].items()} == {
        "train": 50000,
        "valid": 10000,
        "test": 10000,
    }
    assert info["splits"]["test"]["label_counts"] == {
        str(k): n for k, n in enumerate(MNIST_TEST_COUNTS)
    }
    assert info["splits"]["train"]["shape"] == [1, 28, 28] and "50000" in info["split"]


def test_info_never_downloads(monkeypatch, tmp_path):
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    with pytest.raises(DataError, match=r"aae-bench data fetch mnist"):
        data_command.info("mnist", None, as_json=False)


def test_fetch_downloads_into_data_dir_then_finds(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "SVHN_VALID_SIZE", 5)
    served = tmp_path / "served"
    served.mkdir()
    write_svhn(served / "train_32x32.mat", 30)
    write_svhn(served / "test_32x32.mat", 10)
    pin(monkeypatch, "svhn", served / "train_32x32.mat", served / "test_32x32.mat")
    calls = []

    def fake(url, known_hash, dest):
        calls.append(url)
        dest.write_bytes((served / url.rsplit("/", 1)[-1]).read_bytes())

    monkeypatch.setattr(files, "fetch_url", fake)
    target = tmp_path / "data"
    first = data_command.fetch("svhn", str(target))
    assert "downloaded train_32x32.mat, test_32x32.mat" in first
    assert f"Found in: {target / 'svhn'}" in first and "25 train / 5 valid / 10 test" in first
    assert "\n" not in first
    again = data_command.fetch("svhn", str(target))
    assert "all 2 file(s) were already present; 2 file(s) match their known checksums" in again
    assert len(calls) == 2


def test_fetch_tfd_says_format_checks_only(tmp_path):
    write_tfd(tmp_path / "TFD_48x48.mat", 12)
    text = data_command.fetch("tfd", str(tmp_path))
    assert "TFD_48x48.mat passed the format checks only" in text and "7 classes" in text
    assert "match their known checksums" not in text
    assert "6 unlabelled (train) images, 5 folds of" in text and "\n" not in text


def test_info_tfd_shows_the_unlabelled_count_and_every_fold(tmp_path):
    # Issue 14: `data info tfd` says what a TFD trial trains on (the unlabelled images) and
    # what each fold scores.
    write_tfd(tmp_path / "TFD_48x48.mat", 40)
    text = data_command.info("tfd", str(tmp_path), as_json=False)
    lines = text.splitlines()
    assert lines[0] == "tfd: 20 unlabelled images (the training set) and 5 folds of 1x48x48, 7 classes"
    rows = {line.split("  ")[0]: line.split() for line in lines}
    assert rows["train (unlabelled)"][2] == "20"
    assert "valid (fold 0)" in rows and "test (fold 0)" in rows
    codes = tfd_folds(40)
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["fold"])
    assert lines[header].split() == ["fold", "train", "(not", "trained", "on)", "valid", "test"]
    for k in range(5):
        assert lines[header + 1 + k].split() == [
            str(k), *(str(int((codes[:, k] == c).sum())) for c in (1, 2, 3))]
    summary = json.loads(data_command.info("tfd", str(tmp_path), as_json=True))
    assert summary["splits"]["train"]["n"] == 20 and len(summary["folds"]) == 5
