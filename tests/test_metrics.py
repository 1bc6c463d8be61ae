"""bench.metrics and bench.parzen against slow independent references (tests/reference.py) and
known answers.

The tables below are built from EVALUATORS; a new evaluator is under test once it is added to one
of them, and test_every_evaluator_is_covered fails until it is.
"""

from __future__ import annotations

import gzip
import math
import tracemalloc

import numpy as np
import pytest
import reference as ref

from bench.metrics import EVALUATORS, METRICS_VERSION, PARZEN_SIGMAS

E = EVALUATORS
U32 = 2.0**-24  # float32 unit roundoff


def _stream(chunks):
    """Samples as a generator of chunks, the way a decoder would hand them over."""
    return lambda samples, points, sigma, **kw: E["parzen_log_likelihood_streaming"](
        (samples[a:b] for a, b in chunks(len(samples))), points, sigma, **kw
    )


def _thirds(n):
    edges = [0, n // 3, n // 3 + 1, n]  # uneven, one chunk of size 1
    return list(zip(edges[:-1], edges[1:], strict=True))


# Every function (samples, points, sigma, **kw) -> per-point log-likelihood.
PARZEN_LL = {
    "parzen_log_likelihood": E["parzen_log_likelihood"],
    "parzen_log_likelihood_streaming": _stream(_thirds),
}

# Every function (probs, labels) -> percent error.
CLASSIFICATION = {"classification_error": E["classification_error"]}

# Every clustering rule as (probs_fit, labels_fit, probs_test, labels_test) -> percent, with its
# reference, and whether it needs as many clusters as classes. "fit" is the validation split for
# the paper's rule, the training split for the majority rule; the Hungarian rule uses test only.
CLUSTERING_RULES = {
    "clustering_error": (E["clustering_error"], ref.clustering_error_loops, False),
    "dim_reduction_error": (E["dim_reduction_error"], ref.clustering_error_loops, False),
    "clustering_error_majority": (
        E["clustering_error_majority"],
        ref.clustering_error_majority_loops,
        False,
    ),
    "clustering_error_hungarian": (
        lambda pf, yf, pt, yt: E["clustering_error_hungarian"](pt, yt),
        lambda pf, yf, pt, yt: ref.clustering_error_hungarian_bruteforce(pt, yt, pt.shape[1]),
        True,
    ),
}

# Tested in tests/test_parzen.py (the many-sample and torch evaluators).
PARZEN_OTHERS = {"select_parzen_sigma", "parzen_summary", "parzen_over_folds",
                 "parzen_log_likelihood_sigmas", "select_parzen_sigma_streaming",
                 "parzen_log_likelihood_torch"}


def test_every_evaluator_is_covered():
    covered = set(PARZEN_LL) | set(CLASSIFICATION) | set(CLUSTERING_RULES) | PARZEN_OTHERS
    assert set(EVALUATORS) <= covered, f"add to a table in this module: {set(EVALUATORS) - covered}"
    assert covered <= set(EVALUATORS)
    assert isinstance(METRICS_VERSION, str) and METRICS_VERSION
    assert all(callable(f) for f in EVALUATORS.values())


def test_parzen_names_have_one_definition():
    # bench.metrics re-exports bench.parzen, and the trial config's default grid is the same object.
    import bench.config
    import bench.metrics
    import bench.parzen

    for name in [*PARZEN_LL, *PARZEN_OTHERS, "PARZEN_SIGMAS", "parzen_sigma_grid", "sigma_on_edge"]:
        assert getattr(bench.metrics, name) is getattr(bench.parzen, name), name
    assert bench.config.PARZEN_SIGMAS is bench.parzen.PARZEN_SIGMAS
    assert isinstance(PARZEN_SIGMAS, tuple) and all(type(s) is float for s in PARZEN_SIGMAS)


# --------------------------------------------------------------------------------------------
# Parzen window
# --------------------------------------------------------------------------------------------


def _log_norm(d: int, sigma: float) -> float:
    return 0.5 * d * math.log(2.0 * math.pi * sigma * sigma)


def _fp32_bound(samples, points, sigma):
    """The float32 error model in bench/parzen.py, in nats:
    2^-20 ((||x - c||^2 + max ||mu - c||^2) / (2 sigma^2) + log2(n) + 1), c the mean of the
    points: float32 rounding of the scores, plus that of the exp and the sum over n samples."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    s = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    c = p.mean(axis=0)
    scale = (((p - c) ** 2).sum(1) + ((s - c) ** 2).sum(1).max()) / (2 * sigma * sigma)
    return 16 * U32 * (scale + math.log2(len(s)) + 1)


def _mnist_like(rng, n, d=784):
    """Images in [0, 1] with MNIST's structure: a few prototypes, noise, many exact zeros."""
    proto = np.random.default_rng(7).random((10, d)) ** 4
    x = proto[rng.integers(0, 10, n)] + rng.normal(0.0, 0.3, (n, d))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("name", PARZEN_LL)
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 3, 2)])
@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_parzen_matches_double_loop(name, shape, sigma):
    rng = np.random.default_rng(abs(hash((shape, sigma))) % 2**32)
    samples = rng.random((25,) + shape)
    points = rng.random((6,) + shape)
    want = ref.parzen_ll_loops(samples, points, sigma)
    got64 = PARZEN_LL[name](samples, points, sigma, dtype=np.float64)
    assert got64.dtype == np.float64 and got64.shape == (6,)
    np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-12)
    got32 = PARZEN_LL[name](samples, points, sigma)
    assert got32.dtype == np.float64
    assert np.all(np.abs(got32 - want) <= _fp32_bound(samples, points, sigma) + 1e-12)


