"""Numbers that say which hardware and arithmetic made them (issue 18, items 8 and 10): every row
records the matmul precision and the CUDA / cuDNN builds, a trial pins IEEE fp32 matmuls and
cuBLAS's workspace, and a checkpoint loads onto the CPU whatever device saved it."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from bench import provenance, trial
from bench.grids import single_trial

NUMERICS = ("matmul_precision", "cuda", "cudnn")


@pytest.fixture
def restore_matmul_precision():
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def smoke(precision: str = "no", epochs: int = 1):
    config = single_trial("unsupervised", "mnist", "gaussian", profile="smoke", epochs=epochs)
    return dataclasses.replace(config, hidden_units=40, train_examples=600, precision=precision)


def test_environment_records_the_numerics_of_this_build():
    env = provenance.environment()
    assert set(NUMERICS) <= set(env)
    assert env["matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["cuda"] == (torch.version.cuda or "")
    if not torch.version.cuda:
        assert env["cudnn"] == ""
    else:
        assert env["cudnn"] == str(torch.backends.cudnn.version() or "")


def test_environment_reads_the_matmul_precision_at_each_call(restore_matmul_precision):
    """Not cached with the versions: a trial pins it, and its rows must say what it was."""
    torch.set_float32_matmul_precision("high")
    assert provenance.environment()["matmul_precision"] == "high"
    torch.set_float32_matmul_precision("highest")
    assert provenance.environment()["matmul_precision"] == "highest"


def test_backends_set_apart_are_recorded_each_on_its_own(restore_matmul_precision):
    """torch >= 2.9: with the CUDA matmul set through the per-backend API alone, the legacy
    getter raises; the record names each backend's setting instead of failing."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no per-backend precision API")
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.mkldnn.matmul.fp32_precision = "none"
        matmul.fp32_precision = "tf32"
        assert provenance.numerics()["matmul_precision"] == "cuda=tf32,mkldnn=none"
        trial.pin_numerics()  # the legacy setter sets every backend at once
        assert provenance.numerics()["matmul_precision"] == "highest"
        assert matmul.fp32_precision == "ieee"
    finally:  # one consistent setting again (the fixture then restores the caller's)
        torch.set_float32_matmul_precision("highest")


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_a_trial_pins_highest_and_its_rows_say_so(mnist, restore_matmul_precision, monkeypatch, precision):
    torch.set_float32_matmul_precision("high")  # what some container images do (TF32 on CUDA)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    rows = trial.run_trial(smoke(precision), data=mnist, threads=1)
    assert rows and {r["status"] for r in rows} == {"done"}
    assert torch.get_float32_matmul_precision() == "highest"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == trial.CUBLAS_WORKSPACE
    for row in rows:
        assert row["matmul_precision"] == "highest"
        assert row["cuda"] == (torch.version.cuda or "")
        assert row["cudnn"] == provenance.numerics()["cudnn"]


def test_a_cublas_workspace_the_user_set_stays(monkeypatch, restore_matmul_precision):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    trial.pin_numerics()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_the_numerics_columns_reach_the_results_frame(mnist):
    from bench import results

    frame = results.to_frame(trial.run_trial(smoke(), data=mnist, threads=1))
    assert set(NUMERICS) <= set(frame.columns)


def _state() -> trial.TrialState:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    return trial.TrialState(epoch=2, curve=[[{"epoch": 1, "loss_recon": 0.5}]], model=net.state_dict(),
                            optimizers={"recon": opt.state_dict()},
                            generators={"data#0": torch.Generator().manual_seed(3).get_state()},
                            best=[None], diverged={})


def test_a_state_round_trips(tmp_path):
    state = _state()
    trial.save_state(state, tmp_path)
    back = trial.load_state(tmp_path)
    assert back.epoch == state.epoch and back.curve == state.curve and back.best == state.best
    for key, value in state.model.items():
        assert torch.equal(back.model[key], value)
    momentum = state.optimizers["recon"]["state"][0]["momentum_buffer"]
    assert torch.equal(back.optimizers["recon"]["state"][0]["momentum_buffer"], momentum)
    assert torch.equal(back.generators["data#0"], state.generators["data#0"])


def test_load_state_maps_every_tensor_to_the_cpu_by_default(tmp_path, monkeypatch):
    """Item 10: without map_location a GPU-saved optimizer state comes back on the GPU it left
    (cuda:0 on every data-parallel rank); start() loads it into the CPU-built model and
    Accelerate's prepare moves it to the rank's device."""
    trial.save_state(_state(), tmp_path)
    calls = []
    load = torch.load

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    trial.load_state(tmp_path)
    trial.load_state(tmp_path, map_location="meta")
    assert [c.get("map_location") for c in calls] == ["cpu", "meta"]
    assert all(c.get("weights_only") is True for c in calls)


def test_a_resumed_trial_restores_optimizer_state_on_the_model_device(mnist, tmp_path):
    """Through save_state / load_state, as the runner resumes: same rows as straight through."""
    config = smoke(epochs=2)
    states = []
    straight = trial.run_trial(config, data=mnist, threads=1, on_epoch=lambda s, _: states.append(s))
    trial.save_state(states[0], tmp_path)
    resumed = trial.run_trial(config, data=mnist, threads=1, resume=trial.load_state(tmp_path))
    assert [(r["metric"], r["value"]) for r in resumed] == [(r["metric"], r["value"]) for r in straight]
