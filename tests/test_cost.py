"""bench.cost: calibrations measured once and cached per machine, estimates that scale with the
work, the dry run's table, and the report's actual-against-estimate frame."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from accelerate import Accelerator

from bench import cost
from bench.grids import grid_configs


def tiny(grid: str, seeds: int = 2, **fields) -> list:
    """Smoke-profile MNIST configs with 32-unit networks (fast to measure)."""
    return [dataclasses.replace(c, hidden_units=32, **fields) for c in grid_configs(grid, "smoke", seeds, ("mnist",))]


@pytest.fixture
def fake_rates(monkeypatch):
    """Every measure returns a fixed rate (no training): 1,000 examples / products per second."""
    calls = []

    def fixed(name):
        def measure(*args, **kwargs):
            calls.append(name)
            return 1, 1000, 1.0, "synthetic"
        return measure

    for name in ("measure_training", "measure_forward", "measure_parzen"):
        monkeypatch.setattr(cost, name, fixed(name))
    return calls


def test_calibration_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []
    real = cost.measure_training

    def counted(*args, **kwargs):
        calls.append(args[1:4])  # seeds, threads, precision
        return real(*args, **kwargs)

    monkeypatch.setattr(cost, "measure_training", counted)
    configs = tiny("table1", 2)[:2]
    first = cost.estimate(configs, threads=1, seeds_per_trial=2, precision="fp32", cache_dir=tmp_path, steps=2)
    assert sorted(calls) == [(1, 1, "bf16"), (1, 1, "no"), (2, 1, "bf16"), (2, 1, "no")]
    again = cost.estimate(configs, threads=1, seeds_per_trial=2, precision="bf16", cache_dir=tmp_path, steps=2)
    assert len(calls) == 4  # nothing measured again
    assert again[0].hours == first[0].hours
    # The bf16 calibration left Accelerate free for the next trial's precision.
    assert str(Accelerator(cpu=True, mixed_precision="no").mixed_precision) == "no"
    cache = json.loads((tmp_path / "calibration.json").read_text())
    (entry,) = cache.values()
    assert entry["machine"] == cost.machine("cpu")
    for measured in entry["calibrations"].values():
        assert {"samples_per_s", "steps", "samples", "seconds", "measured_at", "data"} <= set(measured)
        assert measured["samples_per_s"] > 0 and measured["data"] == "synthetic"


def test_the_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_BENCH_CACHE", str(tmp_path))
    assert cost.cache_path() == tmp_path / "calibration.json"


def test_keys_differ_by_precision_threads_seeds_and_sizes(tmp_path):
    c = tiny("table1", 1)[0]
    keys = [cost.training_key(c, 1, 1, "no"), cost.training_key(c, 1, 1, "bf16"),
            cost.training_key(c, 1, 2, "no"), cost.training_key(c, 8, 1, "no"),
            cost.training_key(dataclasses.replace(c, hidden_units=64), 1, 1, "no"),
            cost.training_key(dataclasses.replace(c, z_dim=4), 1, 1, "no"),
            cost.training_key(dataclasses.replace(c, batch_size=50), 1, 1, "no"),
            cost.training_key(dataclasses.replace(c, dataset="svhn"), 1, 1, "no")]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == len(keys)
    assert cost.training_key(c, 1, 1, "no") == cost.training_key(dataclasses.replace(c, seed=5, epochs=7), 1, 1, "no")
    measured = []
    for k in keys + keys:
        cost.calibrate(k, lambda: measured.append(1) or (1, 10, 1.0, "synthetic"), device="cpu", cache_dir=tmp_path)
    assert len(measured) == len(keys)


def test_estimate_scales_linearly_with_epochs_train_examples_and_seeds(tmp_path, fake_rates):
    def hours(grid, seeds=2, **fields):
        e = cost.estimate(tiny(grid, seeds, **fields), threads=1, seeds_per_trial=2, precision="no",
                          cache_dir=tmp_path)[0]
        return e.hours

    for grid in ("table1", "table2"):
        one, two, three = (hours(grid, epochs=n)[0] for n in (1, 2, 3))
        assert two - one == pytest.approx(three - two) and two > one
    one, two, three = (hours("table1", train_examples=n)[0] for n in (1000, 2000, 3000))
    assert two - one == pytest.approx(three - two) and two > one
    assert hours("table1", seeds=4) == pytest.approx(tuple(2 * h for h in hours("table1", seeds=2)))
    # Every column is priced from the same fake rates: fp32 and bf16 agree, S = 1 and S = 2 too.
    assert len(set(hours("table1"))) == 1
    assert set(fake_rates) == {"measure_training", "measure_forward", "measure_parzen"}


def test_parzen_work_counts_every_pass():
    (c,) = [c for c in grid_configs("table1", "paper", 1, ("mnist",))]
    decoded, pairs = cost.parzen_work(c, 10_000, 10_000)
    sigmas = len(c.parzen_sigmas)
    assert decoded == 10_000 + (sigmas + 1) * 10_000_000
    assert pairs == 10_000 * (sigmas * 1000 + 1000 + 10_000) + 10_000_000 * (sigmas * 1000 + 10_000)


def test_parzen_work_reads_the_whole_validation_split_where_the_config_says_0():
    (c,) = grid_configs("table1", "quick", 1, ("mnist",))
    c = dataclasses.replace(c, parzen_validation=0)  # TFD's setting: the fold's whole split
    decoded, pairs = cost.parzen_work(c, 400, 10_000)
    assert pairs == c.parzen_samples * (len(c.parzen_sigmas) * 400 + 400 + 10_000)


def test_the_validation_curve_is_priced_every_epoch(tmp_path, fake_rates):
    """The curve (bench.validation) adds per epoch a reconstruction pass over the validation
    images, and for a Parzen cell one decode and one pass scoring the validation images under
    every sigma."""
    (c,) = grid_configs("table1", "quick", 1, ("mnist",))
    sizes = (50_000, 10_000, 10_000)
    seconds = {n: cost.evaluation_seconds(dataclasses.replace(c, epochs=n), 1, 1, "cpu", tmp_path, sizes)[0]
               for n in (1, 2)}
    per_epoch = seconds[2] - seconds[1]
    decoded, pairs = cost.curve_parzen_work(c, 10_000)
    # one pass scores every sigma: its pairs count once, at the one-pass evaluator's rate
    assert (decoded, pairs) == (10 * c.parzen_samples, 10 * c.parzen_samples * 1000)
    rate = 1000  # every fake rate
    expected = (10_000 + c.parzen_samples) / rate + c.parzen_samples * 1000 * 784 / rate
    assert per_epoch == pytest.approx(expected)
    (t2,) = grid_configs("table2", "quick", 1, ("mnist",))[:1]
    one, two = (cost.evaluation_seconds(dataclasses.replace(t2, epochs=n), 1, 1, "cpu", tmp_path, sizes)[0]
                for n in (1, 2))
    assert two - one == pytest.approx(2 * 10_000 / rate)  # selection + curve, both on validation


def test_format_estimate_prints_every_cell_and_a_total(tmp_path, fake_rates):
    configs = tiny("table2", 3)
    estimates = cost.estimate(configs, threads=2, seeds_per_trial=3, precision="bf16", cache_dir=tmp_path)
    text = cost.format_estimate(estimates, slots=2, cache_dir=tmp_path)
    assert str(tmp_path / "calibration.json") in text
    assert len(estimates) == 3
    for e in estimates:
        assert e.cell in text and e.seeds == 3
    for word in ("fp32", "S=3", "bf16", "bf16+S=3*", "total", "core-hours", "wall-hours, 2 trial(s)",
                 "calibration", "DEVIATION"):
        assert word in text
    t = cost.total(estimates, slots=2)
    assert t.core_hours == pytest.approx(tuple(2 * h for h in t.hours))
    assert all(w >= h / 2 for w, h in zip(t.wall_hours, t.hours, strict=True))


@pytest.mark.parametrize(("fields", "message"), [
    (dict(precision="fp16"), "precision must be one of"),
    (dict(seeds_per_trial=0), "seeds_per_trial must be >= 1"),
    (dict(threads=0), "threads must be >= 1"),
    (dict(device="tpu"), "device must be one of"),
])
def test_bad_input_is_one_line(tmp_path, fields, message):
    args = dict(threads=1, seeds_per_trial=1, precision="no", cache_dir=tmp_path) | fields
    with pytest.raises(ValueError, match=message) as error:
        cost.estimate(tiny("table1", 1), **args)
    assert "\n" not in str(error.value)


def test_actual_vs_estimate_counts_each_trial_and_pack_once(tmp_path, fake_rates):
    estimates = cost.estimate(tiny("table1", 4), threads=1, seeds_per_trial=1, precision="no", cache_dir=tmp_path)
    ids = estimates[0].trial_ids
    rows = []
    for k, tid in enumerate(ids[:2]):  # two trials alone, three metric rows each
        rows += [dict(trial_id=tid, metric=m, wall_s=3600.0 * (k + 1), seeds_per_trial=1,
                      started_at=f"t{k}", node="n") for m in ("a", "b", "c")]
    for tid in ids[2:]:  # one pack of two: each member repeats the pack's time
        rows += [dict(trial_id=tid, metric=m, wall_s=1800.0, seeds_per_trial=2, started_at="p", node="n")
                 for m in ("a", "b")]
    rows.append(dict(trial_id="someone-else", metric="a", wall_s=1e9, seeds_per_trial=1, started_at="x", node="n"))
    frame = cost.actual_vs_estimate(pd.DataFrame(rows), estimates)
    (row,) = frame.to_dict("records")
    assert row["trials"] == 4 and row["actual_hours"] == pytest.approx(3.5)
    assert row["estimated_hours"] == estimates[0].requested_hours
    assert row["ratio"] == pytest.approx(3.5 / estimates[0].requested_hours)


def test_estimates_round_trip_through_json(tmp_path, fake_rates):
    estimates = cost.estimate(tiny("table2", 2), threads=1, seeds_per_trial=2, precision="no", cache_dir=tmp_path)
    assert cost.load_estimates(cost.save_estimates(estimates, tmp_path / "estimate.json")) == estimates


def test_saved_estimates_are_set_against_the_rows_of_their_results_dir(tmp_path, fake_rates):
    results = tmp_path / "results"
    assert cost.estimates_against_actuals(results, pd.DataFrame()).empty  # none saved
    estimates = cost.estimate(tiny("table1", 2), threads=1, seeds_per_trial=1, precision="no", cache_dir=tmp_path)
    path = cost.save_estimates(estimates, cost.estimates_path(results, "table1", "smoke"))
    assert path == results / "estimates" / "table1-smoke.json"
    tid = estimates[0].trial_ids[0]
    rows = pd.DataFrame([dict(trial_id=tid, metric="parzen_ll", wall_s=1800.0, seeds_per_trial=1,
                              started_at="t", node="n")])
    (row,) = cost.estimates_against_actuals(results, rows).to_dict("records")
    assert row["estimate"] == "table1 --profile smoke" and row["trials"] == 1
    assert row["actual_hours"] == pytest.approx(0.5) and row["estimated_hours"] == estimates[0].requested_hours
    assert row["calibrated"] == max(c.measured_at for c in estimates[0].calibrations)
    (unrun,) = cost.estimates_against_actuals(results, pd.DataFrame()).to_dict("records")
    assert unrun["trials"] == 0 and unrun["actual_hours"] == 0


def test_the_report_sets_each_saved_estimate_against_its_actual(tmp_path, fake_rates):
    from report_fixtures import table1_rows, write_results

    from bench import report

    results = tmp_path / "results"
    write_results(results, table1_rows([300.0, 301.0, 302.0], profile="smoke"))
    plain = report.write_report(results, tmp_path / "plain")
    assert "Cost: estimate against actual" not in (tmp_path / "plain" / "report.md").read_text()
    estimates = cost.estimate(tiny("table1", 3), threads=1, seeds_per_trial=1, precision="no", cache_dir=tmp_path)
    cost.save_estimates(estimates, cost.estimates_path(results, "table1", "smoke"))
    report.write_report(results, tmp_path / "out")
    md, page = (tmp_path / "out" / "report.md").read_text(), (tmp_path / "out" / "index.html").read_text()
    assert "## Cost: estimate against actual" in md and 'id="cost"' in page
    assert f"| table1 --profile smoke | {estimates[0].cell} |" in md
    assert plain  # the report without estimates was written as before


def test_the_curves_one_pass_parzen_is_calibrated_apart_from_the_final_evaluation(tmp_path, monkeypatch):
    """The curve's multi-sigma pass has a rate of its own (one product for all sigmas), keyed
    by the number of sigmas; the final evaluation keeps the single-sigma rate."""
    seen = []

    def fake(dims, samples=cost.PARZEN_PROBE[0], points=cost.PARZEN_PROBE[1], sigmas=1):
        seen.append(sigmas)
        return 1, 1000 * sigmas, 1.0, "synthetic"  # the one-pass rate: `sigmas` times the single's

    monkeypatch.setattr(cost, "measure_parzen", fake)
    for name in ("measure_training", "measure_forward"):
        monkeypatch.setattr(cost, name, lambda *a, **k: (1, 1000, 1.0, "synthetic"))
    (c,) = grid_configs("table1", "quick", 1, ("mnist",))
    n = len(c.parzen_sigmas)
    sizes = (50_000, 10_000, 10_000)
    one, two = (cost.evaluation_seconds(dataclasses.replace(c, epochs=e), 1, 1, "cpu", tmp_path, sizes)
                for e in (1, 2))
    assert sorted(set(seen)) == [1, n]
    keys = [json.loads(u.key) for u in one[1]]
    assert [k.get("sigmas", 1) for k in keys if k["kind"] == "parzen"] == [1, n]
    per_epoch = two[0] - one[0]
    assert per_epoch == pytest.approx((10_000 + c.parzen_samples) / 1000 + c.parzen_samples * 1000 * 784 / (1000 * n))
    assert cost.parzen_key(784) != cost.parzen_key(784, n) and "sigmas" not in cost.parzen_key(784)


def test_measure_parzen_times_the_one_pass_evaluator_for_several_sigmas():
    steps, products, seconds, data = cost.measure_parzen(8, samples=200, points=20, sigmas=3)
    assert (steps, products, data) == (1, 200 * 20 * 8, "synthetic") and seconds > 0
