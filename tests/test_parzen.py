"""bench.parzen's many-sample tools: every sigma in one pass, the streaming sigma selection, the
grid for large sample counts, the edge flag, and the torch evaluator, against the single-sigma
evaluator, the float64 references of tests/reference.py and known answers."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import reference as ref
import torch
from cuda_helpers import cuda

from bench import parzen
from bench.parzen import (
    PARZEN_SIGMAS,
    parzen_log_likelihood,
    parzen_log_likelihood_sigmas,
    parzen_log_likelihood_streaming,
    parzen_log_likelihood_torch,
    parzen_sigma_grid,
    select_parzen_sigma,
    select_parzen_sigma_streaming,
    sigma_on_edge,
)

# 1/sigma^2 a power of two: the one-pass and the single-sigma paths do the same arithmetic.
POWER_OF_TWO_SIGMAS = (0.25, 0.5, 1.0, 2.0)
OTHER_SIGMAS = (0.01, 0.1, 0.17, 0.3)
SIGMAS = POWER_OF_TWO_SIGMAS + OTHER_SIGMAS


def _uneven(samples, edges=(0, 7, 8, 8, 300, 301)):
    """Chunks of uneven sizes: 7, 1, 0 (skipped), 292, 1, the rest."""
    cuts = [*edges, len(samples)]
    return [samples[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _mnist_like(rng, n, d=784):
    proto = np.random.default_rng(7).random((10, d)) ** 4
    x = proto[rng.integers(0, 10, n)] + rng.normal(0.0, 0.3, (n, d))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _data():
    rng = np.random.default_rng(3)
    return {
        "uniform-784": (
            rng.random((1200, 784), dtype=np.float32),
            rng.random((40, 784), dtype=np.float32),
        ),
        "mnist-like": (_mnist_like(rng, 1200), _mnist_like(rng, 40)),
        "gauss-5": (rng.normal(size=(900, 5)), rng.normal(size=(30, 5))),
    }


DATA = _data()
_REF: dict = {}


def _reference(name):
    if name not in _REF:
        samples, points = DATA[name]
        _REF[name] = ref.parzen_ll_rowwise_sigmas(samples, points, SIGMAS)
    return _REF[name]


def _bounds(samples, points, sigmas):
    return np.stack([ref.parzen_fp32_error_bound(samples, points, s) for s in sigmas])


def _one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# Every sigma in one pass
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATA)
@pytest.mark.parametrize("threads", [1, 2])
def test_sigmas_equal_one_pass_per_sigma(name, threads):
    samples, points = DATA[name]
    got = parzen_log_likelihood_sigmas(_uneven(samples), points, SIGMAS, threads=threads)
    assert got.shape == (len(SIGMAS), len(points)) and got.dtype == np.float64
    want = _reference(name)
    bound = _bounds(samples, points, SIGMAS)
    for k, sigma in enumerate(SIGMAS):
        one = parzen_log_likelihood_streaming(_uneven(samples), points, sigma, threads=threads)
        if sigma in POWER_OF_TWO_SIGMAS:
            np.testing.assert_array_equal(got[k], one, err_msg=f"sigma {sigma}")
        else:  # both within the float32 error model of the float64 reference
            assert np.all(np.abs(one - want[k]) <= bound[k]), sigma
        assert np.all(np.abs(got[k] - want[k]) <= bound[k]), sigma


@pytest.mark.parametrize("name", DATA)
def test_sigmas_float64_matches_reference(name):
    samples, points = DATA[name]
    got = parzen_log_likelihood_sigmas(_uneven(samples), points, SIGMAS, dtype=np.float64)
    want = _reference(name)
    size = np.abs(want) + np.abs(
        [[0.5 * points.shape[1] * math.log(2 * math.pi * s * s)] for s in SIGMAS]
    )
    assert np.max(np.abs(got - want) / size) < 1e-12


def test_sigmas_blocking_and_chunking_do_not_change_the_result():
    rng = np.random.default_rng(5)
    samples, points = rng.random((50, 6)), rng.random((13, 6))
    want = ref.parzen_ll_rowwise_sigmas(samples, points, SIGMAS)
    for batch_size, sample_chunk, threads in [(1, 1, 1), (4, 7, 2), (13, 50, 3), (100, 3, 1)]:
        for chunks in (
            [samples],
            [samples[i : i + 1] for i in range(50)],
            _uneven(samples, (0, 9)),
        ):
            got = parzen_log_likelihood_sigmas(
                chunks,
                points,
                SIGMAS,
                batch_size=batch_size,
                sample_chunk=sample_chunk,
                threads=threads,
                dtype=np.float64,
            )
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sigmas_on_a_generator_and_with_repeated_sigmas():
    samples, points = DATA["gauss-5"]
    got = parzen_log_likelihood_sigmas((c for c in _uneven(samples)), points, [0.5, 0.3, 0.5])
    np.testing.assert_array_equal(got[0], got[2])
    alone = parzen_log_likelihood_sigmas(_uneven(samples), points, [0.3])[0]
    np.testing.assert_array_equal(got[1], alone)  # each sigma's row is computed on its own


@pytest.mark.parametrize("d", [1, 5, 784])
def test_one_kernel_at_its_centre(d):
    x = np.random.default_rng(d).random((1, d)) * 3
    sigmas = (0.01, 0.1, 0.5, 1.0, 7.0)
    want = np.array([-0.5 * d * math.log(2 * math.pi * s * s) for s in sigmas])
    for dtype in (np.float32, np.float64):
        for got in (
            parzen_log_likelihood_sigmas([x], x, sigmas, dtype=dtype)[:, 0],
            parzen_log_likelihood_torch([x], x, sigmas, "cpu", dtype=dtype)[:, 0],
        ):
            assert np.all(np.abs(got - want) <= 1e-12 * np.maximum(1.0, np.abs(want)))


def test_many_identical_kernels_are_one_kernel():
    x = np.full((1, 4), 0.25)
    chunks = [np.repeat(x, 20, axis=0), np.repeat(x, 17, axis=0)]
    want = [-2 * math.log(2 * math.pi * s * s) for s in (0.3, 0.05)]
    for got in (
        parzen_log_likelihood_sigmas(chunks, x, (0.3, 0.05), dtype=np.float64),
        parzen_log_likelihood_torch(chunks, x, (0.3, 0.05), "cpu", dtype=np.float64),
    ):
        np.testing.assert_allclose(got[:, 0], want, rtol=1e-13)


def _read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255


def test_sigmas_real_mnist_match_float64_reference(mnist_dir):
    images = _read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    samples, points = images[:1500], images[5000:5040]
    grid = (0.01, 0.0774263682681127, 0.1, 0.17, 0.5)
    want = ref.parzen_ll_rowwise_sigmas(samples, points, grid)
    size = np.abs(want) + np.array([[0.5 * 784 * math.log(2 * math.pi * s * s)] for s in grid])
    for got in (
        parzen_log_likelihood_sigmas(_uneven(samples), points, grid),
        parzen_log_likelihood_torch(_uneven(samples), points, grid, "cpu"),
    ):
        assert np.max(np.abs(got - want) / size) < 1e-6
        assert np.all(np.abs(got - want) <= _bounds(samples, points, grid))
        np.testing.assert_allclose(got.mean(axis=1), want.mean(axis=1), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Choosing sigma
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 4, 9, 13, 18])
def test_select_streaming_finds_the_constructed_peak(k):
    # One kernel at the origin, validation points at distance r: the mean log-likelihood peaks
    # at s = r / sqrt(d) (tests/test_metrics.py::test_select_parzen_sigma_constructed).
    grid = parzen_sigma_grid(10_000_000)
    d = 6
    r = math.sqrt(d) * grid[k]
    directions = np.random.default_rng(k).normal(size=(40, d))
    validation = r * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    sigma, means = select_parzen_sigma_streaming([np.zeros((1, d))], validation, grid)
    assert sigma == grid[k] and type(sigma) is float
    assert means.shape == (len(grid),) and int(np.argmax(means)) == k


def test_select_streaming_agrees_with_select_parzen_sigma():
    samples, validation = DATA["mnist-like"]
    sigma, means = select_parzen_sigma_streaming(_uneven(samples), validation, PARZEN_SIGMAS)
    assert sigma == select_parzen_sigma(samples, validation, PARZEN_SIGMAS)
    per_sigma = [parzen_log_likelihood(samples, validation, s).mean() for s in PARZEN_SIGMAS]
    np.testing.assert_allclose(means, per_sigma, rtol=1e-6)


def _trial_rule(grid, means):
    """bench/trial.py evaluate_parzen_large's rule, verbatim."""
    scores = dict(zip(grid, means, strict=True))
    return max(scores, key=lambda s: (scores[s], -s))


