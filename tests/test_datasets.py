"""aae_core.datasets: real MNIST / Fashion-MNIST, fake SVHN / TFD in the real formats, search order,
downloads through a fake transport, labelled subsets."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fake_data import (  # noqa: F401 (offline: autouse)
    offline,
    pattern,
    pin,
    tfd_folds,
    tfd_labels,
    tfd_unlabelled,
    write_svhn,
    write_tfd,
)

from aae_core import datasets, files
from aae_core.datasets import DataError, Dataset

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [4932, 5678, 4968, 5101, 4859, 4506, 4951, 5175, 4842, 4988]




def _link_mnist(src: Path, dst: Path, skip: str | None = None) -> Path:
    """dst holding symlinks to the real MNIST .gz files (all but `skip`)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in files.MNIST_FILES:
        if name != skip:
            (dst / f"{name}.gz").symlink_to(src / f"{name}.gz")
    return dst


def _placeholders(directory: Path, name: str = "mnist") -> Path:
    """Empty files with the right names: enough for locate(), which only checks presence."""
    directory.mkdir(parents=True, exist_ok=True)
    for fname in files.FILES[name]:
        (directory / fname).touch()
    return directory


# -- real MNIST ----------------------------------------------------------------------------------


def test_mnist_shapes_splits_and_range(mnist, mnist_dir):
    assert mnist.train_x.shape == (50000, 1, 28, 28)
    assert mnist.valid_x.shape == (10000, 1, 28, 28)
    assert mnist.test_x.shape == (10000, 1, 28, 28)
    assert mnist.image_shape == (1, 28, 28) and mnist.input_dim == 784 and mnist.n_classes == 10
    for x, y in (
        (mnist.train_x, mnist.train_y),
        (mnist.valid_x, mnist.valid_y),
        (mnist.test_x, mnist.test_y),
    ):
        assert x.dtype == np.float32 and y.dtype == np.int64 and len(x) == len(y)
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(mnist.test_y).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(mnist.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.train_y).sum() + np.bincount(mnist.valid_y).sum() == 60000
    assert mnist.source == str(Path(mnist_dir).absolute())
    assert "50000" in mnist.split and "\n" not in mnist.split