_REF_CACHE: dict = {}


def _rowwise(key, samples, points, sigma):
    if (key, sigma) not in _REF_CACHE:
        _REF_CACHE[key, sigma] = ref.parzen_ll_rowwise(samples, points, sigma)
    return _REF_CACHE[key, sigma]


def _datasets():
    rng = np.random.default_rng(3)
    return {
        "uniform": (
            rng.random((1500, 784), dtype=np.float32),
            rng.random((40, 784), dtype=np.float32),
        ),
        "mnist_like": (_mnist_like(rng, 1500), _mnist_like(rng, 40)),
    }


DATASETS = _datasets()


@pytest.mark.parametrize("name", PARZEN_LL)
@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0])
def test_parzen_784d_matches_float64_reference(name, data, sigma):
    """The paper's regime: 784-D images in [0, 1], sigma over the protocol's grid."""
    samples, points = DATASETS[data]
    want = _rowwise(data, samples, points, sigma)
    # The size of the numbers the computation holds: the log-mean-exp term and the normaliser,
    # which cancel to the (smaller) log-likelihood.
    size = np.abs(want) + abs(_log_norm(784, sigma))
    got64 = PARZEN_LL[name](samples, points, sigma, dtype=np.float64)
    assert np.max(np.abs(got64 - want) / size) < 1e-12
    got32 = PARZEN_LL[name](samples, points, sigma)
    assert np.max(np.abs(got32 - want) / size) < 1e-6
    assert np.all(np.abs(got32 - want) <= _fp32_bound(samples, points, sigma))
    assert abs(got32.mean() - want.mean()) <= 1e-6 * abs(want.mean())


def _read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255


def test_parzen_real_mnist_matches_float64_reference(mnist_dir):
    images = _read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    samples, points = images[:1500], images[5000:5040]
    for sigma in (0.1, 0.17):
        want = ref.parzen_ll_rowwise(samples, points, sigma)
        got = E["parzen_log_likelihood"](samples, points, sigma)
        size = np.abs(want) + abs(_log_norm(784, sigma))
        assert np.max(np.abs(got - want) / size) < 1e-6
        assert abs(got.mean() - want.mean()) <= 1e-6 * abs(want.mean())