def test_select_streaming_tie_rule(monkeypatch):
    # Exact ties: every sigma scores the same, or two do.
    def flat(chunks, points, sigmas, **kw):
        return np.array([[-1.0 if s in (0.3, 0.2) else -2.0] * len(points) for s in sigmas])

    monkeypatch.setattr(parzen, "parzen_log_likelihood_sigmas", flat)
    x = np.zeros((2, 3))
    for grid in ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.3], [0.3, 0.5, 0.2]):
        sigma, means = select_parzen_sigma_streaming([x], x, grid)
        assert sigma == 0.2 == _trial_rule(grid, means)


def test_tie_rule_equals_the_trials_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):
        grid = list(rng.permutation(PARZEN_SIGMAS))
        means = list(rng.integers(0, 3, len(grid)).astype(float))  # many exact ties
        assert parzen._best_sigma(grid, means) == _trial_rule(grid, means)


def test_select_parzen_sigma_tie_rule_is_the_same_on_an_ascending_grid(monkeypatch):
    # select_parzen_sigma keeps the first of tied sigmas in grid order: on an ascending grid
    # (PARZEN_SIGMAS, every parzen_sigma_grid) that is the smaller one, as the trial's rule.
    monkeypatch.setattr(parzen, "parzen_log_likelihood", lambda s, p, sigma, **kw: np.zeros(len(p)))
    x = np.zeros((2, 3))
    for grid in (PARZEN_SIGMAS, parzen_sigma_grid(10**7)):
        assert select_parzen_sigma(x, x, grid) == min(grid) == _trial_rule(grid, [0.0] * len(grid))
    assert select_parzen_sigma(x, x, [0.5, 0.2]) == 0.5  # out of order: first, not smaller