def test_mnist_pixels_are_raw_bytes_over_255(mnist, mnist_dir):
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    last = np.frombuffer(raw, np.uint8, offset=16).reshape(10000, 28, 28)[-1]
    np.testing.assert_array_equal(mnist.test_x[-1, 0], last.astype(np.float32) / np.float32(255))
    labels = np.frombuffer(
        gzip.decompress((mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8
    )
    np.testing.assert_array_equal(mnist.valid_y, labels[50000:])


def test_mnist_from_decompressed_files(mnist, mnist_dir, tmp_path):
    for name in files.MNIST_FILES:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    plain = datasets.load("mnist", tmp_path, download=False)
    np.testing.assert_array_equal(plain.train_x, mnist.train_x)
    np.testing.assert_array_equal(plain.test_y, mnist.test_y)
    assert plain.source == str(tmp_path)


def test_plain_file_preferred_over_gz(tmp_path):
    _placeholders(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").touch()
    assert (
        files.locate("mnist", tmp_path).files["t10k-labels-idx1-ubyte"]
        == tmp_path / "t10k-labels-idx1-ubyte"
    )


def test_mnist_truncated_plain_file(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path, skip="t10k-labels-idx1-ubyte")
    payload = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(payload[:5000])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: size check failed .*truncated"):
        datasets.load("mnist", tmp_path, download=False)


def test_mnist_truncated_gz_file(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path, skip="train-labels-idx1-ubyte")
    data = (mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: gzip check failed"):
        datasets.load("mnist", tmp_path, download=False)


def test_mnist_corrupted_byte_fails_checksum(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path, skip="t10k-labels-idx1-ubyte")
    payload = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    payload[-1] = (payload[-1] + 1) % 10  # still a valid label: only the checksum can notice
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(payload))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte: checksum check failed \(md5 .*expected 27ae3e4e"
    ):
        datasets.load("mnist", tmp_path, download=False)


def test_mnist_missing_file_is_named(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path, skip="t10k-images-idx3-ubyte")
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte\[\.gz\] missing in .*--data-dir"
    ) as err:
        datasets.load("mnist", tmp_path)
    assert "train-images" not in str(err.value)


def test_wrong_dataset_in_directory_is_identified(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path)
    with pytest.raises(
        DataError, match=r"checksum check failed .*for fashion-mnist .*\(it is mnist/t10k-labels"
    ):
        datasets.load("fashion-mnist", tmp_path)


# -- search order (presence only: placeholder files) ---------------------------------------------


@pytest.fixture
def four_places(tmp_path, monkeypatch):
    """Complete MNIST placeholders in a data dir, AAE_BENCH_DATA, a system dir and the cache."""
    places = {k: tmp_path / k for k in ("given", "env", "system", "cache")}
    _placeholders(places["given"])
    _placeholders(places["env"])
    _placeholders(places["system"])
    _placeholders(places["cache"] / "mnist")
    monkeypatch.setenv("AAE_BENCH_DATA", str(places["env"]))
    monkeypatch.setenv("AAE_BENCH_CACHE", str(places["cache"]))
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", (str(places["system"]),))
    return places


def test_search_order(four_places, monkeypatch, tmp_path):
    assert files.locate("mnist", four_places["given"]).source == str(four_places["given"])
    assert files.locate("mnist").source == str(four_places["env"])
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("AAE_BENCH_DATA", str(empty))  # no MNIST file at all: falls through
    assert files.locate("mnist").source == str(four_places["system"])
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    assert files.locate("mnist").source == f"download cache: {four_places['cache'] / 'mnist'}"


def test_given_dir_with_missing_files_never_falls_through(four_places, tmp_path):
    partial = _placeholders(tmp_path / "partial")
    (partial / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"--data-dir .*train-images-idx3-ubyte\[\.gz\] missing in"):
        files.locate("mnist", partial)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DataError, match=r"--data-dir .*missing in .*nothing or .*nothing/mnist"):
        files.locate("mnist", empty)
    with pytest.raises(DataError, match=r"--data-dir .*no such directory"):
        files.locate("mnist", tmp_path / "absent")


def test_env_partial_is_an_error(four_places, monkeypatch):
    (four_places["env"] / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"AAE_BENCH_DATA .*t10k-labels-idx1-ubyte\[\.gz\] missing"):
        files.locate("mnist")


def test_env_subdirectory_named_after_dataset(four_places, monkeypatch, tmp_path):
    _placeholders(tmp_path / "shared" / "mnist")
    monkeypatch.setenv("AAE_BENCH_DATA", str(tmp_path / "shared"))
    assert files.locate("mnist").source == str(tmp_path / "shared" / "mnist")
    monkeypatch.setenv("AAE_BENCH_DATA", str(tmp_path / "shared" / "mnist"))
    assert files.locate("mnist").source == str(tmp_path / "shared" / "mnist")


@pytest.mark.parametrize("layout", ["parent", "named"])
def test_env_with_mnist_only_lets_fashion_fall_through(layout, monkeypatch, tmp_path):
    """CI's AAE_BENCH_DATA holds MNIST only; Fashion-MNIST must still come from its system dir,
    also when the variable names the `mnist` directory itself (same file names)."""
    mnist = _placeholders(tmp_path / "data" / "mnist")
    system = _placeholders(tmp_path / "system", "fashion-mnist")
    monkeypatch.setitem(files.SYSTEM_DIRS, "fashion-mnist", (str(system),))
    monkeypatch.setenv("AAE_BENCH_DATA", str(mnist.parent if layout == "parent" else mnist))
    assert files.locate("fashion-mnist").source == str(system)
    assert files.locate("mnist").source == str(mnist)


def test_offline_without_files_names_them_and_the_ways(monkeypatch, tmp_path):
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    with pytest.raises(DataError) as err:
        datasets.load("mnist", download=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    for way in ("--data-dir", "AAE_BENCH_DATA", "aae-bench data fetch mnist"):
        assert way in message
    assert "\n" not in message


def test_unknown_name_and_bad_fold():
    with pytest.raises(
        DataError, match=r"unknown dataset 'cifar'; choose one of mnist, fashion-mnist, svhn"
    ):
        datasets.load("cifar")
    # A TFD dataset carries every fold: no fold is picked at load (#14).
    with pytest.raises(DataError, match=r"mnist: fold 1: no fold is chosen at load"):
        datasets.load("mnist", fold=1)
    with pytest.raises(DataError, match=r"tfd: fold 3: no fold is chosen at load any more"):
        datasets.load("tfd", fold=3)


# -- real Fashion-MNIST (Debian's dataset-fashion-mnist) -----------------------------------------


@pytest.fixture(scope="module")
def fashion_available():
    if not FASHION_SYSTEM.is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)")
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def test_fashion_mnist_from_system_location(fashion_available, monkeypatch):
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    fashion = datasets.load("fashion-mnist", download=False)
    assert fashion.source == str(FASHION_SYSTEM)
    assert fashion.train_x.shape == (50000, 1, 28, 28) and fashion.test_x.shape == (
        10000,
        1,
        28,
        28,
    )
    assert np.bincount(fashion.test_y).tolist() == [1000] * 10
    assert np.bincount(fashion.train_y, minlength=10).sum() + len(fashion.valid_y) == 60000
    assert 0.0 <= fashion.train_x.min() and fashion.train_x.max() <= 1.0


def test_fashion_found_next_to_real_mnist_env(fashion_available, mnist_dir, monkeypatch):
    for env in (mnist_dir, mnist_dir.parent):
        monkeypatch.setenv("AAE_BENCH_DATA", str(env))
        assert files.locate("fashion-mnist", download=False).source == str(FASHION_SYSTEM)


# -- SVHN from fake files ------------------------------------------------------------------------


@pytest.fixture
def svhn_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SVHN_VALID_SIZE", 10)
    directory = tmp_path / "svhn"
    directory.mkdir()
    train = write_svhn(directory / "train_32x32.mat", 60)
    test = write_svhn(directory / "test_32x32.mat", 25, first_label=4)
    pin(monkeypatch, "svhn", directory / "train_32x32.mat", directory / "test_32x32.mat")
    return directory, train, test


def test_svhn_layout_labels_and_validation(svhn_dir):
    directory, (train_px, train_y), (test_px, test_y) = svhn_dir
    svhn = datasets.load("svhn", directory.parent)  # found in the svhn/ subdirectory
    assert svhn.source == str(directory)
    assert svhn.test_x.shape == (25, 3, 32, 32) and svhn.image_shape == (3, 32, 32)
    # stored X[h, w, c, i] lands at x[i, c, h, w]
    np.testing.assert_array_equal(svhn.test_x, test_px / np.float32(255))
    i, c, h, w = 7, 2, 5, 30
    assert svhn.test_x[i, c, h, w] * 255 == pytest.approx(int(pattern(np.array(i), c, h, w)))
    np.testing.assert_array_equal(svhn.test_y, test_y)
    assert 10 not in svhn.test_y and 0 in svhn.test_y  # label 10 became digit 0
    valid = datasets.svhn_valid_indices(60)
    keep = np.setdiff1d(np.arange(60), valid)
    np.testing.assert_array_equal(svhn.valid_x, train_px[valid] / np.float32(255))
    np.testing.assert_array_equal(svhn.valid_y, train_y[valid])
    np.testing.assert_array_equal(svhn.train_x, train_px[keep] / np.float32(255))
    np.testing.assert_array_equal(svhn.train_y, train_y[keep])
    assert len(svhn.valid_y) == 10 and len(svhn.train_y) == 50
    assert datasets.subset_hash(valid) in svhn.split


def test_svhn_validation_indices_are_pinned():
    valid = datasets.svhn_valid_indices(73257)
    assert len(valid) == 5000 and np.all(np.diff(valid) > 0) and valid[-1] < 73257
    assert datasets.subset_hash(valid) == "f79183e821e94748"


def test_svhn_extra_is_appended_to_train(svhn_dir, monkeypatch):
    directory, (train_px, _), _ = svhn_dir
    extra_px, extra_y = write_svhn(directory / "extra_32x32.mat", 15, first_label=9)
    pin(monkeypatch, "svhn", directory / "extra_32x32.mat")
    both = datasets.load("svhn-extra", directory.parent)
    assert len(both.train_y) == 50 + 15 and len(both.valid_y) == 10
    np.testing.assert_array_equal(both.train_x[50:], extra_px / np.float32(255))
    np.testing.assert_array_equal(both.train_y[50:], extra_y)
    assert "extra_32x32.mat (15)" in both.split
    assert len(datasets.load("svhn", directory).train_y) == 50  # svhn ignores the extra file


def test_svhn_unpinned_fake_fails_checksum(svhn_dir, monkeypatch):
    directory = svhn_dir[0]
    monkeypatch.setitem(
        files.CHECKSUMS["svhn"], "train_32x32.mat", "md5:e26dedcc434d2e4c54c9b2d4a06d8373"
    )
    with pytest.raises(
        DataError,
        match=r"train_32x32\.mat: checksum check failed \(md5 of the file .*expected e26dedcc",
    ):
        datasets.load("svhn", directory)


def test_svhn_bad_contents(svhn_dir, monkeypatch):
    directory = svhn_dir[0]
    path = directory / "test_32x32.mat"
    scipy.io.savemat(
        path, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.zeros((4, 1), np.uint8)}
    )
    pin(monkeypatch, "svhn", path)
    with pytest.raises(
        DataError,
        match=r"test_32x32\.mat: content check failed \('y' holds values outside 1\.\.10\)",
    ):
        datasets.load("svhn", directory)
    scipy.io.savemat(path, {"images": np.zeros((32, 32, 3, 4), np.uint8)})
    pin(monkeypatch, "svhn", path)
    with pytest.raises(
        DataError, match=r"test_32x32\.mat: content check failed \(no variable X, y"
    ):
        datasets.load("svhn", directory)
    path.write_bytes(b"not a mat file")
    pin(monkeypatch, "svhn", path)
    with pytest.raises(DataError, match=r"test_32x32\.mat: format check failed"):
        datasets.load("svhn", directory)


