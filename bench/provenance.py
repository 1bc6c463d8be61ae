"""Where a number came from: code commit, library versions, hardware. Goes into every row."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.cache
def code_version() -> dict[str, object]:
    """The commit the code was run from and whether the work tree had uncommitted changes."""
    commit = _git("rev-parse", "HEAD") or os.environ.get("AAE_BENCH_COMMIT", "unknown")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "aae_core", "bench"))
    return {"commit": commit, "dirty": dirty}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop provenance
        pass
    return ""


@functools.cache
def environment() -> dict[str, object]:
    """Versions and hardware of this process (one per trial process)."""
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "accelerate": _version("accelerate"),
        "numpy": _version("numpy"),
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "gpu": gpu_name(),
        "hostname": socket.gethostname(),
    }