@pytest.mark.parametrize("name", PARZEN_LL)
@pytest.mark.parametrize("d", [1, 5, 784])
@pytest.mark.parametrize("sigma", [0.1, 1.0, 7.0])
def test_one_kernel_at_its_centre(name, d, sigma):
    x = np.random.default_rng(d).random((1, d)) * 3
    want = -0.5 * d * math.log(2 * math.pi * sigma**2)
    for dtype in (np.float32, np.float64):
        got = PARZEN_LL[name](x, x, sigma, dtype=dtype)
        assert got.shape == (1,)
        assert abs(got[0] - want) <= 1e-12 * max(1.0, abs(want))


@pytest.mark.parametrize("name", PARZEN_LL)
def test_many_identical_kernels_are_one_kernel(name):
    x = np.full((1, 4), 0.25)
    want = -2 * math.log(2 * math.pi * 0.3**2)
    got = PARZEN_LL[name](np.repeat(x, 37, axis=0), x, 0.3, dtype=np.float64)
    assert abs(got[0] - want) < 1e-12


@pytest.mark.parametrize(
    "chunking",
    [
        pytest.param(lambda n: [(i, i + 1) for i in range(n)], id="size-1"),
        pytest.param(lambda n: [(0, 7), (7, 8), (8, 8), (8, 20), (20, n)], id="uneven-with-empty"),
        pytest.param(lambda n: [(0, n)], id="one-chunk"),
        pytest.param(lambda n: [(0, n - 1), (n - 1, n)], id="all-but-one"),
    ],
)
@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_streaming_equals_batch_path(chunking, sigma):
    rng = np.random.default_rng(11)
    samples = rng.random((45, 2, 5))
    points = rng.random((9, 2, 5))
    want = E["parzen_log_likelihood"](samples, points, sigma, dtype=np.float64)
    got = _stream(chunking)(samples, points, sigma, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    got32 = _stream(chunking)(samples, points, sigma)
    assert np.all(np.abs(got32 - want) <= _fp32_bound(samples, points, sigma))


@pytest.mark.parametrize("name", PARZEN_LL)
def test_blocking_does_not_change_the_result(name):
    rng = np.random.default_rng(5)
    samples, points = rng.random((50, 6)), rng.random((13, 6))
    want = ref.parzen_ll_loops(samples, points, 0.2)
    for batch_size, sample_chunk, threads in [(1, 1, 1), (4, 7, 2), (13, 50, 3), (100, 3, 1)]:
        got = PARZEN_LL[name](
            samples,
            points,
            0.2,
            batch_size=batch_size,
            sample_chunk=sample_chunk,
            threads=threads,
            dtype=np.float64,
        )
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_streaming_memory_does_not_grow_with_the_sample_count():
    points = np.random.default_rng(0).random((50, 40))

    def peak(n_chunks):
        def chunks():
            rng = np.random.default_rng(1)
            for _ in range(n_chunks):
                yield rng.random((500, 40))  # 160 kB each

        tracemalloc.start()
        E["parzen_log_likelihood_streaming"](chunks(), points, 0.5)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(4), peak(40)  # 0.64 MB vs 6.4 MB of samples in all
    assert large < 2 * small + 1_000_000


def test_streaming_splits_a_large_chunk():
    rng = np.random.default_rng(2)
    samples, points = rng.random((30, 3)), rng.random((4, 3))
    want = ref.parzen_ll_loops(samples, points, 0.4)
    got = E["parzen_log_likelihood_streaming"](
        [samples], points, 0.4, sample_chunk=4, dtype=np.float64
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("k", [0, 3, 9])
def test_select_parzen_sigma_constructed(k):
    # One kernel at the origin, validation points at distance r: the mean log-likelihood
    # -r^2 / (2 s^2) - (d/2) log(2 pi s^2) is concave in log s with its peak at s = r / sqrt(d).
    d = 6
    r = math.sqrt(d) * PARZEN_SIGMAS[k]
    directions = np.random.default_rng(k).normal(size=(40, d))
    validation = r * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    got = E["select_parzen_sigma"](np.zeros((1, d)), validation, PARZEN_SIGMAS)
    assert got == PARZEN_SIGMAS[k]
    assert isinstance(got, float)


def test_select_parzen_sigma_default_grid_and_ties():
    np.testing.assert_allclose(PARZEN_SIGMAS, np.logspace(-1, 0, 10))
    x = np.zeros((1, 2))
    assert E["select_parzen_sigma"](x, x) == PARZEN_SIGMAS[0]  # smaller sigma, higher peak
    assert E["select_parzen_sigma"](x, np.ones((3, 2)), [0.7, 0.7, 0.2]) == 0.7  # first of ties


def test_parzen_summary_known_values():
    mean, se = E["parzen_summary"](np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5
    assert se == pytest.approx(math.sqrt(1.25) / 2, rel=1e-15)  # ddof=0, as parzen_ll.py
    assert E["parzen_summary"]([5.0]) == (5.0, 0.0)


def test_parzen_over_folds_known_values():
    mean, se = E["parzen_over_folds"]([1.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1 / math.sqrt(2), rel=1e-15)  # std 1 (ddof=0)
    values = [2050.0, 2010.0, 2080.0, 2000.0, 2060.0]
    mean, se = E["parzen_over_folds"](values)
    assert mean == pytest.approx(2040.0)
    assert se == pytest.approx(np.std(values) / math.sqrt(5))
    assert E["parzen_over_folds"]([3.0] * 5) == (3.0, 0.0)


# --------------------------------------------------------------------------------------------
# Classification and clustering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_known_values(name):
    f = CLASSIFICATION[name]
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
    assert f(probs, [0, 1, 1, 2]) == 25.0
    assert f(probs, [0, 1, 0, 2]) == 0.0
    assert f(probs, [1, 0, 1, 0]) == 100.0
    assert f(np.array([[0.5, 0.5]]), [0]) == 0.0  # a tie goes to the lower class id
    assert isinstance(f(probs, [0, 1, 0, 2]), float)


@pytest.mark.parametrize("name", CLASSIFICATION)
@pytest.mark.parametrize("seed", range(3))
def test_classification_matches_loops(name, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(7), size=300)
    labels = rng.integers(0, 7, 300)
    assert CLASSIFICATION[name](probs, labels) == pytest.approx(
        ref.classification_error_loops(probs, labels), abs=1e-12
    )


def _structured(rng, n, n_clusters, n_classes, noise=1.5):
    """Cluster probabilities that depend on the label, imperfectly, plus the labels."""
    labels = rng.integers(0, n_classes, n)
    home = rng.integers(0, n_clusters, n_classes)
    logits = rng.normal(0.0, noise, (n, n_clusters))
    logits[np.arange(n), home[labels]] += 2.0
    probs = np.exp(logits)
    return probs / probs.sum(1, keepdims=True), labels


def _cases(square):
    return [(6, 6)] if square else [(6, 6), (16, 10), (4, 10)]


@pytest.mark.parametrize("name", CLUSTERING_RULES)
@pytest.mark.parametrize("seed", range(4))
def test_clustering_matches_loops(name, seed):
    rule, reference, square = CLUSTERING_RULES[name]
    for n_clusters, n_classes in _cases(square):
        rng = np.random.default_rng(seed)
        pf, yf = _structured(rng, 400, n_clusters, n_classes)
        pt, yt = _structured(rng, 500, n_clusters, n_classes)
        assert rule(pf, yf, pt, yt) == pytest.approx(reference(pf, yf, pt, yt), abs=1e-9)


def test_rules_differ_so_the_reference_checks_can_fail():
    """A rule swapped for another would be caught: on this data the references all disagree."""
    rng = np.random.default_rng(0)
    pf, yf = _structured(rng, 400, 6, 6, noise=2.5)
    pt, yt = _structured(rng, 500, 6, 6, noise=2.5)
    distinct = ("clustering_error", "clustering_error_majority", "clustering_error_hungarian")
    values = {round(CLUSTERING_RULES[n][1](pf, yf, pt, yt), 9) for n in distinct}
    assert len(values) == 3


def _one_hot_ish(rng, clusters, n_clusters):
    probs = rng.random((len(clusters), n_clusters)) * 0.1
    probs[np.arange(len(clusters)), clusters] += 1.0
    return probs / probs.sum(1, keepdims=True)


@pytest.mark.parametrize("name", CLUSTERING_RULES)
@pytest.mark.parametrize("seed", range(5))
def test_perfect_clustering_has_zero_error_under_any_permutation(name, seed):
    rule, _, square = CLUSTERING_RULES[name]
    rng = np.random.default_rng(seed)
    for per_class in [1] if square else [1, 2]:  # 10 clusters, or 20 (each class split in two)
        n_clusters = 10 * per_class
        perm = rng.permutation(n_clusters)  # cluster ids in any order
        yf, yt = np.repeat(np.arange(10), 30), rng.integers(0, 10, 500)
        yf = rng.permutation(yf)

        def clusters(y, perm=perm, per_class=per_class):
            return perm[y * per_class + rng.integers(0, per_class, len(y))]

        pf = _one_hot_ish(rng, clusters(yf), n_clusters)
        pt = _one_hot_ish(rng, clusters(yt), n_clusters)
        assert rule(pf, yf, pt, yt) == 0.0


@pytest.mark.parametrize("name", CLUSTERING_RULES)
@pytest.mark.parametrize("n_classes", [2, 10])
def test_random_clustering_has_chance_error(name, n_classes):
    rule, _, square = CLUSTERING_RULES[name]
    rng = np.random.default_rng(n_classes)
    n = 20_000
    pf, yf = rng.dirichlet(np.ones(n_classes), 2000), rng.integers(0, n_classes, 2000)
    pt, yt = rng.dirichlet(np.ones(n_classes), n), rng.integers(0, n_classes, n)
    p = 1 - 1 / n_classes
    sd = 100 * math.sqrt(p * (1 - p) / n)  # binomial std of the percent error
    # The Hungarian rule picks its map on the test set itself, which lowers the error by at most
    # sqrt(2 ln K / n) (expected max of K normals per cluster), about 1.5 points here.
    bias = 100 * math.sqrt(2 * math.log(n_classes) / n) if name.endswith("hungarian") else 0.0
    got = rule(pf, yf, pt, yt)
    assert 100 * p - bias - 5 * sd <= got <= 100 * p + 5 * sd


def test_paper_rule_uses_the_most_confident_validation_example():
    # Cluster 0 holds three validation points labelled 1 and one labelled 7, the most confident.
    pv = np.array([[0.6, 0.4], [0.7, 0.3], [0.65, 0.35], [0.99, 0.01], [0.1, 0.9]])
    yv = np.array([1, 1, 1, 7, 3])
    pt = np.array([[0.8, 0.2], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    yt = np.array([7, 7, 3, 3])
    assert E["clustering_error"](pv, yv, pt, yt) == 0.0  # cluster 0 -> 7, cluster 1 -> 3
    assert E["clustering_error_majority"](pv, yv, pt, yt) == 50.0  # cluster 0 -> 1 (majority)


def test_majority_rule_empty_cluster_counts_as_error():
    pr = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0]])  # cluster 2 stays empty
    yr = np.array([4, 4, 2])
    pt = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.0, 0.1, 0.9]])
    yt = np.array([4, 2, 4, 2])
    assert E["clustering_error_majority"](pr, yr, pt, yt) == 50.0