def test_svhn_too_small_for_validation(svhn_dir, monkeypatch):
    monkeypatch.setattr(datasets, "SVHN_VALID_SIZE", 60)
    with pytest.raises(
        DataError, match=r"train_32x32\.mat: content check failed \(60 images, too few"
    ):
        datasets.load("svhn", svhn_dir[0])


# -- downloads through a fake transport ----------------------------------------------------------


def _serve(sources: dict[str, bytes], calls: list):
    """A fake transport serving file contents by URL basename."""

    def fetch(url, known_hash, dest):
        calls.append(url)
        dest.write_bytes(sources[url.rsplit("/", 1)[-1]])

    return fetch


def _all_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_svhn_download_into_cache_then_reuse(svhn_dir, monkeypatch, tmp_path):
    directory = svhn_dir[0]
    sources = {p.name: p.read_bytes() for p in directory.iterdir()}
    calls = []
    monkeypatch.setattr(files, "fetch_url", _serve(sources, calls))
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    first = datasets.load("svhn")
    cache = tmp_path / "cache" / "svhn"
    assert first.source == f"download cache: {cache}"
    assert sorted(calls) == [
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    ]
    assert [p.name for p in _all_files(cache)] == ["test_32x32.mat", "train_32x32.mat"]
    again = datasets.load("svhn")
    assert len(calls) == 2 and again.source == first.source
    np.testing.assert_array_equal(again.test_x, first.test_x)