# --------------------------------------------------------------------------------------------
# The grid for large sample counts, and the edge flag
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 1000, 10_000])
def test_grid_up_to_10k_samples_is_the_protocols(n):
    assert parzen_sigma_grid(n) is PARZEN_SIGMAS


@pytest.mark.parametrize("n", [10_001, 50_000, 10_000_000])
def test_grid_for_large_sample_counts(n):
    grid = parzen_sigma_grid(n)
    assert isinstance(grid, tuple) and all(type(s) is float for s in grid)
    assert len(grid) == 19 and grid[0] == 0.01 and grid[-1] == 1.0
    assert grid[-len(PARZEN_SIGMAS) :] == PARZEN_SIGMAS  # the protocol's values, bit for bit
    assert all(a < b for a, b in zip(grid, grid[1:], strict=False))  # ascending
    steps = np.diff(np.log10(grid))
    np.testing.assert_allclose(steps, 1 / 9, rtol=1e-12)  # PARZEN_SIGMAS's step
    np.testing.assert_allclose(grid, np.logspace(-2, 0, 19), rtol=1e-15)


@pytest.mark.parametrize("n", [0, -5, 1.5, True, "10"])
def test_grid_bad_sample_count(n):
    _one_line_value_error(lambda: parzen_sigma_grid(n), "n_samples")


def test_sigma_on_edge():
    grid = parzen_sigma_grid(10**7)
    assert sigma_on_edge(grid[0], grid) and sigma_on_edge(grid[-1], grid)
    assert not any(sigma_on_edge(s, grid) for s in grid[1:-1])
    assert sigma_on_edge(PARZEN_SIGMAS[0], PARZEN_SIGMAS)  # 0.1: the small-n grid's edge
    assert not sigma_on_edge(PARZEN_SIGMAS[0], grid)
    assert sigma_on_edge(float(f"{PARZEN_SIGMAS[-1]:.12g}"), PARZEN_SIGMAS)  # read back
    assert sigma_on_edge(float(f"{grid[0]:.12g}"), list(reversed(grid)))  # order does not matter
    assert sigma_on_edge(0.3, [0.3])
    assert not sigma_on_edge(0.2, [0.1, 0.3])  # between the edges, even if not on the grid


# --------------------------------------------------------------------------------------------
# The torch evaluator
# --------------------------------------------------------------------------------------------


def _torch_chunks(samples):
    """Numpy arrays and tensors mixed, of uneven sizes, one empty."""
    parts = _uneven(samples)
    return [torch.from_numpy(np.ascontiguousarray(p)) if k % 2 else p for k, p in enumerate(parts)]


@pytest.mark.parametrize("name", DATA)
def test_torch_cpu_equals_numpy(name):
    samples, points = DATA[name]
    got = parzen_log_likelihood_torch(_torch_chunks(samples), points, SIGMAS, "cpu")
    assert got.shape == (len(SIGMAS), len(points)) and got.dtype == np.float64
    numpy_ll = parzen_log_likelihood_sigmas(_uneven(samples), points, SIGMAS)
    bound = _bounds(samples, points, SIGMAS)
    assert np.all(np.abs(got - _reference(name)) <= bound)
    assert np.all(np.abs(got - numpy_ll) <= 2 * bound)  # both within the bound of the reference
    got64 = parzen_log_likelihood_torch(
        _torch_chunks(samples), points, SIGMAS, "cpu", dtype=np.float64
    )
    np.testing.assert_allclose(got64, _reference(name), rtol=1e-12, atol=1e-9)


