"""What the driver does while a sweep runs: trial rows go into results the moment they arrive,
and the user sees a few lines: which trials run (and where), one line per epoch per trial,
which are done or failed, and how long the rest should take.

`Progress` is plain Python (tested without a Ray instance); `SweepCallback` feeds it Tune's
events. It counts trials by trial id: a Tune trial that packs several seeds
(`--seeds-per-trial`) starts, finishes and fails as its members, and prints one epoch line
(its losses are means over the pack's seeds). Importing this module imports Ray: the runner
imports it only when a sweep runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ray import tune

from bench import results
from bench.config import config_from_dict
from bench.evaluate import primary_metric
from bench.packs import pack_members, pack_name

# Tune pickles its callbacks into the experiment (tuner.pkl) and Tuner.restore brings back those
# copies: a restored experiment must talk to the sweep that restores it, not to a copy of the
# one that started it. So the callback holds a key, and the live Progress of this driver
# process is registered under it here.
_LIVE: dict[str, Progress] = {}


@contextmanager
def registered(key: str, progress: Progress) -> Iterator[Progress]:
    """`progress` is the live Progress of `key` while the block runs (a Tune fit)."""
    _LIVE[key] = progress
    try:
        yield progress
    finally:
        _LIVE.pop(key, None)


def live(key: str) -> Progress | None:
    """The live Progress registered under `key`, if a sweep of this process runs it."""
    return _LIVE.get(key)


LOSS_NAMES = {"loss_reconstruction": "recon", "loss_discriminator": "disc",
              "loss_generator": "gen", "loss_classification": "class",
              "validation_error": "valid err"}


@dataclass
class TrialProgress:
    label: str
    epochs: int
    done_epochs: int = 0
    status: str = "pending"  # pending | running | done | diverged | error | skipped


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '2 h 05 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """The trials of one Tune run (trial_id -> (label, epochs)) and what has happened to them."""

    def __init__(self, results_dir: str | Path, trials: dict[str, tuple[str, int]],
                 out: Callable[[str], None] = lambda line: print(line, flush=True),
                 clock: Callable[[], float] = time.perf_counter, context: Mapping | None = None):
        self.results_dir = Path(results_dir)
        # What every trial of this run shares and the driver knows (threads, workers, the
        # command line): the error row of a trial that failed carries it.
        self.context = dict(context or {})
        self.trials = {tid: TrialProgress(label, epochs) for tid, (label, epochs) in trials.items()}
        self.out, self.clock = out, clock
        self.start_time = clock()
        self.trained_epochs = 0  # epochs trained by this run (resumed epochs are not counted)

    # -- events ------------------------------------------------------------------------

    def started(self, trial_id: str, where: str = "", resumed_from: int = 0) -> None:
        trial = self._get(trial_id)
        trial.status, trial.done_epochs = "running", resumed_from
        place = f" on {where}" if where else ""
        frm = f", continuing from epoch {resumed_from} (checkpoint)" if resumed_from else ""
        self.out(f"[start] {trial_id} {trial.label}{place}{frm}")

    def epoch(self, trial_id: str | Sequence[str], result: dict) -> None:
        """An epoch of a trial, or of a pack (one line: its losses are means over the seeds)."""
        ids = _ids(trial_id)
        epoch = int(result["epoch"])
        for tid in ids:
            trial = self._get(tid)
            trial.status = "running"
            self.trained_epochs += max(0, epoch - trial.done_epochs)  # per seed: as the ETA counts
            trial.done_epochs = epoch
        losses = " ".join(f"{short} {result[key]:.4g}" for key, short in LOSS_NAMES.items()
                          if key in result)
        seconds = f" ({result['seconds']:.1f} s)" if "seconds" in result else ""
        seeds = f" (mean of {len(ids)} seeds)" if len(ids) > 1 else ""
        self.out(f"[epoch] {pack_name(ids)} {epoch}/{self._get(ids[0]).epochs} "
                 f"{losses}{seconds}{seeds}")

    def rows(self, trial_id: str | Sequence[str], grid: str, rows: list[dict]) -> Path:
        """A trial's (or a pack's) rows arrived: write them at once, then say so per trial."""
        path = results.append_rows(self.results_dir, grid, rows)
        firsts = {}  # each trial's first row (its primary metric)
        for tid in _ids(trial_id):
            mine = [r for r in rows if r.get("trial_id") == tid]
            firsts[tid] = mine[0] if mine else {"error": "the trial returned no rows for it"}
            self._get(tid).status = firsts[tid].get("status", "error")
        for tid, main in firsts.items():  # after every status is set: the summary is the same
            trial = self._get(tid)
            value = main.get("value", math.nan)
            what = (f"{main.get('metric', '')} = {value:.4g}" if trial.status == "done"
                    else main.get("error", ""))
            self.out(f"[{trial.status}] {tid} {trial.label}: {what} -> {path} ({self.summary()})")
        return path

    def error(self, trial_id: str, grid: str, row: dict) -> None:
        """A trial failed for good (Ray's retries used up): an `error` row, never a gap."""
        results.append_rows(self.results_dir, grid, [row])
        trial = self._get(trial_id)
        trial.status = "error"
        self.out(f"[error] {trial_id} {trial.label}: {row['error']} ({self.summary()})")

    def retry(self, trial_id: str | Sequence[str], message: str) -> None:
        ids = _ids(trial_id)
        trial = self._get(ids[0])
        seeds = f" and {len(ids) - 1} more seeds" if len(ids) > 1 else ""
        self.out(f"[retry] {pack_name(ids)} {trial.label}{seeds} after: {message} "
                 f"(from its last checkpoint, epoch {trial.done_epochs})")

    def skipped(self, trial_id: str) -> None:
        trial = self.trials.get(trial_id)
        if trial is not None:
            trial.status = "skipped"
        self.out(f"[skip] {trial_id}: done already, or not part of this sweep")

    # -- what the user reads -----------------------------------------------------------

    def eta_s(self) -> float | None:
        """Seconds left: epochs still to train over the epochs per second this run achieved
        (evaluation and Ray's overhead included, since they take wall time too)."""
        elapsed = self.clock() - self.start_time
        if self.trained_epochs == 0 or elapsed <= 0:
            return None
        left = sum(t.epochs - t.done_epochs for t in self.trials.values()
                   if t.status in ("pending", "running"))
        return left / (self.trained_epochs / elapsed)

    def summary(self) -> str:
        counts = {"finished": 0, "running": 0, "pending": 0}
        for t in self.trials.values():
            key = t.status if t.status in ("running", "pending") else "finished"
            counts[key] += 1
        eta, left = self.eta_s(), ""
        if counts["finished"] < len(self.trials) and eta is not None:
            left = f", about {duration(eta)} left" if eta >= 1 else ", evaluating"
        return (f"{counts['finished']}/{len(self.trials)} finished, {counts['running']} running"
                f"{left}, {duration(self.clock() - self.start_time)} so far")

    def _get(self, trial_id: str) -> TrialProgress:
        # A restored experiment may hold trials this run did not list (done meanwhile).
        return self.trials.setdefault(trial_id, TrialProgress(trial_id, 0))


def _ids(trial_id: str | Sequence[str]) -> list[str]:
    return [trial_id] if isinstance(trial_id, str) else list(trial_id)


def error_row(config: dict, message: str, context: Mapping | None = None) -> dict:
    """The row of a trial that raised (after Ray's retries): status error, the reason, its
    config, and what the driver knows of how it ran (`context`: threads, workers, command)."""
    cfg = config_from_dict(config)
    ran = results.RunContext(datetime.now(UTC).isoformat(timespec="seconds"), dict(context or {}))
    row, = results.trial_rows(cfg, ran, "error", {primary_metric(cfg): (math.nan, math.nan, 0)}, message)
    return row


def _error_message(trial) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (see Ray logs)"


class SweepCallback(tune.Callback):
    """Forwards Tune's events (on the driver) to the live Progress registered under `key`,
    in terms of trial ids: a pack's events are its members'."""

    def __init__(self, key: str):
        self.key = key

    def _dispatch(self, trial) -> tuple[Progress | None, list[dict]]:
        return live(self.key), pack_members(trial.config["config"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        progress, members = self._dispatch(trial)
        if progress is None:
            return
        ids = [m["trial_id"] for m in members]
        if result.get("skipped"):
            for tid in ids:
                progress.skipped(tid)
        elif "rows" in result:
            progress.rows(ids, members[0]["grid"], json.loads(result["rows"]))
        elif result.get("started"):
            for tid in ids:
                progress.started(tid, result.get("node_ip", ""),
                                 int(result.get("resumed_from_epoch", 0)))
        elif "epoch" in result:
            progress.epoch(ids, result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        progress, members = self._dispatch(trial)
        if progress is not None:
            progress.retry([m["trial_id"] for m in members], _error_message(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        progress, members = self._dispatch(trial)
        if progress is not None:
            message = _error_message(trial)
            context = {**progress.context, "seeds_per_trial": len(members)}
            for member in members:
                progress.error(member["trial_id"], member["grid"], error_row(member, message, context))