def test_corrupt_download_leaves_no_file(svhn_dir, monkeypatch, tmp_path):
    directory = svhn_dir[0]
    sources = {p.name: p.read_bytes() for p in directory.iterdir()}
    sources["train_32x32.mat"] = sources["train_32x32.mat"][:-100]  # truncated in transit
    monkeypatch.setattr(files, "fetch_url", _serve(sources, []))
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    with pytest.raises(DataError, match=r"train_32x32\.mat failed its checksum check"):
        datasets.load("svhn")
    assert all(p.name != "train_32x32.mat" for p in _all_files(tmp_path / "cache"))
    assert not [p for p in (tmp_path / "cache" / "svhn").iterdir() if p.name.startswith(".")]


def test_payload_checksum_failure_after_download_leaves_no_file(mnist_dir, monkeypatch, tmp_path):
    """The .gz matches its download hash but the payload table disagrees: nothing is kept."""
    sources = {f"{n}.gz": (mnist_dir / f"{n}.gz").read_bytes() for n in files.MNIST_FILES}
    monkeypatch.setattr(files, "fetch_url", _serve(sources, []))
    monkeypatch.setitem(files.CHECKSUMS["mnist"], "t10k-labels-idx1-ubyte", "md5:" + "0" * 32)
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    with pytest.raises(
        DataError,
        match=r"rejected and not kept: .*t10k-labels-idx1-ubyte\.gz: checksum check failed",
    ):
        files.locate("mnist")
    assert "t10k-labels-idx1-ubyte.gz" not in [p.name for p in _all_files(tmp_path / "cache")]


