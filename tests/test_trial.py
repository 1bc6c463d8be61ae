"""One trial on real MNIST at the smoke profile, without Ray."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from aae_core import variants
from bench.config import config_from_dict
from bench.grids import grid_configs
from bench.trial import TrialSettings, TrialState, run_trial


@pytest.fixture(scope="module")
def smoke():
    return grid_configs("table1", "smoke", 1)[0]


def values(rows):
    return {r["metric"]: float(r["value"]).hex() for r in rows}


def test_same_seed_same_numbers_bit_for_bit(mnist, smoke):
    a = run_trial(smoke, data=mnist, threads=1)
    b = run_trial(smoke, data=mnist, threads=1)
    assert values(a) == values(b)
    c = run_trial(dataclasses.replace(smoke, seed=1), data=mnist, threads=1)
    assert values(c)["parzen_ll"] != values(a)["parzen_ll"]


def test_rows_and_artifacts(mnist, smoke, tmp_path):
    rows = run_trial(smoke, TrialSettings(artifacts_dir=tmp_path, threads=1, command="test"), data=mnist)
    assert {r["status"] for r in rows} == {"done"}
    assert all(r["trial_id"] == smoke.trial_id and r["threads"] == 1 for r in rows)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["parzen_sigma"]["value"] in smoke.parzen_sigmas
    assert by_metric["parzen_ll"]["n"] == smoke.parzen_test
    assert by_metric["parzen_ll"]["data_split"] == mnist.split
    directory = tmp_path / smoke.trial_id
    state = torch.load(directory / "model.pt", weights_only=True)
    assert state["encoder.net.0.weight"].shape == (1, 1000, 784)  # a one-seed model: (seeds, out, in)
    assert state["encoder.net.0.bias"].shape == (1, 1000)
    latents = np.load(directory / "latents.npz")
    assert latents["z"].shape == (10_000, 8) and latents["y"].shape == (10_000,)
    assert (directory / "curve.csv").read_text().startswith("epoch,")
    # The checkpoint says how to build its model (nanoGPT's model_args) and which config it is.
    args = json.loads((directory / "model_args.json").read_text())
    assert args == {"variant": "unsupervised", "input_shape": [1, 28, 28], "z_dim": 8,
                    "hidden": [1000, 1000], "n_classes": 10}
    assert config_from_dict(json.loads((directory / "config.json").read_text())) == smoke
    rebuilt = variants.build(args["variant"], args["input_shape"], args["z_dim"], args["hidden"],
                             init_std=smoke.init_std, n_classes=args["n_classes"])
    rebuilt.load_state_dict(state, strict=True)


def test_settings_keywords_are_a_shorthand_for_the_record():
    with pytest.raises(TypeError):
        run_trial(grid_configs("table1", "smoke", 1)[0], thread=1)  # a misspelt setting


def test_resume_from_epoch_state_equals_straight_run(mnist, smoke):
    """A trial continued from its epoch-1 checkpoint ends exactly like one that never stopped."""
    config = dataclasses.replace(smoke, epochs=2)
    states: list[TrialState] = []
    straight = run_trial(config, data=mnist, threads=1, on_epoch=lambda s, _: states.append(s))
    # the optimizers load a state's tensors in place: a state resumed twice needs its own copy
    older = dataclasses.replace(copy.deepcopy(states[0]), wall_s=None)
    resumed = run_trial(config, data=mnist, threads=1, resume=states[0])
    assert values(resumed) == values(straight)
    # The resumed trial's wall time counts its first process up to the checkpoint, and this one.
    assert states[0].wall_s > 0 and states[0].wall_s_from_epoch == 0
    assert states[1].wall_s > states[0].wall_s
    assert {r["wall_s_from_epoch"] for r in resumed} == {0}
    assert {r["resumed_from_epoch"] for r in resumed} == {1}
    assert min(r["wall_s"] for r in resumed) > states[0].wall_s
    # A checkpoint of older code has no wall time: the rows say which epochs wall_s covers.
    rows = run_trial(config, data=mnist, threads=1, resume=older,
                     on_epoch=lambda s, _: states.append(s))
    assert {r["wall_s_from_epoch"] for r in rows} == {1} and values(rows) == values(straight)
    assert states[-1].wall_s_from_epoch == 1  # and its next checkpoint carries that on
    assert all(r["wall_s"] < states[0].wall_s + rows[0]["wall_s"] for r in rows)


def test_diverged_run_is_a_row(mnist, smoke):
    rows = run_trial(dataclasses.replace(smoke, recon_lr=50.0), data=mnist, threads=1)
    assert [(r["metric"], r["status"]) for r in rows] == [("parzen_ll", "diverged")]
    assert np.isnan(rows[0]["value"]) and "epoch 0" in rows[0]["error"]
