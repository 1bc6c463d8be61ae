"""Shared fixtures. Real MNIST comes from ../shared/data/mnist (or AAE_BENCH_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _mnist_dir() -> Path | None:
    env = os.environ.get("AAE_BENCH_DATA")
    for candidate in ([Path(env), Path(env) / "mnist"] if env else []) + [SHARED_MNIST]:
        if (candidate / "train-images-idx3-ubyte.gz").exists() or (
            candidate / "train-images-idx3-ubyte"
        ).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Directory holding the real MNIST IDX files; the test is skipped where there is none."""
    found = _mnist_dir()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the real MNIST files (../shared/data/mnist or AAE_BENCH_DATA)")
        pytest.skip("real MNIST files not found (set AAE_BENCH_DATA)")
    return found


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """Real MNIST, loaded once for the whole test run (tests must not modify its arrays)."""
    from aae_core import datasets

    return datasets.load("mnist", mnist_dir)