def test_torch_single_sigma_and_blocking():
    rng = np.random.default_rng(5)
    samples, points = rng.random((50, 6)), rng.random((13, 6))
    want = ref.parzen_ll_loops(samples, points, 0.2)
    for batch_size, sample_chunk in [(1, 1), (4, 7), (13, 50), (100, 3)]:
        got = parzen_log_likelihood_torch(
            [samples[:20], samples[20:]],
            points,
            [0.2],
            "cpu",
            batch_size=batch_size,
            sample_chunk=sample_chunk,
            dtype=np.float64,
        )
        assert got.shape == (1, 13)
        np.testing.assert_allclose(got[0], want, rtol=1e-12)


def test_torch_takes_integer_images():
    rng = np.random.default_rng(8)
    samples = rng.integers(0, 256, (60, 2, 3)).astype(np.uint8)
    points = rng.integers(0, 256, (7, 6)).astype(np.float64)
    want = ref.parzen_ll_loops(samples, points, 40.0)
    got = parzen_log_likelihood_torch(
        [torch.from_numpy(samples)], points, [40.0], "cpu", dtype=np.float64
    )
    np.testing.assert_allclose(got[0], want, rtol=1e-12)


def test_torch_pins_ieee_float32_and_restores_the_callers_setting():
    matmul = torch.backends.cuda.matmul
    assert hasattr(matmul, "fp32_precision"), "this torch has the per-backend API"
    seen = []
    samples, points = DATA["gauss-5"]

    def chunks():
        seen.append(matmul.fp32_precision)  # read while the evaluator runs
        yield samples

    saved = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        parzen_log_likelihood_torch(chunks(), points, [0.5], "cpu")
        assert seen == ["ieee"]
        assert matmul.fp32_precision == "tf32"
        with pytest.raises(ValueError):  # restored on an error too
            parzen_log_likelihood_torch([samples, samples[:, :2]], points, [0.5], "cpu")
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = saved