def test_majority_rule_tie_goes_to_the_smaller_label():
    pr = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    yr = np.array([5, 3, 5, 3, 9])
    pt = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert E["clustering_error_majority"](pr, yr, pt, np.array([3, 9])) == 0.0


def test_hungarian_needs_as_many_clusters_as_classes():
    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(16), 100), rng.integers(0, 10, 100)
    with pytest.raises(ValueError, match="as many clusters as classes"):
        E["clustering_error_hungarian"](probs, labels)
    # A test split that happens to miss the top class: say how many classes there are.
    probs = _one_hot_ish(rng, np.array([1, 0, 2, 1]), 4)
    assert E["clustering_error_hungarian"](probs, [0, 1, 2, 0], n_classes=4) == 0.0
    with pytest.raises(ValueError, match="as many clusters as classes"):
        E["clustering_error_hungarian"](probs, [0, 1, 2, 0])


# --------------------------------------------------------------------------------------------
# Bad input: ValueError with one line
# --------------------------------------------------------------------------------------------

_S, _P = np.random.default_rng(0).random((5, 3)), np.random.default_rng(1).random((4, 3))
_NAN = _S.copy()
_NAN[2, 1] = np.nan


def _one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


PARZEN_BAD = {
    "sigma zero": (lambda f: f(_S, _P, 0.0), "sigma"),
    "sigma negative": (lambda f: f(_S, _P, -0.1), "sigma"),
    "sigma nan": (lambda f: f(_S, _P, float("nan")), "sigma"),
    "sigma inf": (lambda f: f(_S, _P, float("inf")), "sigma"),
    "sigma text": (lambda f: f(_S, _P, "wide"), "sigma"),
    "no samples": (lambda f: f(np.empty((0, 3)), _P, 0.2), "empty|no samples"),
    "no points": (lambda f: f(_S, np.empty((0, 3)), 0.2), "points is empty"),
    "zero-width points": (lambda f: f(_S, np.empty((4, 0)), 0.2), "points is empty"),
    "scalar points": (lambda f: f(_S, np.float64(1.0), 0.2), "points"),
    "dimension mismatch": (lambda f: f(_S, np.ones((4, 5)), 0.2), "dimension"),
    "nan in samples": (lambda f: f(_NAN, _P, 0.2), "NaN"),
    "nan in points": (lambda f: f(_S, _NAN, 0.2), "NaN"),
    "text points": (lambda f: f(_S, np.array([["a", "b", "c"]]), 0.2), "numeric"),
    "bad dtype": (lambda f: f(_S, _P, 0.2, dtype=np.float16), "dtype"),
    "bad batch": (lambda f: f(_S, _P, 0.2, batch_size=0), "batch_size"),
    "bad chunk": (lambda f: f(_S, _P, 0.2, sample_chunk=-3), "sample_chunk"),
    "bad threads": (lambda f: f(_S, _P, 0.2, threads=0), "threads"),
}


