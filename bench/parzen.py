"""Parzen window log-likelihood of held-out data, in nats (Table 1 of Makhzani et al. 2015).

Follows the GAN paper's public protocol (goodfeli/adversarial, parzen_ll.py):
`parzen_log_likelihood`, `parzen_log_likelihood_streaming` (the 10M-sample column),
`select_parzen_sigma` over PARZEN_SIGMAS, `parzen_summary`, `parzen_over_folds` (TFD).
bench.metrics lists these in EVALUATORS beside the error metrics and re-exports them.

Every function checks its inputs and raises ValueError with one line saying what is wrong.
Depends on numpy only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from bench.checks import check_positive_int

# The GAN protocol's sigma grid: numpy.logspace(-1, 0, 10) (parzen_ll.py defaults
# sigma_start=-1, sigma_end=0, cross_val=10), chosen on 1,000 validation images. A tuple of
# floats: TrialConfig.parzen_sigmas defaults to it, and trial ids hash it.
PARZEN_SIGMAS = tuple(float(s) for s in np.logspace(-1, 0, 10))

# Test points per matrix-product block, and samples per block. One block of scores is
# batch_size * sample_chunk numbers of `dtype` (2048 x 10000 x 4 bytes = 80 MB; two of them with
# threads > 1). Each product repacks its whole sample block, so smaller point blocks cost more:
# 1024 measured ~5 % slower at 10K x 10K x 784.
_BATCH_SIZE = 2048
_SAMPLE_CHUNK = 10_000
# Rows of a score block handled at once by the elementwise passes, sized so that the rows stay in
# the L2 cache between the passes (about 1 MB of float32).
_L2_ELEMENTS = 1 << 18


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_rows(name: str, x) -> np.ndarray:
    """(n, ...) numeric array -> (n, d) view or copy; 1-D input is n points of dimension 1."""
    a = np.asarray(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name} must have a leading axis of points, got a scalar")
    if a.shape[0] == 0 or a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {a.dtype}")
    a = a.reshape(a.shape[0], -1)  # (n, d): flatten images
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    return s


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


# --------------------------------------------------------------------------------------------
# Parzen window (Table 1)
# --------------------------------------------------------------------------------------------
#
# log p(x) = logmeanexp_j( -||x - mu_j||^2 / (2 sigma^2) ) - (d/2) log(2 pi sigma^2)
#
# as theano_parzen in parzen_ll.py, with the mu_j the model's samples. The squared distances come
# from matrix products (||x||^2 + ||mu||^2 - 2 x.mu), one per block of test points x samples, and
# the logsumexp over samples is kept per test point as a running (max, sum) in float64, so any
# number of samples streams through in chunks. Two changes keep the float32 products accurate:
#
# 1. Both sets are centred on the mean of the test points before the product. The expansion
#    cancels badly when distances are small against the norms (MNIST: ||x||^2 ~ 100); centring
#    makes the norms about the size of the distances. The test points' mean, not the samples',
#    because it is known before the first chunk of a stream arrives.
# 2. The largest term of each row's logsumexp, which decides the result when sigma is small, is
#    recomputed exactly in float64 from the original vectors (one (b, d) difference per block).
#    float32 then only carries the differences to that term, whose errors are weighted by the
#    terms' shares of the sum. A test point that equals a sample gets that term exactly.
#
# Precision, float32 (the default). Error model, in nats, checked by tests/test_metrics.py:
#     |error| <= 2^-20 * ( (||x - c||^2 + max_j ||mu_j - c||^2) / (2 sigma^2) + log2(n) + 1 )
# (rounding of the float32 scores, then of the exp and the sum over n samples; c is the centre).
# Measured against a float64 reference from explicit differences (x - mu), 300-500 test points,
# 3,000-5,000 samples, sigma in {0.01, 0.1, 0.17, 0.3, 1}, six kinds of data: at most 4.1 * 2^-24
# times the first term of the bracket. On real MNIST (784-D, sigma 0.1-1): max error 2.5e-4 nats,
# at most 2.2e-7 of the size of the exponents (|log-mean-exp term|, which the normaliser cancels
# down to log p(x)); the mean log-likelihood within 4e-9 relative; per point within 1.9e-6 of
# |log p(x)| at sigma = 0.17, more where log p(x) is near 0 (no inexact method has a relative
# bound there). So float32 meets a 1e-6 relative bar for the reported means and relative to the
# exponents, not for every single point: use dtype=np.float64 (<= 1e-12 relative to the size of
# the exponents, about 2x the time) where that matters. Low-dimensional data with small sigma
# (2-D Gaussian, sigma = 0.01: norms ~1e4 times the neighbour distances) loses more, up to 4e-4
# relative to log p(x); it is cheap there, so use float64.
# DEVIATION: parzen_ll.py evaluates the same formula in Theano's float32 from explicit
# differences; ours differs from it by float32 rounding only (it is closer to the exact value).
#
# Speed. ||mu - c||^2 / (2 sigma^2) rides in the product as one extra column, and
# ||x - c||^2 / (2 sigma^2) is a per-row constant that a logsumexp over samples does not need, so
# the elementwise work per score is argmax, subtract, clamp, exp, sum, on rows that stay in the L2
# cache, split over threads and overlapped with the next block's product.
# tests/benchmarks/test_bench_metrics.py times it against a bare float32 matmul of the same shapes:
# 10K x 10K x 784 on the 2-core dev machine (Xeon, AVX-512, 2 BLAS threads + 2 workers, load
# ~1-2): 0.71 s vs 0.50 s, 0.71 of the matmul's rate (target 0.70). Where the time goes, in CPU
# seconds with one thread: product 0.85, blocking and padding +0.07, elementwise passes +0.18,
# checks, centring and the exact top terms +0.05.


class _ParzenState:
    """Running logsumexp per test point over any number of sample chunks."""

    def __init__(self, points, sigma: float, batch_size: int, dtype: np.dtype, threads: int):
        self.points = _as_rows("points", points)  # (N, d), original values for the exact terms
        self.n_points, self.d = self.points.shape
        self.sigma = sigma
        self.inv_2s2 = 1.0 / (2.0 * sigma * sigma)
        self.batch_size = batch_size
        self.dtype = dtype
        self.threads = threads
        self.exp_floor = dtype.type(math.log(np.finfo(dtype).tiny) + 0.5)
        # Centre and scale in `dtype` arithmetic: each stored value is then one or two roundings
        # from exact, the same as rounding a float64 result, with no (N, d) float64 temporary.
        self.centre = self.points.mean(axis=0, dtype=np.float64).astype(dtype)  # (d,)
        # Rows padded with zeros to a multiple of 64 bytes: BLAS runs measurably faster on
        # aligned rows than on the 785 of MNIST's 784 pixels plus one.
        self.width = -(-(self.d + 1) // 16) * 16
        # (N, width): [ (x - c) / sigma^2 , -1 , 0 ... ]
        self.xs = np.zeros((self.n_points, self.width), dtype=dtype)
        np.subtract(self.points, self.centre, out=self.xs[:, : self.d], casting="same_kind")
        self.xs[:, : self.d] *= dtype.type(2.0 * self.inv_2s2)
        self.xs[:, self.d] = -1.0
        self.run_max = np.full(self.n_points, -np.inf)  # float64 running max of the exponents
        self.run_sum = np.zeros(self.n_points)  # float64 sum of exp(exponent - run_max)
        self.n_samples = 0
        self._buffers: list[np.ndarray] = []

    def add(self, chunk: np.ndarray, pools: _Pools | None) -> None:
        """Fold one (c, d) chunk of samples into the running sums."""
        c = chunk.shape[0]
        # (c, width): [ mu - c , ||mu - c||^2 / (2 sigma^2) , 0 ... ]
        ms = np.zeros((c, self.width), dtype=self.dtype)
        centred = ms[:, : self.d]
        np.subtract(chunk, self.centre, out=centred, casting="same_kind")
        # The norms of the stored (rounded) vectors, in float64, so the expansion is consistent.
        ms[:, self.d] = np.einsum("ij,ij->i", centred, centred, dtype=np.float64) * self.inv_2s2
        n_buffers = 1 if pools is None else 2
        if len(self._buffers) < n_buffers or self._buffers[0].size < self.batch_size * c:
            self._buffers = [
                np.empty(self.batch_size * c, dtype=self.dtype) for _ in range(n_buffers)
            ]
        starts = range(0, self.n_points, self.batch_size)

        def product(k: int) -> np.ndarray:
            i = starts[k]
            b = min(self.batch_size, self.n_points - i)
            # (b, c) scores g_ij = a_ij + ||x_i - c||^2 / (2 sigma^2), a_ij the exponent. A
            # contiguous view of a flat buffer, so that matmul writes it through BLAS.
            g = self._buffers[k % n_buffers][: b * c].reshape(b, c)
            return np.matmul(self.xs[i : i + b], ms.T, out=g)

        if pools is None:
            for k, i in enumerate(starts):
                g = product(k)
                self._reduce(g, 0, g.shape[0], i, chunk)
        else:
            # A pipeline: BLAS computes block k + 1 (into the other buffer) while the workers
            # reduce block k. BLAS threads then work instead of spinning between calls, and
            # numpy's ufuncs release the GIL, so the elementwise passes use every core.
            upcoming = pools.product.submit(product, 0)
            for k, i in enumerate(starts):
                g = upcoming.result()
                if k + 1 < len(starts):
                    upcoming = pools.product.submit(product, k + 1)
                b = g.shape[0]
                step = -(-b // self.threads)
                jobs = [  # workers own disjoint rows: no shared writes
                    pools.reduce.submit(self._reduce, g, lo, min(lo + step, b), i, chunk)
                    for lo in range(0, b, step)
                ]
                for job in jobs:
                    job.result()
        self.n_samples += c

    def _reduce(self, g: np.ndarray, lo: int, hi: int, offset: int, chunk: np.ndarray) -> None:
        """logsumexp over rows lo:hi of a score block, merged into the running sums."""
        n = hi - lo
        best = np.empty(n, dtype=np.intp)
        sums = np.empty(n, dtype=np.float64)
        sub_rows = max(1, _L2_ELEMENTS // g.shape[1])
        for r in range(lo, hi, sub_rows):
            gr = g[r : min(r + sub_rows, hi)]  # L2-sized rows: the four passes reuse the cache
            idx = np.argmax(gr, axis=1)
            top = gr[np.arange(gr.shape[0]), idx]
            np.subtract(gr, top[:, None], out=gr)
            # Clamp at the smallest exponent whose exp is a normal number: numpy's exp is ~4x
            # slower on arguments that underflow, and most do (they are hundreds of nats down).
            # The clamped terms add at most n * 1.2e-38 to a sum that is at least 1.
            np.maximum(gr, self.exp_floor, out=gr)
            np.exp(gr, out=gr)
            sums[r - lo : r - lo + gr.shape[0]] = gr.sum(axis=1)
            best[r - lo : r - lo + gr.shape[0]] = idx
        # The largest exponent of each row, exactly, in float64 from the original vectors.
        rows = slice(offset + lo, offset + hi)
        diff = np.subtract(self.points[rows], chunk[best], dtype=np.float64)  # (n, d)
        top_exact = -np.einsum("ij,ij->i", diff, diff) * self.inv_2s2
        old_max = self.run_max[rows]
        new_max = np.maximum(old_max, top_exact)
        self.run_sum[rows] = self.run_sum[rows] * np.exp(old_max - new_max) + sums * np.exp(
            top_exact - new_max
        )
        self.run_max[rows] = new_max

    def result(self) -> np.ndarray:
        if self.n_samples == 0:
            raise ValueError("sample_chunks yielded no samples")
        log_norm = 0.5 * self.d * math.log(2.0 * math.pi * self.sigma**2)
        return self.run_max + np.log(self.run_sum) - math.log(self.n_samples) - log_norm


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Pools(NamedTuple):
    product: ThreadPoolExecutor  # one thread that calls BLAS
    reduce: ThreadPoolExecutor  # `threads` workers for the elementwise passes


def _run_parzen(state: _ParzenState, chunks: Iterable[np.ndarray]) -> np.ndarray:
    if state.threads == 1:
        for chunk in chunks:
            state.add(chunk, None)
    else:
        with ThreadPoolExecutor(1) as product, ThreadPoolExecutor(state.threads) as reduce:
            for chunk in chunks:
                state.add(chunk, _Pools(product, reduce))
    return state.result()


def _split(samples: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for j in range(0, samples.shape[0], size):
        yield samples[j : j + size]


def _checked_stream(sample_chunks: Iterable, d: int, size: int) -> Iterator[np.ndarray]:
    for k, chunk in enumerate(sample_chunks):
        a = np.asarray(chunk)
        if a.ndim >= 1 and a.shape[0] == 0:
            continue  # an empty chunk adds nothing
        a = _as_rows(f"sample chunk {k}", a)
        if a.shape[1] != d:
            raise ValueError(f"sample chunk {k} has dimension {a.shape[1]} but points have {d}")
        yield from _split(a, size)


def _parzen_state(points, sigma, batch_size, sample_chunk, dtype, threads) -> _ParzenState:
    sigma = _check_sigma(sigma)
    batch_size = check_positive_int("batch_size", batch_size)
    check_positive_int("sample_chunk", sample_chunk)
    threads = _default_threads() if threads is None else check_positive_int("threads", threads)
    return _ParzenState(points, sigma, batch_size, _check_dtype(dtype), threads)


def parzen_log_likelihood(
    samples,
    points,
    sigma: float,
    *,
    batch_size: int = _BATCH_SIZE,
    sample_chunk: int = _SAMPLE_CHUNK,
    dtype=np.float32,
    threads: int | None = None,
) -> np.ndarray:
    """Per-point Parzen-window log-likelihood in nats, shape (n_points,), float64.

    samples (n, ...) are the kernel centres (the model's samples), points (N, ...) the data to
    score; trailing axes are flattened. Memory beyond the inputs: two blocks of batch_size *
    sample_chunk numbers of `dtype` (160 MB at most by default; one block when threads=1) plus
    a padded copy of the points and of one sample chunk.
    dtype=np.float64 runs everything in float64: slower, and exact to ~1e-12 where float32 has
    the error model in the note above. threads: workers for the elementwise passes (default:
    the CPUs this process may use); the products use numpy's BLAS threads (OPENBLAS_NUM_THREADS).
    """
    samples = _as_rows("samples", samples)
    state = _parzen_state(points, sigma, batch_size, sample_chunk, dtype, threads)
    if samples.shape[1] != state.d:
        raise ValueError(f"samples have dimension {samples.shape[1]} but points have {state.d}")
    return _run_parzen(state, _split(samples, sample_chunk))


def parzen_log_likelihood_streaming(
    sample_chunks: Iterable,
    points,
    sigma: float,
    *,
    batch_size: int = _BATCH_SIZE,
    sample_chunk: int = _SAMPLE_CHUNK,
    dtype=np.float32,
    threads: int | None = None,
) -> np.ndarray:
    """Parzen log-likelihood over samples that arrive in chunks (e.g. a generator decoding prior
    draws), for the 10M-sample column. Equal to parzen_log_likelihood on the concatenated samples.

    Keeps one running logsumexp and the running sample count per test point and holds one chunk at
    a time; a chunk longer than sample_chunk is split, so memory stays bounded whatever the total
    or per-chunk sample count. Empty chunks are skipped; a stream with no samples is a ValueError.
    """
    if isinstance(sample_chunks, np.ndarray) or not isinstance(sample_chunks, Iterable):
        raise ValueError(
            "sample_chunks must be an iterable of (c, d) arrays (for one array use "
            "parzen_log_likelihood)"
        )
    state = _parzen_state(points, sigma, batch_size, sample_chunk, dtype, threads)
    return _run_parzen(state, _checked_stream(sample_chunks, state.d, sample_chunk))


def select_parzen_sigma(samples, validation, sigmas=PARZEN_SIGMAS, **kwargs) -> float:
    """The sigma with the best mean log-likelihood of the validation points (first on a tie), as
    cross_validate_sigma in parzen_ll.py; the protocol uses sigmas=PARZEN_SIGMAS and 1,000
    validation images. kwargs go to parzen_log_likelihood."""
    grid = np.asarray(sigmas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {grid.shape}")
    for s in grid:
        _check_sigma(s)
    samples = _as_rows("samples", samples)
    validation = _as_rows("validation", validation)
    means = [parzen_log_likelihood(samples, validation, float(s), **kwargs).mean() for s in grid]
    return float(grid[int(np.argmax(means))])


def parzen_summary(ll) -> tuple[float, float]:
    """Mean and standard error of per-point log-likelihoods: (mean, std / sqrt(N)).

    The std has ddof=0, as parzen_ll.py computes it (ll.std() / numpy.sqrt(N), numpy's default),
    so that our numbers and the paper's are the same statistic. (ddof=1 differs by sqrt(N/(N-1)),
    1.00005 at N = 10,000.)
    """
    a = np.asarray(ll, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"ll must be a non-empty 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("ll contains NaN or inf")
    return float(a.mean()), float(a.std(ddof=0) / math.sqrt(a.size))


def parzen_over_folds(per_fold_means: Sequence[float]) -> tuple[float, float]:
    """TFD: (mean over folds, std over folds / sqrt(n_folds)) of the per-fold mean log-likelihoods.

    As the GAN paper reports TFD: the standard error is across folds, with sigma chosen per fold
    on that fold's validation split (the caller does that with select_parzen_sigma).
    """
    a = np.asarray(per_fold_means, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"per_fold_means must be 1-D, got shape {a.shape}")
    if a.size < 2:
        raise ValueError(f"need at least 2 folds for a standard error across folds, got {a.size}")
    if not np.isfinite(a).all():
        raise ValueError("per_fold_means contains NaN or inf")
    # PAPER-GAP: neither paper gives the ddof of the std across folds. ddof=0, numpy's default and
    # the one parzen_ll.py uses for the per-point standard error. (ddof=1 is sqrt(5/4) = 1.118
    # times larger for TFD's 5 folds.)
    return float(a.mean()), float(a.std(ddof=0) / math.sqrt(a.size))