def test_mnist_download_verifies_real_hashes(mnist_dir, monkeypatch, tmp_path):
    """The real .gz files pass the DOWNLOADS sha256s and the payload md5s (pins both tables)."""
    sources = {f"{n}.gz": (mnist_dir / f"{n}.gz").read_bytes() for n in files.MNIST_FILES}
    calls = []
    monkeypatch.setattr(files, "fetch_url", _serve(sources, calls))
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    found = files.locate("mnist")
    assert found.downloaded == files.MNIST_FILES
    assert all(url.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for url in calls)
    for name, (_, known) in files.DOWNLOADS["mnist"].items():
        assert known == "sha256:" + hashlib.sha256(sources[f"{name}.gz"]).hexdigest()


def test_fetch_into_data_dir(svhn_dir, monkeypatch, tmp_path):
    sources = {p.name: p.read_bytes() for p in svhn_dir[0].iterdir()}
    monkeypatch.setattr(files, "fetch_url", _serve(sources, []))
    target = tmp_path / "mydata"
    found = files.fetch("svhn", target)
    assert found.source == str(target / "svhn") and set(found.downloaded) == {
        "train_32x32.mat",
        "test_32x32.mat",
    }
    assert files.locate("svhn", target).source == str(target / "svhn")
    assert files.fetch("svhn", target).downloaded == ()


# -- TFD from fake files -------------------------------------------------------------------------


@pytest.fixture
def tfd_dir(tmp_path):
    directory = tmp_path / "tfd"
    directory.mkdir()
    images = write_tfd(directory / "TFD_48x48.mat", 40)
    return directory, images


