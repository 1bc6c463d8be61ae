"""Slow, independent implementations of bench.metrics and bench.parzen, for the tests only.

Written differently from the fast code on purpose: plain Python loops and float64, no matrix
products, no norm expansion, no shared helpers with bench.metrics or bench.parzen.
"""

from __future__ import annotations

import math

import numpy as np


def _rows(x) -> list[list[float]]:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(a.shape[0], -1).tolist()


def parzen_ll_loops(samples, points, sigma: float) -> np.ndarray:
    """Parzen log-likelihood as a double loop over points and samples, squared distances summed
    coordinate by coordinate, logmeanexp with a max shift in math.exp / math.log."""
    mus = _rows(samples)
    xs = _rows(points)
    d = len(xs[0])
    out = []
    for x in xs:
        exponents = []
        for mu in mus:
            sq = 0.0
            for k in range(d):
                diff = x[k] - mu[k]
                sq += diff * diff
            exponents.append(-sq / (2.0 * sigma * sigma))
        shift = max(exponents)
        total = 0.0
        for e in exponents:
            total += math.exp(e - shift)
        log_mean = shift + math.log(total) - math.log(len(mus))
        out.append(log_mean - 0.5 * d * math.log(2.0 * math.pi * sigma * sigma))
    return np.array(out)


def parzen_ll_rowwise(samples, points, sigma: float) -> np.ndarray:
    """The same in float64 numpy, one test point at a time, from explicit differences (x - mu):
    fast enough for 784-D checks on a few hundred points, and free of the norm-expansion
    cancellation the fast code has to manage."""
    mus = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    xs = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    d = xs.shape[1]
    out = np.empty(xs.shape[0])
    for i, x in enumerate(xs):
        diff = mus - x
        e = -(diff * diff).sum(axis=1) / (2.0 * sigma * sigma)
        shift = e.max()
        out[i] = shift + math.log(math.fsum(np.exp(e - shift))) - math.log(mus.shape[0])
    return out - 0.5 * d * math.log(2.0 * math.pi * sigma * sigma)


def classification_error_loops(probs, labels) -> float:
    wrong = 0
    for row, y in zip(np.asarray(probs).tolist(), np.asarray(labels).tolist(), strict=True):
        best = 0
        for k in range(1, len(row)):
            if row[k] > row[best]:  # strict: the first of equal maxima wins
                best = k
        wrong += best != y
    return 100.0 * wrong / len(labels)


def _assign(probs) -> list[int]:
    out = []
    for row in np.asarray(probs).tolist():
        best = 0
        for k in range(1, len(row)):
            if row[k] > row[best]:
                best = k
        out.append(best)
    return out


def clustering_error_loops(probs_valid, labels_valid, probs_test, labels_test) -> float:
    """The paper's rule: loop over clusters, find the validation example with the largest
    q(y_i|x), give the cluster its label; then score the test points one by one."""
    pv = np.asarray(probs_valid).tolist()
    yv = np.asarray(labels_valid).tolist()
    n_clusters = len(pv[0])
    cluster_label = {}
    for i in range(n_clusters):
        best_n = 0
        for n in range(1, len(pv)):
            if pv[n][i] > pv[best_n][i]:
                best_n = n
        cluster_label[i] = yv[best_n]
    wrong = 0
    yt = np.asarray(labels_test).tolist()
    for cluster, y in zip(_assign(probs_test), yt, strict=True):
        wrong += cluster_label[cluster] != y
    return 100.0 * wrong / len(yt)


def clustering_error_majority_loops(probs_train, labels_train, probs_test, labels_test) -> float:
    """Majority label per cluster from the training split, counted with dicts; an empty cluster
    has no label and its test points are errors; label ties go to the smallest label."""
    members: dict[int, dict[int, int]] = {}
    for cluster, y in zip(_assign(probs_train), np.asarray(labels_train).tolist(), strict=True):
        votes = members.setdefault(cluster, {})
        votes[y] = votes.get(y, 0) + 1
    cluster_label = {}
    for cluster, votes in members.items():
        top = max(votes.values())
        cluster_label[cluster] = min(y for y, v in votes.items() if v == top)
    yt = np.asarray(labels_test).tolist()
    wrong = 0
    for cluster, y in zip(_assign(probs_test), yt, strict=True):
        wrong += cluster_label.get(cluster) != y
    return 100.0 * wrong / len(yt)


def clustering_error_hungarian_bruteforce(probs_test, labels_test, n_classes: int) -> float:
    """Best one-to-one cluster -> class map by trying every permutation (small K only)."""
    from itertools import permutations

    assigned = _assign(probs_test)
    yt = np.asarray(labels_test).tolist()
    counts = [[0] * n_classes for _ in range(n_classes)]
    for cluster, y in zip(assigned, yt, strict=True):
        counts[cluster][y] += 1
    best = 0
    for perm in permutations(range(n_classes)):
        best = max(best, sum(counts[c][perm[c]] for c in range(n_classes)))
    return 100.0 * (1.0 - best / len(yt))


def parzen_ll_rowwise_sigmas(samples, points, sigmas) -> np.ndarray:
    """parzen_ll_rowwise for several sigmas, shape (len(sigmas), n_points): the squared
    distances of each point from explicit differences once, then one float64 logmeanexp (max
    shift, math.fsum) per sigma."""
    mus = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    xs = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    d = xs.shape[1]
    out = np.empty((len(sigmas), xs.shape[0]))
    for i, x in enumerate(xs):
        diff = mus - x
        sq = (diff * diff).sum(axis=1)
        for k, sigma in enumerate(sigmas):
            e = -sq / (2.0 * sigma * sigma)
            shift = e.max()
            out[k, i] = shift + math.log(math.fsum(np.exp(e - shift))) - math.log(mus.shape[0])
    for k, sigma in enumerate(sigmas):
        out[k] -= 0.5 * d * math.log(2.0 * math.pi * sigma * sigma)
    return out


def parzen_fp32_error_bound(samples, points, sigma: float) -> np.ndarray:
    """The float32 error model stated in bench/parzen.py, in nats, per point, shape (n_points,):
    2^-20 ((||x - c||^2 + max ||mu - c||^2) / (2 sigma^2) + log2(n) + 1), c the mean of the
    points (rounding of the float32 scores, then of the exp and the sum over n samples); the
    bound tests/test_metrics.py checks."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    s = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    c = p.mean(axis=0)
    scale = (((p - c) ** 2).sum(1) + ((s - c) ** 2).sum(1).max()) / (2 * sigma * sigma)
    return 2.0**-20 * (scale + math.log2(len(s)) + 1)
