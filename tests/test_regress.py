"""The regression gate on fabricated rows (test fixtures in tmp dirs, never results/).

The gate on REAL runs (a planted learning-rate change fails it, unchanged code passes) is an
integration test of the CLI; these check the comparison and the exit codes.
"""

from __future__ import annotations

import json

import pytest
from report_fixtures import table1_rows, write_results

from bench import regress


@pytest.fixture
def baseline(tmp_path):
    results = write_results(tmp_path / "base", table1_rows([-190.0, -188.0, -192.0],
                                                           profile="smoke"))
    return regress.write_baseline(results, tmp_path / "baseline.json")


def _run(tmp_path, lls, name="run", **kw):
    return write_results(tmp_path / name, table1_rows(lls, profile="smoke", **kw))


def test_baseline_contents(baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == regress.FORMAT
    entries = {e["metric"]: e for e in data["entries"]}
    assert "parzen_sigma" not in entries  # skipped by default (a discrete pick)
    ll = entries["parzen_ll"]
    assert ll["expected"] == pytest.approx(-190.0) and ll["std"] == pytest.approx(2.0)
    assert ll["tolerance"] == pytest.approx(6.0)  # max(3 * 2.0, 1.0 floor, 1 % of 190)
    assert ll["profile"] == "smoke" and ll["seeds"] == [0, 1, 2]
    assert ll["filters"] == {"variant": "unsupervised", "dataset": "mnist", "prior": "gaussian"}
    disc = entries["loss_discriminator"]  # no spread: the relative floor applies
    assert disc["std"] == 0 and disc["tolerance"] == pytest.approx(0.013)


def test_pass_on_unchanged_results(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-191.0, -187.0, -192.0]))
    assert code == 0, text
    assert "PASS" in text and "DRIFT" not in text


def test_drift_fails(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-250.0, -251.0, -249.0]))
    assert code == 1
    assert "DRIFT" in text and "FAIL: 2 DRIFT" in text  # parzen_ll and parzen_validation_ll


def test_missing_metric_counts_as_failure(baseline, tmp_path):
    data = json.loads(baseline.read_text())
    data["entries"].append({**data["entries"][0], "metric": "parzen_ll_10m"})
    baseline.write_text(json.dumps(data))
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -188.0, -192.0]))
    assert code == 1 and "MISSING" in text and "counts as a failure" in text


def test_other_profile_is_missing(baseline, tmp_path):
    run = write_results(tmp_path / "run", table1_rows([-190.0, -188.0, -192.0], profile="quick"))
    code, text = regress.check(baseline, run)
    assert code == 1 and "MISSING" in text


def test_new_diverged_trials_fail(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -188.0, -192.0],
                                              diverged_seeds=(3,)))
    assert code == 1 and "FAILED-TRIALS" in text


def test_seed_mismatch_is_noted(baseline, tmp_path):
    code, text = regress.check(baseline, _run(tmp_path, [-190.0, -189.0]))
    assert code == 0 and "seeds differ" in text


@pytest.mark.parametrize("content", [
    None,                                    # no file
    "{not json",                             # corrupt
    json.dumps({"format": "other"}),         # wrong format
    json.dumps({"format": regress.FORMAT, "entries": []}),
    json.dumps({"format": regress.FORMAT, "entries": [{"grid": "table1"}]}),
])
def test_unusable_baseline(tmp_path, content):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    code, text = regress.check(path, _run(tmp_path, [-190.0]))
    assert code == 2 and "unusable baseline" in text


def test_no_results(baseline, tmp_path):
    assert regress.check(baseline, tmp_path / "nowhere")[0] == 2
    (tmp_path / "empty").mkdir()
    code, text = regress.check(baseline, tmp_path / "empty")
    assert code == 2 and "no result rows" in text


def test_cells_become_filters(tmp_path):
    rows = table1_rows([1.0, 2.0], profile="smoke", z_dim=8) + \
        table1_rows([5.0, 6.0], profile="smoke", z_dim=4)
    path = regress.write_baseline(write_results(tmp_path / "r", rows), tmp_path / "b.json",
                                  metrics=["parzen_ll"])
    entries = json.loads(path.read_text())["entries"]
    assert sorted((e["filters"]["z_dim"], e["expected"]) for e in entries) == [(4, 5.5), (8, 1.5)]


def test_several_profiles_need_a_choice(tmp_path):
    # Two profiles name two trials only where their configs differ (the profile is no part of
    # a trial's id): here the quick run's epochs.
    rows = table1_rows([1.0], profile="smoke") + table1_rows([2.0], profile="quick", epochs=10)
    results = write_results(tmp_path / "r", rows)
    with pytest.raises(ValueError, match="pass profile="):
        regress.write_baseline(results, tmp_path / "b.json")
    path = regress.write_baseline(results, tmp_path / "b.json", profile="quick")
    assert {e["profile"] for e in json.loads(path.read_text())["entries"]} == {"quick"}


# -- devices (#18 item 9): trial ids leave the device out, the gate compares like with like ----


def on(device: str, rows: list[dict], gpu: str = "") -> list[dict]:
    return [{**row, "device": device, "gpu": gpu} for row in rows]