def test_tfd_trains_on_the_unlabelled_images_and_carries_every_fold(tfd_dir):
    # Issue 14: the training set is TFD's unlabelled part (folds == 0 in every column), not a
    # fold's few labelled train images; every fold's valid / test images come along.
    directory, images = tfd_dir
    tfd = datasets.load("tfd", directory.parent)  # in the tfd/ subdirectory
    codes, labels = tfd_folds(40), tfd_labels(40)
    expected_y = np.where(labels > 0, labels - 1, -1)
    unlabelled = (codes == 0).all(axis=1)
    assert unlabelled.sum() == tfd_unlabelled(40) == 20
    assert tfd.image_shape == (1, 48, 48) and tfd.n_classes == 7
    np.testing.assert_array_equal(tfd.train_x[:, 0], images[unlabelled] / np.float32(255))
    np.testing.assert_array_equal(tfd.train_y, expected_y[unlabelled])
    assert (tfd.train_y == -1).all()
    assert [f.index for f in tfd.folds] == [0, 1, 2, 3, 4]
    for fold in tfd.folds:
        column = codes[:, fold.index]
        for part, code in (("valid", 2), ("test", 3)):
            x, y = getattr(fold, f"{part}_x"), getattr(fold, f"{part}_y")
            np.testing.assert_array_equal(x[:, 0], images[column == code] / np.float32(255))
            np.testing.assert_array_equal(y, expected_y[column == code])
        assert fold.n_train == (column == 1).sum() > 0
    # valid / test alone are fold 0's (what figures and saved latents read)
    assert tfd.valid_x is tfd.folds[0].valid_x and tfd.test_y is tfd.folds[0].test_y
    # never a fold's validation or test image among the training images (pixels tell them apart)
    held_out = np.isin(codes, (2, 3)).any(axis=1)
    train_pixels = {row.tobytes() for row in images[unlabelled]}
    assert not train_pixels & {row.tobytes() for row in images[held_out]}
    assert "train = the unlabelled images" in tfd.split and "(20," in tfd.split
    assert "Dataset('tfd', train=20," in repr(tfd) and "folds=5" in repr(tfd)


def test_tfd_training_set_check_is_a_hard_check(tfd_dir, monkeypatch):
    codes = tfd_folds(40)
    datasets.check_tfd_training_set(datasets.tfd_unlabelled(codes), codes)
    with pytest.raises(AssertionError, match=r"holds 20 validation / test image\(s\) of some fold"):
        datasets.check_tfd_training_set(np.arange(40), codes)
    # load runs it on what it selects: a selection that leaks fails the load, not only a test
    monkeypatch.setattr(datasets, "tfd_unlabelled", lambda folds: np.arange(len(folds)))
    with pytest.raises(AssertionError, match="validation / test image"):
        datasets.load("tfd", tfd_dir[0])


def test_tfd_images_labelled_in_some_folds_only_are_never_trained_on(tmp_path):
    codes = tfd_folds(40)
    codes[0, 2] = 3  # unlabelled but for one fold, where it is a test image
    codes[25, 1] = 0  # labelled but for one fold
    write_tfd(tmp_path / "TFD_48x48.mat", 40, folds=codes)
    tfd = datasets.load("tfd", tmp_path)
    assert len(tfd.train_y) == 19
    assert "2 image(s) labelled in some folds only, unused" in tfd.split


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.__setitem__(slice(None), np.maximum(c, 1)), "no unlabelled image"),
    (lambda c: c[:, 3].__setitem__(c[:, 3] == 2, 1), "fold 3 has 0 valid"),
])
def test_tfd_without_unlabelled_or_valid_images_is_refused(tmp_path, change, message):
    codes = tfd_folds(40)
    change(codes)
    write_tfd(tmp_path / "TFD_48x48.mat", 40, folds=codes)
    with pytest.raises(DataError, match=message):
        datasets.load("tfd", tmp_path)


def test_tfd_folds_stored_as_double(tmp_path):
    write_tfd(tmp_path / "TFD_48x48.mat", 16, int_dtype=np.float64)
    tfd = datasets.load("tfd", tmp_path)
    assert tfd.train_y.dtype == np.int64 and len(tfd.train_y) == tfd_unlabelled(16)
    assert tfd.folds[1].n_train == int((tfd_folds(16)[:, 1] == 1).sum())