@pytest.mark.parametrize("name", PARZEN_LL)
@pytest.mark.parametrize("case", PARZEN_BAD)
def test_parzen_bad_input(name, case):
    call, match = PARZEN_BAD[case]
    _one_line_value_error(lambda: call(PARZEN_LL[name]), match)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: E["parzen_log_likelihood_streaming"](_S, _P, 0.2), "iterable"),
        (lambda: E["parzen_log_likelihood_streaming"](5, _P, 0.2), "iterable"),
        (lambda: E["parzen_log_likelihood_streaming"]([], _P, 0.2), "no samples"),
        (lambda: E["parzen_log_likelihood_streaming"]([_S, np.ones((2, 4))], _P, 0.2), "chunk 1"),
        (lambda: E["parzen_log_likelihood_streaming"]([_S, _NAN], _P, 0.2), "chunk 1.*NaN"),
        (lambda: E["select_parzen_sigma"](_S, _P, []), "sigmas"),
        (lambda: E["select_parzen_sigma"](_S, _P, [0.1, -1.0]), "sigma"),
        (lambda: E["select_parzen_sigma"](_S, _P, [[0.1, 0.2]]), "sigmas"),
        (lambda: E["select_parzen_sigma"](_S, np.empty((0, 3))), "validation"),
        (lambda: E["parzen_summary"]([]), "non-empty"),
        (lambda: E["parzen_summary"]([[1.0, 2.0]]), "1-D"),
        (lambda: E["parzen_summary"]([1.0, float("nan")]), "NaN"),
        (lambda: E["parzen_over_folds"]([1.0]), "at least 2 folds"),
        (lambda: E["parzen_over_folds"]([1.0, float("nan")]), "NaN"),
        (lambda: E["parzen_over_folds"]([[1.0, 2.0]]), "1-D"),
    ],
)
def test_other_parzen_bad_input(call, match):
    _one_line_value_error(call, match)