def test_a_baseline_records_its_kind_of_device(baseline, tmp_path):
    assert json.loads(baseline.read_text())["device"] == "cpu"
    rows = on("cuda:0", table1_rows([-190.0, -188.0], profile="smoke"), gpu="NVIDIA H200")
    cuda = regress.write_baseline(write_results(tmp_path / "gpu", rows), tmp_path / "cuda.json")
    data = json.loads(cuda.read_text())
    assert data["device"] == "cuda" and data["gpus"] == ["NVIDIA H200"]


def test_a_baseline_of_mixed_devices_needs_a_choice(tmp_path):
    rows = table1_rows([-190.0, -188.0], profile="smoke")
    mixed = rows[:len(rows) // 2] + on("cuda:0", rows[len(rows) // 2:])  # seed 0 on cpu, 1 on cuda
    results = write_results(tmp_path / "r", mixed)
    with pytest.raises(ValueError, match="pass device=") as exc:
        regress.write_baseline(results, tmp_path / "b.json")
    assert "cpu (1 trial), cuda (1 trial)" in str(exc.value)
    path = regress.write_baseline(results, tmp_path / "b.json", device="cpu")
    data = json.loads(path.read_text())
    assert data["device"] == "cpu" and {e["n"] for e in data["entries"]} == {1}


def test_a_cpu_baseline_refuses_gpu_rows_in_one_clear_line(baseline, tmp_path):
    """The same trial ids on a GPU: other numbers for device reasons, not a regression; and
    comparing nothing is no pass either."""
    far = on("cuda:0", table1_rows([-250.0, -251.0, -249.0], profile="smoke"), gpu="NVIDIA H200")
    code, text = regress.check(baseline, write_results(tmp_path / "gpu", far))
    assert code == regress.EXIT_UNUSABLE and len(text.strip().splitlines()) == 1
    assert "baseline was made on cpu" in text and "cuda (3 trials)" in text
    assert "DRIFT" not in text and "PASS" not in text


def test_rows_of_another_device_are_left_out_and_named(baseline, tmp_path):
    rows = table1_rows([-191.0, -187.0, -192.0], profile="smoke") + \
        on("cuda:1", table1_rows([-250.0, -251.0, -249.0], profile="smoke", epochs=5))
    code, text = regress.check(baseline, write_results(tmp_path / "mixed", rows))
    assert code == regress.PASS, text  # the cpu rows pass; the far-off cuda rows are not pooled in
    assert "device: cpu; only rows that ran on cpu are compared" in text
    assert "left out, another kind of device: cuda (3 trials)" in text


def test_an_entry_whose_rows_ran_elsewhere_says_so(baseline, tmp_path):
    # the baseline's cell ran on cuda only, beside another cell's cpu trial: MISSING, and why
    rows = on("cuda:0", table1_rows([-190.0, -188.0, -192.0], profile="smoke")) + \
        table1_rows([-190.0], profile="smoke", dataset="fashion-mnist")
    code, text = regress.check(baseline, write_results(tmp_path / "r", rows))
    assert code == regress.EXIT_DRIFT and "MISSING" in text
    assert "no done rows on cpu, the baseline's device; its rows ran on cuda (3 trials)" in text


def test_a_cuda_baseline_gates_any_cuda_device_and_notes_another_gpu_model(tmp_path):
    base = write_results(tmp_path / "base", on("cuda:0", table1_rows([-190.0, -188.0, -192.0], profile="smoke"),
                                               gpu="NVIDIA H200"))
    cuda = regress.write_baseline(base, tmp_path / "cuda.json")
    run = on("cuda:3", table1_rows([-191.0, -187.0, -192.0], profile="smoke"), gpu="NVIDIA A100")
    code, text = regress.check(cuda, write_results(tmp_path / "run", run))
    assert code == regress.PASS, text
    assert "GPU model differs (baseline: NVIDIA H200; results: NVIDIA A100)" in text
    code, text = regress.check(cuda, write_results(tmp_path / "cpu", table1_rows([-190.0], profile="smoke")))
    assert code == regress.EXIT_UNUSABLE and "baseline was made on cuda" in text and "cpu (1 trial)" in text


def test_a_baseline_without_a_device_is_a_cpu_baseline(baseline, tmp_path):
    """Baselines made before the field (tests/baselines/table1-smoke.json) were made on a CPU."""
    data = json.loads(baseline.read_text())
    del data["device"]
    baseline.write_text(json.dumps(data))
    code, text = regress.check(baseline, _run(tmp_path, [-191.0, -187.0, -192.0]))
    assert code == regress.PASS and "the baseline records none" in text
    gpu = write_results(tmp_path / "gpu", on("cuda:0", table1_rows([-190.0], profile="smoke")))
    assert regress.check(baseline, gpu)[0] == regress.EXIT_UNUSABLE


def test_device_kind():
    assert [regress.device_kind(d) for d in ("cpu", "cuda:0", "cuda", "mps", " CUDA:1 ")] == \
        ["cpu", "cuda", "cuda", "mps", "cuda"]
    assert regress.device_kind(float("nan")) == regress.device_kind("") == regress.UNRECORDED
