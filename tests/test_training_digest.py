"""TRAINING_VERSION is enforced (#19): a tiny config of every variant, trained on the CPU, gives
the digest committed for the current version; a silent change of the training numbers fails."""

from __future__ import annotations

import copy

import pytest

from aae_core import priors
from bench import metrics, versions


@pytest.fixture(scope="module")
def committed():
    return versions.read_digest()


def test_versions_are_public_and_the_digest_is_for_this_version(committed):
    assert metrics.METRICS_VERSION == versions.METRICS_VERSION
    assert committed["training_version"] == versions.TRAINING_VERSION
    from aae_core.variants import VARIANTS

    assert set(committed["variants"]) == set(VARIANTS)  # every variant is digested
    assert set(committed["hardware"]) == set(versions.HARDWARE_KEYS)


def test_training_numbers_match_the_committed_digest(mnist, committed):
    got = versions.training_digest(mnist)
    problems, how = versions.compare_digest(got, committed)
    assert not problems, f"compared {how}:\n" + "\n".join(problems)


def test_a_silent_change_of_the_training_numbers_fails(mnist, committed, monkeypatch):
    """A prior's std moved by 1 % inside the trial (no config field changes, so no trial id):
    the check fails and says to bump TRAINING_VERSION and which command regenerates."""
    original = priors.Gaussian
    monkeypatch.setattr(priors, "Gaussian", lambda dim, std: original(dim, std * 1.01))
    config, = [c for c in versions.digest_configs() if c.variant == "unsupervised"]
    got = versions.training_digest(mnist, [config])
    expected = copy.deepcopy(committed)
    expected["variants"] = {"unsupervised": committed["variants"]["unsupervised"]}
    problems, _ = versions.compare_digest(got, expected)
    assert problems
    assert all("bump bench.versions.TRAINING_VERSION" in p for p in problems)
    assert "python -m bench.versions --write-digest" in problems[0]
    # on other hardware (tolerance, no weights) the change still shows in the continuous metrics
    elsewhere = copy.deepcopy(expected)
    elsewhere["hardware"] = {**elsewhere["hardware"], "cpu": "another CPU"}
    problems, how = versions.compare_digest(got, elsewhere)
    assert problems and "relative 0.0001" in how
    assert any("loss_reconstruction" in p or "parzen_ll" in p for p in problems)


def test_a_version_bump_without_a_new_digest_says_to_regenerate(committed, monkeypatch):
    monkeypatch.setattr(versions, "TRAINING_VERSION", committed["training_version"] + 1)
    problems, _ = versions.compare_digest(committed, committed)
    assert len(problems) == 1 and versions.REGENERATE in problems[0]


def test_tolerance_across_hardware_ignores_last_bits(committed):
    got = copy.deepcopy(committed)
    got["hardware"] = {**got["hardware"], "cpu": "another CPU"}
    for variant in got["variants"].values():
        variant["param_digests"] = ["0" * 16]
        for values in variant["metrics"].values():
            if values[0] is not None:
                values[0] *= 1 + 1e-6
    problems, how = versions.compare_digest(got, committed)
    assert problems == [] and "not compared" in how


def test_training_version_of_the_committed_rows_commits():
    """How the committed rows' versions were established (git history)."""
    if versions.training_version_of_commit("a99f140") is None and \
            versions.training_version_of_commit("HEAD") is None:
        pytest.skip("no git history here")
    assert versions.training_version_of_commit("03f085b") == 1  # results/table2.csv
    assert versions.training_version_of_commit("2707a50") == 2  # results/table1.csv
    assert versions.training_version_of_commit("a99f140") is None  # between: neither
    assert versions.training_version_of_commit("0" * 40) is None