_PROBS = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
_LAB = np.array([1, 0, 1])
_PROBS_NAN = _PROBS.copy()
_PROBS_NAN[1, 0] = np.nan

CLASSIFICATION_BAD = {
    "1-D probs": (lambda f: f(np.array([0.2, 0.8]), [1]), "2-D"),
    "3-D probs": (lambda f: f(np.ones((2, 2, 2)), [0, 1]), "2-D"),
    "length mismatch": (lambda f: f(_PROBS, [1, 0]), "3 rows"),
    "2-D labels": (lambda f: f(_PROBS, [[1, 0, 1]]), "1-D"),
    "nan": (lambda f: f(_PROBS_NAN, _LAB), "NaN"),
    "empty": (lambda f: f(np.empty((0, 2)), []), "empty"),
    "no classes": (lambda f: f(np.empty((3, 0)), _LAB), "empty"),
    "fractional labels": (lambda f: f(_PROBS, [0.5, 1, 0]), "integer"),
    "text labels": (lambda f: f(_PROBS, ["a", "b", "c"]), "integer"),
}


@pytest.mark.parametrize("name", CLASSIFICATION)
@pytest.mark.parametrize("case", CLASSIFICATION_BAD)
def test_classification_bad_input(name, case):
    call, match = CLASSIFICATION_BAD[case]
    _one_line_value_error(lambda: call(CLASSIFICATION[name]), match)


