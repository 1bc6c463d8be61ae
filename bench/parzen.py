"""Parzen window log-likelihood of held-out data, in nats (Table 1 of Makhzani et al. 2015).

Follows the GAN paper's public protocol (goodfeli/adversarial, parzen_ll.py):
`parzen_log_likelihood`, `parzen_log_likelihood_streaming` (the 10M-sample column),
`select_parzen_sigma` over PARZEN_SIGMAS, `parzen_summary`, `parzen_over_folds` (TFD).
bench.metrics lists these in EVALUATORS beside the error metrics and re-exports them.
For many samples: `parzen_log_likelihood_sigmas` (every sigma of a grid in one pass over a stream),
`select_parzen_sigma_streaming`, `parzen_sigma_grid` (the grid extended downward for large sample
counts), `sigma_on_edge`, and `parzen_log_likelihood_torch` (the same on a torch device, for a
trial that has a GPU).

Every function checks its inputs and raises ValueError with one line saying what is wrong.
Depends on numpy only at import; the torch evaluator imports torch when it is called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

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
# Threads. `threads` is also the BLAS thread count (_run_parzen pins it): the bits are a
# function of the inputs and `threads`, never of the calling process's BLAS setting. Results
# for different `threads` agree within the error model above, not always bit for bit
# (OpenBLAS's threaded sgemm may sum in another order); a trial passes its own threads.


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
    # BLAS gets the evaluator's thread count, whatever the process had (Ray workers run with
    # OMP_NUM_THREADS=1, a pytest or notebook process with every core): OpenBLAS's threaded
    # sgemm sums in another order on some CPUs (measured: an AMD EPYC run as "Haswell" gives
    # other last bits for 2 threads than for 1), so the same trial would score differently.
    with threadpool_limits(limits=state.threads, user_api="blas"):
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
    A trial passes its own CPU count (its Ray resources): the default counts the CPUs of the
    process's affinity mask, which under Ray is usually the whole host, not the trial's share.
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
    validation images. kwargs go to parzen_log_likelihood (threads= among them: pass the trial's
    CPUs, see parzen_log_likelihood).

    Tie rule: "first on a tie" in the order of `sigmas`. On an ascending grid (PARZEN_SIGMAS and
    every parzen_sigma_grid) that is the smaller sigma, the rule of select_parzen_sigma_streaming
    and of bench/trial.py's 10M-sample selection (max over (mean, -sigma)); the two differ only
    for a grid out of ascending order whose means tie exactly."""
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


# --------------------------------------------------------------------------------------------
# Many samples: every sigma in one pass, a grid for large sample counts
# --------------------------------------------------------------------------------------------
#
# The 10M-sample column decodes its samples as a stream. Choosing sigma with one pass per sigma
# decodes them once per sigma; parzen_log_likelihood_sigmas scores every sigma of the grid from
# one pass, so the column costs two passes: validation for every sigma, then test for the chosen.
#
# One product serves every sigma: the single-sigma state at sigma = 1 computes
#     h_ij = (x_i - c).(mu_j - c) - ||mu_j - c||^2 / 2
# (its scalings by 1/sigma^2 = 1 and by 1/(2 sigma^2) = 1/2 are exact), and sigma's exponent is
# a_ij = (h_ij - ||x_i - c||^2 / 2) / sigma^2. Per sigma, the elementwise pass scales h_ij - h_top
# by 1/sigma^2 (one float32 rounding more than the single-sigma pass, which scales before the
# product; the error model of the note above holds for both). The nearest sample, which gives
# the exact top term, is the argmax of h whatever sigma is, so its float64 distance is computed
# once per point. Where 1/sigma^2 is a power of two the two paths do the same arithmetic and agree
# bit for bit (tests/test_parzen.py checks it).
# Cost per chunk: one product plus, per sigma, four elementwise passes (scale, clamp, exp, sum);
# tests/benchmarks/test_bench_metrics.py times it against one single-sigma pass per sigma.


