"""Sweeps on a real two-node Ray cluster on this machine, and data-parallel trials.

The cluster is two `ray start --block` processes (head on 127.0.0.2, a second node on
127.0.0.3: 127.0.0.1 hangs, see the Ray notes), token auth with a token of the test's own, free
ports, and a temp dir of the test's own. Every process of a node carries a marker in its
environment; a node is stopped by killing exactly those processes (by PID), never `ray stop`,
which would take every Ray instance of the user down, a colleague's sweep included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from aae_core import datasets, training, variants
from bench import results, trial
from bench.grids import grid_configs

RAY = str(Path(sys.executable).with_name("ray"))
AAE_BENCH = str(Path(sys.executable).with_name("aae-bench"))
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TwoNodeCluster:
    """A head and a second node, each 1 CPU, started and stopped by this test only."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)
        # Short: Ray's unix socket paths must stay under 107 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(RAY_TMPDIR=str(self.tmp), RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_USAGE_STATS_ENABLED="0")
        self.port = free_port(HEAD_IP)
        self.address = f"{HEAD_IP}:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, role: str, ip: str, timeout: float = 120) -> None:
        ports = [f"--{name}={free_port(ip)}" for name in (
            "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")]
        cmd = [RAY, "start", "--block", "--num-cpus=1", f"--node-ip-address={ip}",
               "--min-worker-port=0", "--max-worker-port=0", "--disable-usage-stats", *ports]
        if role == "head":
            cmd += ["--head", f"--port={self.port}", "--include-dashboard=false"]
        else:
            cmd += [f"--address={self.address}"]
        log = open(self.tmp / f"{role}.log", "w")
        self.procs[role] = subprocess.Popen(cmd, env={**self.env, "AAE_TEST_NODE": self.marker(role)},
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in (self.tmp / f"{role}.log").read_text():
            if self.procs[role].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({role}) failed:\n{self.log(role)}")
            time.sleep(0.5)

    def marker(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def log(self, role: str) -> str:
        return (self.tmp / f"{role}.log").read_text()[-3000:]

    def node_pids(self, role: str | None = None) -> list[int]:
        """Our processes: those whose environment carries our marker (Ray's workers inherit it)."""
        wanted = {self.marker(role)} if role else {self.marker("head"), self.marker("worker")}
        pids = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get("AAE_TEST_NODE") in wanted:
                    pids.append(proc.pid)
            except (psutil.Error, OSError):
                continue
        return pids

    def kill(self, role: str | None = None) -> None:
        """SIGKILL every process of one node (a crash), or of both."""
        for _ in range(3):  # processes may spawn children while we kill
            pids = self.node_pids(role)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)

    def shutdown(self) -> None:
        self.kill()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """`aae-bench run ...` as a driver joining the cluster through --address."""
        return subprocess.run([AAE_BENCH, "run", *args, "--address", self.address],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, out: Path) -> subprocess.Popen:
        return subprocess.Popen([AAE_BENCH, "run", *args, "--address", self.address], env=self.env,
                                stdout=open(out, "w"), stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def cluster():
    c = TwoNodeCluster()
    try:
        c.start("head", HEAD_IP)
        c.start("worker", WORKER_IP)
        yield c
    finally:
        c.shutdown()
        assert not c.node_pids(), "cluster processes left behind"


def trial_lines(text: str, kind: str) -> list[tuple[str, str]]:
    """(trial id, rest of line) of every `[kind]` progress line."""
    return re.findall(rf"^\[{kind}\] (\w+) (.*)$", text, re.M)


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_uses_both_nodes_and_survives_losing_one(cluster, tmp_path, mnist_dir):
    common = ["table1", "--profile", "smoke", "--seeds", "2", "--dataset", "mnist",
              "--data-dir", str(mnist_dir), "--no-table"]
    # 1. Two 1-CPU trials on two 1-CPU nodes: one on each; every row says which node.
    first = tmp_path / "first"
    done = cluster.run(*common, "--epochs", "2", "--results", str(first))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = results.read_rows(first, "table1")
    assert set(rows["status"]) == {"done"}
    per_trial = rows.groupby("trial_id")[["node_ip", "node_id"]].first()
    assert set(per_trial["node_ip"]) == {HEAD_IP, WORKER_IP}
    assert per_trial["node_id"].nunique() == 2
    assert rows["node"].nunique() == 1  # the host name cannot tell them apart

    # 2. The second node dies in the middle of a trial: the trial is retried from its last
    # checkpoint on the head and the sweep completes.
    second = tmp_path / "second"
    out = tmp_path / "second.txt"
    driver = cluster.popen(*common, "--epochs", "12", "--results", str(second), out=out)
    try:
        def victim_epoch() -> int:
            text = out.read_text()
            on_worker = [t for t, rest in trial_lines(text, "start") if f"on {WORKER_IP}" in rest]
            epochs = [int(rest.split("/")[0]) for t, rest in trial_lines(text, "epoch")
                      if t in on_worker]
            return max(epochs, default=0)

        deadline = time.monotonic() + 600
        while victim_epoch() < 3:
            assert driver.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.3)
        cluster.kill("worker")
        driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    text = out.read_text()
    assert driver.returncode == 0, text
    victim = next(t for t, rest in trial_lines(text, "start") if f"on {WORKER_IP}" in rest)
    assert any(t == victim for t, _ in trial_lines(text, "retry")), text
    restart = [rest for t, rest in trial_lines(text, "start") if t == victim][-1]
    resumed = int(re.search(r"continuing from epoch (\d+)", restart).group(1))
    assert resumed >= 2 and f"on {HEAD_IP}" in restart
    rows = results.read_rows(second, "table1")
    assert set(rows["status"]) == {"done"} and rows["trial_id"].nunique() == 2
    assert not rows.duplicated(["trial_id", "metric"]).any()
    row = rows[rows["trial_id"] == victim].iloc[0]
    assert row["node_ip"] == HEAD_IP and row["resumed_from_epoch"] == resumed
    assert row["epochs_done"] == 12


# -- data-parallel trials ------------------------------------------------------------------


class FakeAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def reduce(tensor, reduction):
        return tensor


def test_ranks_share_every_minibatch_and_together_see_the_epoch():
    """Rank r of w trains on batch[r::w] of the same seeded permutation: the union of the
    ranks' examples at each step is the minibatch a single worker would see, for each seed of
    a pack (each its own permutation)."""
    x = torch.arange(50, dtype=torch.float32).reshape(50, 1)
    seeds = 2
    seen: dict[int, list[list[list[int]]]] = {}  # rank -> step -> seed -> example ids

    def record(rank):
        def step(ctx, xb, yb):
            assert xb.shape[0] == seeds  # (S, B, ...)
            seen.setdefault(rank, []).append([[int(v) for v in xb[k].flatten()] for k in range(seeds)])
            return {"reconstruction": torch.ones(seeds)}
        return step

    def context():
        return SimpleNamespace(accelerator=FakeAccelerator(), seeds=seeds, diverged={}, device_loop=False,
                               alive=torch.ones(seeds, dtype=torch.bool))

    def generators():
        return [training.generator(3), training.generator(4)]

    for rank in (None, 0, 1):
        shard = training.Shard() if rank is None else training.Shard(rank, 2)
        training.train_epoch(context(), record(rank), training.TrainingData(x), batch_size=10,
                             data_generators=generators(), epoch=0, shard=shard)
    assert len(seen[0]) == len(seen[1]) == len(seen[None]) == 5
    for single, a, b in zip(seen[None], seen[0], seen[1], strict=True):
        for k in range(seeds):
            assert len(a[k]) == len(b[k]) == 5 and not set(a[k]) & set(b[k])
            assert sorted(a[k] + b[k]) == sorted(single[k])
    assert [s[0] for s in seen[None]] != [s[1] for s in seen[None]]  # each seed its own order
    with pytest.raises(ValueError, match="labelled_generator"):
        labelled = torch.arange(10).expand(seeds, 10)
        training.train_epoch(context(), variants.variant("semi-supervised").step,
                             training.TrainingData(x, None, labelled, labelled),
                             batch_size=10, data_generators=generators(), epoch=0,
                             shard=training.Shard(0, 2))


def test_rank_streams():
    s = training.RandomStreams.from_seed(0)
    assert s.for_rank(0) == s
    r1 = s.for_rank(1)
    assert (r1.init, r1.data) == (s.init, s.data)  # same weights, same epoch order
    assert r1.prior != s.prior and r1.evaluation != s.evaluation  # own prior draws and noise
    assert s.labelled(0) != s.labelled(1)


def test_checkpoint_holds_every_rank_s_generators():
    states = {"data#0": torch.tensor([0]), "prior#1": torch.tensor([1]),
              "data#0@1": torch.tensor([2]), "prior#1@1": torch.tensor([3])}
    assert trial._rank_generators(states, 0) == {"data#0": states["data#0"], "prior#1": states["prior#1"]}
    assert trial._rank_generators(states, 1) == {"data#0": states["data#0@1"], "prior#1": states["prior#1@1"]}


@pytest.mark.ray
@pytest.mark.slow
def test_data_parallel_trial_on_two_gloo_workers(tmp_path, mnist_dir):
    """--workers-per-trial 2: Ray Train's TorchTrainer in a Tune trial, Accelerate's DDP over
    gloo. The ranks end with identical parameters, and since they split each minibatch of the
    single-worker run, the losses are those of a single worker up to rounding and the rank's
    own prior draws."""
    tmp = tempfile.mkdtemp(prefix="rd", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=tmp, AAE_TEST_NODE=f"dp-{secrets.token_hex(4)}")
    try:
        done = subprocess.run(
            [AAE_BENCH, "run", "table1", "--profile", "smoke", "--seeds", "1", "--dataset", "mnist",
             "--epochs", "2", "--workers-per-trial", "2", "--results", str(tmp_path),
             "--data-dir", str(mnist_dir), "--no-table"],
            env=env, capture_output=True, text=True, timeout=900)
    finally:
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get("AAE_TEST_NODE") == env["AAE_TEST_NODE"]:
                    proc.kill()
            except (psutil.Error, OSError):
                continue
        shutil.rmtree(tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(trial_lines(done.stdout, "epoch")) == 2  # one line per epoch, not per rank
    rows = results.read_rows(tmp_path, "table1")
    assert set(rows["status"]) == {"done"} and (rows["workers"] == 2).all()
    assert (rows["epochs_done"] == 2).all() and (rows["threads"] == 1).all()
    digests = json.loads(rows["param_digests"].iloc[0])
    assert len(digests) == 2 and digests[0] == digests[1]

    config = dataclasses.replace(grid_configs("table1", "smoke", 1, ("mnist",))[0], epochs=2)
    single = {r["metric"]: r["value"] for r in trial.run_trial(
        config, data=datasets.load("mnist", mnist_dir), threads=1)}
    ours = rows.set_index("metric")["value"]
    for metric in ("loss_reconstruction", "loss_generator", "parzen_ll"):
        assert ours[metric] == pytest.approx(single[metric], rel=0.01), metric


def _dp_rank(rank: int, port: int, variant: str, sync_heads: bool, mnist_dir: str, queue) -> None:
    """One rank of a 2-process gloo group, no Ray: the trial function as Ray Train runs it."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    if not sync_heads:  # what `training.prepare` was before it synced the parent's parameters
        def prepare(accelerator, net, opts):
            for name, child in list(net.named_children()):
                setattr(net, name, accelerator.prepare(child))
            for name in list(opts):
                opts[name] = accelerator.prepare(opts[name])
        training.prepare = prepare
    config = next(c for c in grid_configs("dim_reduction", "smoke", 1) if c.variant == variant)
    try:
        rows = trial.run_trial(config, data=datasets.load("mnist", mnist_dir), threads=1)
        queue.put((rank, json.loads(rows[0]["param_digests"]) if rows else None))
    except RuntimeError as exc:
        queue.put((rank, str(exc)))


def run_two_ranks(variant: str, sync_heads: bool, mnist_dir) -> dict:
    ctx = torch.multiprocessing.get_context("spawn")
    queue, port = ctx.Queue(), free_port("127.0.0.1")
    procs = [ctx.Process(target=_dp_rank, args=(r, port, variant, sync_heads, str(mnist_dir), queue))
             for r in range(2)]
    for p in procs:
        p.start()
    try:
        return dict(queue.get(timeout=600) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


@pytest.mark.slow
def test_cluster_heads_are_synced_across_ranks_and_a_drift_is_caught(mnist_dir):
    """Section 7's cluster heads belong to the parent module, outside every DDP wrapper: their
    gradients are averaged by hand. Without that the ranks drift apart, and the trial fails
    instead of reporting one rank's model."""
    synced = run_two_ranks("dim-reduction", True, mnist_dir)
    assert synced[1] is None and len(set(synced[0])) == 1
    drifted = run_two_ranks("dim-reduction", False, mnist_dir)
    assert all("parameters differ across data-parallel ranks" in drifted[r] for r in (0, 1))
