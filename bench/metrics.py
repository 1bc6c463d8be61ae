"""Evaluators of the paper (Makhzani et al. 2015) as pure functions on numpy arrays.

Table 1   Parzen window log-likelihood, in bench/parzen.py (re-exported here):
          `parzen_log_likelihood`, `parzen_log_likelihood_streaming`, `select_parzen_sigma`,
          `parzen_summary`, `parzen_over_folds`, PARZEN_SIGMAS; for many samples and on a GPU
          `parzen_log_likelihood_sigmas`, `select_parzen_sigma_streaming`,
          `parzen_log_likelihood_torch`, with the helpers `parzen_sigma_grid`, `sigma_on_edge`.
Table 2   Semi-supervised classification: `classification_error`.
Table 3   Unsupervised clustering, the paper's rule: `clustering_error`; the rules other papers use,
          under their own names: `clustering_error_majority`, `clustering_error_hungarian`.
Sec. 7    Dimensionality reduction: the clustering rules applied to the q(y|x) of the
          dimensionality-reduction model (`dim_reduction_error` is `clustering_error`); with labels
          (semi-supervised dimensionality reduction) the error is `classification_error`.

EVALUATORS names every one of them. Every function checks its inputs and raises ValueError with
one line saying what is wrong. Depends on numpy and scipy only at import (the torch evaluator
imports torch when it is called).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.checks import check_positive_int
from bench.parzen import (
    PARZEN_SIGMAS,
    parzen_log_likelihood,
    parzen_log_likelihood_sigmas,
    parzen_log_likelihood_streaming,
    parzen_log_likelihood_torch,
    parzen_over_folds,
    parzen_sigma_grid,
    parzen_summary,
    select_parzen_sigma,
    select_parzen_sigma_streaming,
    sigma_on_edge,
)

__all__ = [
    "EVALUATORS",
    "METRICS_VERSION",
    "PARZEN_SIGMAS",
    "classification_error",
    "clustering_error",
    "clustering_error_hungarian",
    "clustering_error_majority",
    "dim_reduction_error",
    "parzen_log_likelihood",
    "parzen_log_likelihood_sigmas",
    "parzen_log_likelihood_streaming",
    "parzen_log_likelihood_torch",
    "parzen_over_folds",
    "parzen_sigma_grid",
    "parzen_summary",
    "select_parzen_sigma",
    "select_parzen_sigma_streaming",
    "sigma_on_edge",
]

# Goes into every result row, so rows made by an older evaluator can be found and recomputed.
METRICS_VERSION = "1"


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_probs(name: str, probs) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, K), got shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {p.shape})")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {p.dtype}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or inf")
    return p


def _check_labels(name: str, labels, n: int, probs_name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but {probs_name} has {n} rows")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise ValueError(f"{name} must hold integer class ids")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    return y


# --------------------------------------------------------------------------------------------
# Classification and clustering errors (Tables 2, 3; Section 7)
# --------------------------------------------------------------------------------------------
# Ties in an argmax go to the lowest index (numpy's argmax).
# PAPER-GAP: the paper does not say how ties are broken; with float probabilities they are rare.


def classification_error(probs, labels) -> float:
    """Percent of points whose argmax over classes differs from the label (Table 2).

    probs (n, K) class probabilities (or any scores: only the argmax is used), labels (n,) in [0, K).
    """
    p = _check_probs("probs", probs)
    y = _check_labels("labels", labels, p.shape[0], "probs")
    return float(100.0 * np.mean(np.argmax(p, axis=1) != y))


def clustering_error(probs_valid, labels_valid, probs_test, labels_test) -> float:
    """Percent test error of the paper's clustering rule (Table 3, Section 5).

    For each cluster i, the validation example x_n with the largest q(y_i | x_n) gives its label
    to the whole cluster i; each test point goes to cluster argmax q(y|x) and takes that cluster's
    label. probs_* (n, K) are q(y|x) over K clusters; labels_* (n,) integer class ids.
    """
    pv = _check_probs("probs_valid", probs_valid)
    yv = _check_labels("labels_valid", labels_valid, pv.shape[0], "probs_valid")
    pt = _check_probs("probs_test", probs_test)
    yt = _check_labels("labels_test", labels_test, pt.shape[0], "probs_test")
    if pv.shape[1] != pt.shape[1]:
        raise ValueError(f"probs_valid has {pv.shape[1]} clusters but probs_test has {pt.shape[1]}")
    # (K,): the label of each cluster's most confident validation example
    cluster_label = yv[np.argmax(pv, axis=0)]
    predicted = cluster_label[np.argmax(pt, axis=1)]
    return float(100.0 * np.mean(predicted != yt))


def clustering_error_majority(probs_train, labels_train, probs_test, labels_test) -> float:
    """Percent test error when each cluster takes the majority label of the training points
    assigned to it (argmax q(y|x)); a common rule in later papers, not the AAE paper's.

    Ties between labels go to the smallest label. A cluster that no training point falls in has no
    label, and every test point assigned to it counts as an error.
    """
    # PAPER-GAP (of the rule's users): the empty-cluster case is rarely stated. Counting it as an
    # error is the conservative choice: the alternative (the overall majority label) would credit
    # the cluster with a label it never learned from its own members.
    pr = _check_probs("probs_train", probs_train)
    yr = _check_labels("labels_train", labels_train, pr.shape[0], "probs_train")
    pt = _check_probs("probs_test", probs_test)
    yt = _check_labels("labels_test", labels_test, pt.shape[0], "probs_test")
    k = pr.shape[1]
    if pt.shape[1] != k:
        raise ValueError(f"probs_train has {k} clusters but probs_test has {pt.shape[1]}")
    classes, y_index = np.unique(yr, return_inverse=True)  # any integer labels -> 0..L-1
    counts = np.zeros((k, classes.size), dtype=np.int64)  # (K, L) cluster x label
    np.add.at(counts, (np.argmax(pr, axis=1), y_index), 1)
    cluster_label = classes[np.argmax(counts, axis=1)]
    empty = counts.sum(axis=1) == 0
    assigned = np.argmax(pt, axis=1)
    correct = (cluster_label[assigned] == yt) & ~empty[assigned]
    return float(100.0 * (1.0 - np.mean(correct)))


def clustering_error_hungarian(probs_test, labels_test, *, n_classes: int | None = None) -> float:
    """Percent error under the one-to-one cluster-to-class map that maximises agreement on the
    test set itself (scipy.optimize.linear_sum_assignment); a common rule in later papers.

    Labels are class ids in [0, n_classes); n_classes defaults to max(labels) + 1. Defined only
    when the number of clusters K equals n_classes.
    """
    pt = _check_probs("probs_test", probs_test)
    yt = _check_labels("labels_test", labels_test, pt.shape[0], "probs_test")
    k = pt.shape[1]
    if yt.min() < 0:
        raise ValueError("labels_test must be class ids >= 0")
    n_cls = int(yt.max()) + 1 if n_classes is None else check_positive_int("n_classes", n_classes)
    if yt.max() >= n_cls:
        raise ValueError(f"labels_test has class {int(yt.max())} but n_classes is {n_cls}")
    if n_cls != k:
        raise ValueError(
            f"the Hungarian rule needs as many clusters as classes, got {k} clusters and {n_cls} classes"
        )
    confusion = np.zeros((k, k), dtype=np.int64)  # (cluster, class)
    np.add.at(confusion, (np.argmax(pt, axis=1), yt), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(100.0 * (1.0 - confusion[rows, cols].sum() / yt.size))


# Section 7: the dimensionality-reduction model's cluster head gives q(y|x) like the clustering
# model's, and its error is the clustering error of those assignments; with labels
# (semi-supervised dimensionality reduction) the error is classification_error.
# PAPER-GAP: Section 7 does not restate how clusters get labels; we use Section 5's rule.
dim_reduction_error = clustering_error


# The one registry of evaluators, by name; tests/test_metrics.py checks that each is under test.
EVALUATORS = {
    "parzen_log_likelihood": parzen_log_likelihood,
    "parzen_log_likelihood_streaming": parzen_log_likelihood_streaming,
    "select_parzen_sigma": select_parzen_sigma,
    "parzen_log_likelihood_sigmas": parzen_log_likelihood_sigmas,
    "select_parzen_sigma_streaming": select_parzen_sigma_streaming,
    "parzen_log_likelihood_torch": parzen_log_likelihood_torch,
    "parzen_summary": parzen_summary,
    "parzen_over_folds": parzen_over_folds,
    "classification_error": classification_error,
    "clustering_error": clustering_error,
    "clustering_error_majority": clustering_error_majority,
    "clustering_error_hungarian": clustering_error_hungarian,
    "dim_reduction_error": dim_reduction_error,
}