def _check_sigmas(sigmas) -> tuple[float, ...]:
    try:
        grid = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"sigmas must be a non-empty 1-D sequence of numbers, got {sigmas!r}"
        ) from None
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {grid.shape}")
    return tuple(_check_sigma(s) for s in grid)


class _ParzenSigmasState(_ParzenState):
    """Running logsumexp per sigma and test point, from one product per block for all sigmas."""

    def __init__(self, points, sigmas, batch_size: int, dtype: np.dtype, threads: int):
        super().__init__(points, 1.0, batch_size, dtype, threads)  # the product gives h (above)
        self.sigmas = sigmas
        # The same expressions as the single-sigma state's, so the arithmetic matches it.
        self.inv_2s2s = np.array([1.0 / (2.0 * s * s) for s in sigmas])  # (S,) float64
        self.scales = [dtype.type(2.0 * v) for v in self.inv_2s2s]  # 1/sigma^2 in `dtype`
        self.run_max = np.full((len(sigmas), self.n_points), -np.inf)
        self.run_sum = np.zeros((len(sigmas), self.n_points))

    def _reduce(self, g: np.ndarray, lo: int, hi: int, offset: int, chunk: np.ndarray) -> None:
        """logsumexp over rows lo:hi of a block of h, for every sigma, merged into the sums."""
        n = hi - lo
        best = np.empty(n, dtype=np.intp)
        sums = np.empty((len(self.sigmas), n), dtype=np.float64)
        sub_rows = max(1, _L2_ELEMENTS // g.shape[1])
        scaled = np.empty((min(sub_rows, n), g.shape[1]), dtype=self.dtype)
        for r in range(lo, hi, sub_rows):
            gr = g[r : min(r + sub_rows, hi)]
            k = gr.shape[0]
            idx = np.argmax(gr, axis=1)
            top = gr[np.arange(k), idx]
            np.subtract(gr, top[:, None], out=gr)  # h - h_top, shared by every sigma
            t = scaled[:k]
            for s, scale in enumerate(self.scales):
                np.multiply(gr, scale, out=t)
                np.maximum(t, self.exp_floor, out=t)  # as _ParzenState._reduce: no underflow
                np.exp(t, out=t)
                sums[s, r - lo : r - lo + k] = t.sum(axis=1)
            best[r - lo : r - lo + k] = idx
        rows = slice(offset + lo, offset + hi)
        diff = np.subtract(self.points[rows], chunk[best], dtype=np.float64)  # (n, d)
        sq = np.einsum("ij,ij->i", diff, diff)
        top_exact = -sq[None, :] * self.inv_2s2s[:, None]  # (S, n)
        old_max = self.run_max[:, rows]
        new_max = np.maximum(old_max, top_exact)
        self.run_sum[:, rows] = self.run_sum[:, rows] * np.exp(old_max - new_max) + sums * np.exp(
            top_exact - new_max
        )
        self.run_max[:, rows] = new_max

    def result(self) -> np.ndarray:
        if self.n_samples == 0:
            raise ValueError("sample_chunks yielded no samples")
        log_norm = np.array([0.5 * self.d * math.log(2.0 * math.pi * s**2) for s in self.sigmas])
        return self.run_max + np.log(self.run_sum) - math.log(self.n_samples) - log_norm[:, None]


def _check_chunk_stream(sample_chunks) -> None:
    if isinstance(sample_chunks, np.ndarray) or not isinstance(sample_chunks, Iterable):
        raise ValueError(
            "sample_chunks must be an iterable of (c, d) arrays (for one array pass [samples])"
        )


def parzen_log_likelihood_sigmas(
    sample_chunks: Iterable,
    points,
    sigmas: Sequence[float],
    *,
    batch_size: int = _BATCH_SIZE,
    sample_chunk: int = _SAMPLE_CHUNK,
    dtype=np.float32,
    threads: int | None = None,
) -> np.ndarray:
    """Per-point Parzen log-likelihood for every sigma, from one pass over a stream of samples:
    shape (len(sigmas), n_points), float64, row s for sigmas[s].

    Row s equals parzen_log_likelihood_streaming(same chunks, points, sigmas[s]) within the
    float32 error model of the note above (bit for bit where 1/sigma^2 is a power of two; to
    ~1e-13 with dtype=np.float64). sample_chunks, batch_size, sample_chunk, dtype and threads are
    as for parzen_log_likelihood_streaming (one array: pass [samples]); threads: pass the trial's
    CPUs. Memory as for one sigma plus 2 * len(sigmas) float64 numbers per point.
    """
    _check_chunk_stream(sample_chunks)
    grid = _check_sigmas(sigmas)
    batch_size = check_positive_int("batch_size", batch_size)
    check_positive_int("sample_chunk", sample_chunk)
    threads = _default_threads() if threads is None else check_positive_int("threads", threads)
    state = _ParzenSigmasState(points, grid, batch_size, _check_dtype(dtype), threads)
    return _run_parzen(state, _checked_stream(sample_chunks, state.d, sample_chunk))


def _best_sigma(grid: Sequence[float], means: Sequence[float]) -> float:
    """Highest mean validation log-likelihood; exact ties go to the smaller sigma (the rule of
    bench/trial.py's `max(scores, key=lambda s: (scores[s], -s))`)."""
    k = max(range(len(grid)), key=lambda i: (means[i], -grid[i]))
    return float(grid[k])


def select_parzen_sigma_streaming(
    sample_chunks: Iterable, validation, sigmas: Sequence[float] = PARZEN_SIGMAS, **kwargs
) -> tuple[float, np.ndarray]:
    """(sigma, mean validation log-likelihood per sigma) from one pass over a stream of samples.

    The chosen sigma has the highest mean log-likelihood of the validation points; an exact tie
    goes to the smaller sigma whatever the order of `sigmas` (on an ascending grid the same choice
    as select_parzen_sigma). The means, shape (len(sigmas),), are in the order of `sigmas`.
    kwargs go to parzen_log_likelihood_sigmas (threads=: the trial's CPUs). The stream is read
    once: score the test points with the chosen sigma in a second pass over the same draws.
    """
    grid = _check_sigmas(sigmas)
    validation = _as_rows("validation", validation)
    means = parzen_log_likelihood_sigmas(sample_chunks, validation, grid, **kwargs).mean(axis=1)
    return _best_sigma(grid, means), means


# PAPER-GAP: the GAN protocol's grid, numpy.logspace(-1, 0, 10), was set for 10K samples, and
# neither paper says which grid the 10M-sample column used. The best sigma shrinks as the sample
# count grows: measured on real MNIST it falls from 0.169 (10K samples) to 0.151 (50K), a power
# law n^-0.07 that reaches about 0.10 at 10M, the lower edge of the protocol's grid (a fit to two
# points, so the true value may well lie below it). Above 10K samples the grid therefore goes on
# down with the same log step (10^(1/9), 10 points from 0.1 to 1) by a full decade, to 0.01:
# 19 sigmas, PARZEN_SIGMAS among them bit for bit. A chosen sigma on either edge of its grid is
# flagged (sigma_on_edge).
_LARGE_SAMPLE_COUNT = 10_000
_SIGMAS_BELOW = tuple(float(s) for s in np.logspace(-2, -1, 10)[:-1])  # 0.01 ... 0.0774
_PARZEN_SIGMAS_LARGE = _SIGMAS_BELOW + PARZEN_SIGMAS


def parzen_sigma_grid(n_samples: int) -> tuple[float, ...]:
    """The sigma grid for a Parzen window of n_samples kernels, ascending: PARZEN_SIGMAS (0.1 to
    1) up to 10,000 samples, the same log step on down to 0.01 above that (note above)."""
    n = check_positive_int("n_samples", n_samples)
    return PARZEN_SIGMAS if n <= _LARGE_SAMPLE_COUNT else _PARZEN_SIGMAS_LARGE


def sigma_on_edge(sigma: float, grid: Sequence[float]) -> bool:
    """Whether sigma is the smallest or the largest of its grid: the likelihood may peak outside
    the grid, so a row that chose it is flagged. Compared to 1e-9 relative, so that a sigma read
    back from a results file with fewer digits is still found."""
    s = _check_sigma(sigma)
    values = _check_sigmas(grid)
    return any(math.isclose(s, edge, rel_tol=1e-9) for edge in (min(values), max(values)))


# --------------------------------------------------------------------------------------------
# On a torch device (a trial that has a GPU)
# --------------------------------------------------------------------------------------------
#
# The same computation as parzen_log_likelihood_sigmas, in torch on the trial's device: centre on
# the test points' mean, one float32 product per block for every sigma, h - h_top scaled per sigma,
# clamp, exp, sum, the top term exactly in float64, a running (max, sum) per sigma and point in
# float64. Differences from the numpy path are float32 rounding only (the norm term is added after
# the product instead of riding in it, and the sum over samples is taken in float64), so it meets
# the same error model. Matmuls run in IEEE float32: TF32 (CUDA) and bf16 (oneDNN) are pinned off
# for the call and the caller's settings restored after.


@contextmanager
def _ieee_float32_matmuls(torch) -> Iterator[None]:
    """IEEE float32 matmuls on CUDA (no TF32) and on the CPU (no bf16) inside the block, the
    caller's settings restored after. Uses the per-backend fp32_precision of torch >= 2.9 where
    it exists (there reading the legacy allow_tf32 flag raises once the new API has been used),
    else allow_tf32 and set_float32_matmul_precision. Process-wide, as torch's flags are."""
    backends = [torch.backends.cuda.matmul, getattr(torch.backends, "mkldnn", None)]
    backends[1] = getattr(backends[1], "matmul", None)
    new_api = [b for b in backends if hasattr(b, "fp32_precision")]
    if new_api:
        saved = [b.fp32_precision for b in new_api]
        try:
            for b in new_api:
                b.fp32_precision = "ieee"
            yield
        finally:
            for b, value in zip(new_api, saved, strict=True):
                b.fp32_precision = value
    else:
        precision = torch.get_float32_matmul_precision()
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.set_float32_matmul_precision("highest")
            torch.backends.cuda.matmul.allow_tf32 = False
            yield
        finally:
            torch.set_float32_matmul_precision(precision)
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32


def _torch_chunks(torch, sample_chunks, d: int, size: int, device) -> Iterator:
    """The stream as (c, d) tensors on `device`, each checked as _checked_stream checks arrays
    (a tensor's NaN check runs on its device: one host sync per chunk)."""
    for k, chunk in enumerate(sample_chunks):
        name = f"sample chunk {k}"
        if torch.is_tensor(chunk):
            if chunk.ndim == 0:
                raise ValueError(f"{name} must have a leading axis of points, got a scalar")
            if chunk.shape[0] == 0:
                continue  # an empty chunk adds nothing
            if chunk.is_complex():
                raise ValueError(f"{name} must be real, got dtype {chunk.dtype}")
            t = chunk.reshape(chunk.shape[0], -1).to(device)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or inf")
        else:
            a = np.asarray(chunk)
            if a.ndim >= 1 and a.shape[0] == 0:
                continue
            t = torch.from_numpy(np.ascontiguousarray(_as_rows(name, a))).to(device)
        if t.shape[1] != d:
            raise ValueError(f"{name} has dimension {t.shape[1]} but points have {d}")
        yield from t.split(size)


def parzen_log_likelihood_torch(
    sample_chunks: Iterable,
    points,
    sigmas: Sequence[float],
    device,
    *,
    batch_size: int = _BATCH_SIZE,
    sample_chunk: int = _SAMPLE_CHUNK,
    dtype=np.float32,
) -> np.ndarray:
    """parzen_log_likelihood_sigmas on a torch device: shape (len(sigmas), n_points), float64
    (numpy, on the host), row s for sigmas[s]; for one sigma pass [sigma].

    sample_chunks: an iterable of (c, ...) numpy arrays or tensors on any device (a decoder's
    output can stay where it is); points: a numpy array. Equal to the numpy evaluator within the
    float32 error model (tests/test_parzen.py), in IEEE float32 (no TF32) or, with
    dtype=np.float64, in float64. Device memory: two (batch_size, sample_chunk) blocks of `dtype`,
    the points in `dtype` and float64, one chunk.
    """
    import torch

    if torch.is_tensor(sample_chunks):
        raise ValueError(
            "sample_chunks must be an iterable of (c, d) arrays (for one tensor pass [samples])"
        )
    _check_chunk_stream(sample_chunks)
    grid = _check_sigmas(sigmas)
    batch_size = check_positive_int("batch_size", batch_size)
    sample_chunk = check_positive_int("sample_chunk", sample_chunk)
    np_dtype = _check_dtype(dtype)
    t_dtype = torch.float32 if np_dtype == np.float32 else torch.float64
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"device must name a torch device, got {device!r} ({e})") from None
    points = _as_rows("points", points)
    n_points, d = points.shape
    # Centred points on the host in `dtype`, as _ParzenState stores them.
    centre = points.mean(axis=0, dtype=np.float64).astype(np_dtype)
    xs_host = np.empty((n_points, d), dtype=np_dtype)
    np.subtract(points, centre, out=xs_host, casting="same_kind")
    inv_2s2s = [1.0 / (2.0 * s * s) for s in grid]
    scales = [float(np_dtype.type(2.0 * v)) for v in inv_2s2s]
    exp_floor = float(math.log(np.finfo(np_dtype).tiny) + 0.5)
    log_norm = [0.5 * d * math.log(2.0 * math.pi * s**2) for s in grid]

    with torch.no_grad(), _ieee_float32_matmuls(torch):
        xs = torch.from_numpy(xs_host).to(device)
        exact_points = torch.from_numpy(points).to(device=device, dtype=torch.float64)
        centre_t = torch.from_numpy(centre).to(device)
        inv_t = torch.tensor(inv_2s2s, dtype=torch.float64, device=device)[:, None]  # (S, 1)
        run_max = torch.full((len(grid), n_points), -math.inf, dtype=torch.float64, device=device)
        run_sum = torch.zeros((len(grid), n_points), dtype=torch.float64, device=device)
        n_samples = 0
        for chunk in _torch_chunks(torch, sample_chunks, d, sample_chunk, device):
            m = chunk.to(t_dtype) - centre_t  # (c, d)
            half_norm = (0.5 * (m.to(torch.float64) ** 2).sum(dim=1)).to(t_dtype)  # (c,)
            exact_chunk = chunk.to(torch.float64)
            for i in range(0, n_points, batch_size):
                rows = slice(i, min(i + batch_size, n_points))
                h = torch.addmm(-half_norm[None, :], xs[rows], m.T)  # (b, c)
                best = h.argmax(dim=1)
                h -= h.gather(1, best[:, None])
                scaled = torch.empty_like(h)
                sums = torch.empty((len(grid), h.shape[0]), dtype=torch.float64, device=device)
                for s, scale in enumerate(scales):
                    torch.mul(h, scale, out=scaled)
                    scaled.clamp_(min=exp_floor).exp_()
                    sums[s] = scaled.sum(dim=1, dtype=torch.float64)
                diff = exact_points[rows] - exact_chunk[best]
                top_exact = -(diff * diff).sum(dim=1)[None, :] * inv_t  # (S, b)
                old_max = run_max[:, rows]
                new_max = torch.maximum(old_max, top_exact)
                run_sum[:, rows] = run_sum[:, rows] * torch.exp(
                    old_max - new_max
                ) + sums * torch.exp(top_exact - new_max)
                run_max[:, rows] = new_max
            n_samples += chunk.shape[0]
        if n_samples == 0:
            raise ValueError("sample_chunks yielded no samples")
        out = run_max + torch.log(run_sum) - math.log(n_samples)
        out = out.cpu().numpy()
    return out - np.array(log_norm)[:, None]