def test_tfd_96_reads_its_own_file_from_tfd_dir(tmp_path):
    (tmp_path / "tfd").mkdir()
    write_tfd(tmp_path / "tfd" / "TFD_96x96.mat", 12, size=96)
    tfd96 = datasets.load("tfd-96", tmp_path)
    assert tfd96.image_shape == (1, 96, 96) and tfd96.source == str(tmp_path / "tfd")


def test_tfd_checksum_is_applied_when_known(tfd_dir, monkeypatch):
    directory = tfd_dir[0]
    monkeypatch.setitem(files.CHECKSUMS["tfd"], "TFD_48x48.mat", "md5:" + "1" * 32)
    with pytest.raises(DataError, match=r"TFD_48x48\.mat: checksum check failed"):
        datasets.load("tfd", directory)
    pin(monkeypatch, "tfd", directory / "TFD_48x48.mat")
    assert datasets.load("tfd", directory).n_classes == 7


def test_tfd_wrong_image_size(tmp_path):
    write_tfd(tmp_path / "TFD_48x48.mat", 4, size=32)
    with pytest.raises(
        DataError,
        match=r"content check failed \('images' is uint8 \(4, 32, 32\), expected uint8 \(N, 48, 48\)",
    ):
        datasets.load("tfd", tmp_path)


def test_tfd_missing_says_not_downloadable(monkeypatch, tmp_path):
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    with pytest.raises(DataError) as err:
        datasets.load("tfd")  # download=True, yet no download is attempted (offline fixture)
    message = str(err.value)
    assert "TFD_48x48.mat not found" in message and "not freely downloadable" in message
    assert "--data-dir" in message and "AAE_BENCH_DATA" in message and "tfd/" in message
    with pytest.raises(DataError, match=r"not freely downloadable"):
        datasets.load("tfd", tmp_path)


# -- labelled subsets ----------------------------------------------------------------------------


def test_labelled_subset_balanced_seeded_sorted(mnist):
    idx = datasets.labelled_subset(mnist.train_y, 100, seed=3, n_classes=10)
    assert idx.dtype == np.int64 and len(idx) == 100 and len(np.unique(idx)) == 100
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < len(mnist.train_y)
    assert np.bincount(mnist.train_y[idx], minlength=10).tolist() == [10] * 10
    np.testing.assert_array_equal(
        idx, datasets.labelled_subset(mnist.train_y, 100, seed=3, n_classes=10)
    )
    other = datasets.labelled_subset(mnist.train_y, 100, seed=4, n_classes=10)
    assert not np.array_equal(idx, other)
    assert datasets.subset_hash(idx) != datasets.subset_hash(other)


def test_labelled_subset_independent_of_global_rng():
    labels = np.arange(1000) % 10
    np.random.seed(1)
    first = datasets.labelled_subset(labels, 100, 0, 10)
    np.random.seed(2)
    np.random.rand(10)
    assert np.array_equal(first, datasets.labelled_subset(labels, 100, 0, 10))
    assert datasets.subset_hash(first) == "209fdaed08ad27e3"  # regression pin of the PCG64 stream


def test_labelled_subset_skips_unknown_labels():
    labels = np.array([-1, 0, 1, -1, 0, 1, 0, 1])
    idx = datasets.labelled_subset(labels, 4, 0, 2)
    assert np.all(labels[idx] >= 0) and len(idx) == 4


@pytest.mark.parametrize(
    ("n_labels", "message"), [(105, "multiple"), (0, "positive"), (1010, "class 0 has 100")]
)
def test_labelled_subset_rejects_bad_requests(n_labels, message):
    # DataError: the CLI prints it as one line (`train --labels 105`)
    with pytest.raises(DataError, match=message):
        datasets.labelled_subset(np.arange(1000) % 10, n_labels, 0, 10)


def test_subset_hash_is_pinned():
    indices = np.arange(10)
    assert (
        datasets.subset_hash(indices)
        == hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest()[:16]
    )
    assert datasets.subset_hash(indices) == "23c379d6c0f22ef6"
    assert (
        datasets.subset_hash(np.arange(10, dtype=np.int32)) == "23c379d6c0f22ef6"
    )  # dtype-independent
    assert datasets.subset_hash(indices[::-1]) != "23c379d6c0f22ef6"