CLUSTERING_BAD = {
    "nan in test probs": (lambda f: f(_PROBS, _LAB, _PROBS_NAN, _LAB), "NaN"),
    "test length mismatch": (lambda f: f(_PROBS, _LAB, _PROBS, _LAB[:2]), "3 rows"),
    "1-D test probs": (lambda f: f(_PROBS, _LAB, _PROBS[0], _LAB[:1]), "2-D"),
    "empty test": (lambda f: f(_PROBS, _LAB, np.empty((0, 2)), []), "empty"),
    "2-D test labels": (lambda f: f(_PROBS, _LAB, _PROBS, _LAB[None]), "1-D"),
}
CLUSTERING_BAD_FIT = {  # rules that use a fitting split (validation / training)
    "nan in fit probs": (lambda f: f(_PROBS_NAN, _LAB, _PROBS, _LAB), "NaN"),
    "fit length mismatch": (lambda f: f(_PROBS, _LAB[:1], _PROBS, _LAB), "3 rows"),
    "empty fit": (lambda f: f(np.empty((0, 2)), [], _PROBS, _LAB), "empty"),
    "cluster count mismatch": (lambda f: f(np.ones((3, 3)) / 3, _LAB, _PROBS, _LAB), "clusters"),
}


@pytest.mark.parametrize(
    "name, case",
    [(n, c) for n in CLUSTERING_RULES for c in CLUSTERING_BAD]
    + [(n, c) for n in CLUSTERING_RULES if not n.endswith("hungarian") for c in CLUSTERING_BAD_FIT],
)
def test_clustering_bad_input(name, case):
    call, match = {**CLUSTERING_BAD, **CLUSTERING_BAD_FIT}[case]
    _one_line_value_error(lambda: call(CLUSTERING_RULES[name][0]), match)


def test_hungarian_bad_labels():
    _one_line_value_error(lambda: E["clustering_error_hungarian"](_PROBS, [1, -1, 0]), ">= 0")
    _one_line_value_error(
        lambda: E["clustering_error_hungarian"](_PROBS, [1, 0, 2], n_classes=2), "n_classes"
    )