@cuda
@pytest.mark.parametrize("name", DATA)
def test_torch_cuda_equals_numpy_cuda(name):
    samples, points = DATA[name]
    bound = _bounds(samples, points, SIGMAS)
    numpy_ll = parzen_log_likelihood_sigmas(_uneven(samples), points, SIGMAS)
    on_device = [torch.from_numpy(np.ascontiguousarray(c)).cuda() for c in _uneven(samples)]
    for chunks in (_torch_chunks(samples), on_device):
        got = parzen_log_likelihood_torch(chunks, points, SIGMAS, "cuda")
        assert np.all(np.abs(got - _reference(name)) <= bound)
        assert np.all(np.abs(got - numpy_ll) <= 2 * bound)
    got64 = parzen_log_likelihood_torch(on_device, points, SIGMAS, "cuda", dtype=np.float64)
    np.testing.assert_allclose(got64, _reference(name), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Bad input: one-line ValueError
# --------------------------------------------------------------------------------------------

_S, _P = np.random.default_rng(0).random((5, 3)), np.random.default_rng(1).random((4, 3))
_NAN = _S.copy()
_NAN[2, 1] = np.nan


def _numpy(chunks, points, sigmas, **kw):
    return parzen_log_likelihood_sigmas(chunks, points, sigmas, **kw)


def _torch(chunks, points, sigmas, **kw):
    return parzen_log_likelihood_torch(chunks, points, sigmas, "cpu", **kw)


def _select(chunks, points, sigmas, **kw):
    return select_parzen_sigma_streaming(chunks, points, sigmas, **kw)


BAD = {
    "empty sigmas": (lambda f: f([_S], _P, []), "sigmas"),
    "2-D sigmas": (lambda f: f([_S], _P, [[0.1, 0.2]]), "sigmas"),
    "text sigmas": (lambda f: f([_S], _P, ["a"]), "sigma"),
    "zero sigma": (lambda f: f([_S], _P, [0.1, 0.0]), "sigma"),
    "negative sigma": (lambda f: f([_S], _P, [-0.1]), "sigma"),
    "nan sigma": (lambda f: f([_S], _P, [float("nan")]), "sigma"),
    "inf sigma": (lambda f: f([_S], _P, [float("inf")]), "sigma"),
    "one array": (lambda f: f(_S, _P, [0.2]), "iterable"),
    "not iterable": (lambda f: f(5, _P, [0.2]), "iterable"),
    "no samples": (lambda f: f([], _P, [0.2]), "no samples"),
    "only empty chunks": (lambda f: f([_S[:0]], _P, [0.2]), "no samples"),
    "dimension": (lambda f: f([_S, np.ones((2, 4))], _P, [0.2]), "chunk 1"),
    "nan chunk": (lambda f: f([_S, _NAN], _P, [0.2]), "chunk 1.*NaN"),
    "text chunk": (lambda f: f([np.array([["a", "b", "c"]])], _P, [0.2]), "chunk 0.*numeric"),
    "empty points": (lambda f: f([_S], np.empty((0, 3)), [0.2]), "empty"),
    "nan points": (lambda f: f([_S], _NAN, [0.2]), "NaN"),
    "bad dtype": (lambda f: f([_S], _P, [0.2], dtype=np.float16), "dtype"),
    "bad batch": (lambda f: f([_S], _P, [0.2], batch_size=0), "batch_size"),
    "bad chunk": (lambda f: f([_S], _P, [0.2], sample_chunk=-3), "sample_chunk"),
}
NUMPY_ONLY = {"bad threads": (lambda f: f([_S], _P, [0.2], threads=0), "threads")}
TORCH_ONLY = {
    "one tensor": (lambda f: f(torch.from_numpy(_S), _P, [0.2]), "iterable"),
    "nan tensor": (lambda f: f([torch.from_numpy(_NAN)], _P, [0.2]), "chunk 0.*NaN"),
    "complex tensor": (lambda f: f([torch.ones(2, 3, dtype=torch.complex64)], _P, [0.2]), "real"),
    "scalar tensor": (lambda f: f([torch.tensor(1.0)], _P, [0.2]), "scalar"),
    "tensor dimension": (lambda f: f([torch.ones(2, 4)], _P, [0.2]), "chunk 0.*dimension"),
}


@pytest.mark.parametrize("case", {**BAD, **NUMPY_ONLY})
@pytest.mark.parametrize("fn", [_numpy, _select])
def test_bad_input_numpy(fn, case):
    call, match = {**BAD, **NUMPY_ONLY}[case]
    _one_line_value_error(lambda: call(fn), match)


@pytest.mark.parametrize("case", {**BAD, **TORCH_ONLY})
def test_bad_input_torch(case):
    call, match = {**BAD, **TORCH_ONLY}[case]
    _one_line_value_error(lambda: call(_torch), match)


def test_bad_device():
    _one_line_value_error(
        lambda: parzen_log_likelihood_torch([_S], _P, [0.2], "nodevice"), "device"
    )


@pytest.mark.parametrize("grid", [[], [[0.1]], [0.1, -0.2]])
def test_sigma_on_edge_bad_grid(grid):
    _one_line_value_error(lambda: sigma_on_edge(0.1, grid), "sigma")


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), "x"])
def test_sigma_on_edge_bad_sigma(sigma):
    _one_line_value_error(lambda: sigma_on_edge(sigma, PARZEN_SIGMAS), "sigma")


def test_threads_are_the_callers():
    # A trial passes its CPU count; the result does not depend on it.
    samples, points = DATA["gauss-5"]
    results = [
        parzen_log_likelihood_sigmas([samples], points, SIGMAS, threads=t, dtype=np.float64)
        for t in (1, 2, 5)
    ]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-13)


def test_the_process_s_blas_threads_do_not_change_a_bit():
    """The evaluator pins BLAS to its own thread count: a Ray worker (OMP_NUM_THREADS=1) and a
    pytest or notebook process (every core) score a trial identically. Without the pin,
    OpenBLAS's threaded sgemm gave other last bits on this project's AMD EPYC."""
    from threadpoolctl import threadpool_limits

    from bench import metrics

    rng = np.random.default_rng(0)
    samples, points = rng.random((2000, 784), dtype=np.float32), rng.random((300, 784), dtype=np.float32)
    out = {}
    for blas in (1, 2):
        with threadpool_limits(limits=blas, user_api="blas"):
            out[blas] = (metrics.parzen_log_likelihood(samples, points, 0.2, threads=1),
                         metrics.parzen_log_likelihood(samples, points, 0.2, threads=2))
    assert np.array_equal(out[1][0], out[2][0]) and np.array_equal(out[1][1], out[2][1])