# -- describe ------------------------------------------------------------------------------------


def test_describe_counts_every_label():
    x = np.zeros((4, 1, 2, 2), np.float32)
    ds = Dataset(
        "toy",
        x,
        np.array([0, 0, 2, -1]),
        x[:1],
        np.array([1]),
        x[:2],
        np.array([2, 2]),
        "here",
        "toy split",
        3,
    )
    info = datasets.describe(ds)
    assert info["splits"]["train"] == {
        "n": 4,
        "shape": [1, 2, 2],
        "label_counts": {"-1": 1, "0": 2, "1": 0, "2": 1},
    }
    assert info["splits"]["test"]["label_counts"] == {"0": 0, "1": 0, "2": 2}
    assert (
        info["source"] == "here"
        and info["split"] == "toy split"
        and info["image_shape"] == [1, 2, 2]
    )


def test_dataset_rejects_wrong_dtypes():
    x = np.zeros((2, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="train_y must be int64"):
        Dataset(
            "toy",
            x,
            np.zeros(2, np.int32),
            x,
            np.zeros(2, np.int64),
            x,
            np.zeros(2, np.int64),
            "",
            "",
            2,
        )
    with pytest.raises(ValueError, match="valid_x must be float32"):
        Dataset(
            "toy",
            x,
            np.zeros(2, np.int64),
            x.astype(np.float64),
            np.zeros(2, np.int64),
            x,
            np.zeros(2, np.int64),
            "",
            "",
            2,
        )
    bad_fold = datasets.Fold(3, x, np.zeros(2, np.int64), x[:, :, :1], np.zeros(2, np.int64), 0)
    with pytest.raises(ValueError, match=r"folds\[3\]\.test_x must be float32"):
        Dataset("toy", x, np.zeros(2, np.int64), x, np.zeros(2, np.int64), x,
                np.zeros(2, np.int64), "", "", 2, folds=(bad_fold,))


def test_describe_lists_every_tfd_fold(tfd_dir):
    info = datasets.describe(datasets.load("tfd", tfd_dir[0]))
    assert info["splits"]["train"]["n"] == 20 and info["splits"]["train"]["label_counts"]["-1"] == 20
    codes = tfd_folds(40)
    assert info["folds"] == [
        {"fold": k, "train": int((codes[:, k] == 1).sum()), "valid": int((codes[:, k] == 2).sum()),
         "test": int((codes[:, k] == 3).sum())} for k in range(5)]


def test_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path))
    assert files.cache_dir("svhn-extra") == tmp_path / "svhn"
    monkeypatch.delenv("AAE_BENCH_CACHE")
    assert files.cache_dir("mnist").parts[-2:] == ("aae-bench", "mnist")


def test_every_dataset_is_fully_described():
    # files.FILES names the known datasets in the unknown-name error, so the two tables agree.
    assert list(files.FILES) == list(datasets.DATASETS)
    for name in datasets.DATASETS:
        family = files.FAMILY.get(name, name)
        assert set(files.FILES[name]) <= set(files.CHECKSUMS[family])
        if family in files.DOWNLOADS:
            assert set(files.FILES[name]) <= set(files.DOWNLOADS[family])


def test_failed_download_says_how_to_provide_files(monkeypatch):
    def unreachable(url, known_hash, dest):
        raise ConnectionError("Failed to resolve host")

    monkeypatch.setattr(files, "fetch_url", unreachable)
    monkeypatch.delenv("AAE_BENCH_DATA", raising=False)
    monkeypatch.setitem(files.SYSTEM_DIRS, "mnist", ())
    with pytest.raises(
        DataError,
        match=r"^mnist: could not download https://.*ConnectionError.*offline\? .*--data-dir",
    ):
        datasets.load("mnist")
