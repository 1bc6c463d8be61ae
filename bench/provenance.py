"""Where a number came from: code commit, library versions, hardware. Goes into every row."""

from __future__ import annotations

import functools
import hashlib
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


# The instruction sets that pick a BLAS or oneDNN kernel (and with it the order of a float32
# sum): two CPUs sold under one model name ("AMD EPYC") may differ in them.
_KERNEL_FLAGS = ("avx", "amx", "fma", "f16c", "sse", "vnni")


def cpu_flags() -> tuple[str, ...]:
    """The CPU's flags as /proc/cpuinfo lists them; () where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return tuple(line.split(":", 1)[1].split())
    except OSError:
        pass
    return ()


def cpu_features() -> str:
    """A short digest (12 hex) of the CPU's SIMD instruction sets (the /proc/cpuinfo flags that
    choose numerical kernels); "" where they cannot be read. Rows record it, and the training
    digest compares bit for bit only on the same features (bench.versions)."""
    flags = cpu_flags()
    if not flags:
        return ""
    kernels = sorted(f for f in flags if f.startswith(_KERNEL_FLAGS))
    return hashlib.sha256(" ".join(kernels).encode()).hexdigest()[:12]


def cpu_has_bf16() -> bool:
    """Whether oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16 or AMX; oneDNN also
    counts plain AVX-512, whose bf16 it emulates in vector units). Without them (AVX2 only)
    bf16 GEMMs are emulated: 33x slower than fp32 on an AVX2-only AMD EPYC (2026-12-07: a
    100 x 1000 x 1000 product, 85 ms against 2.6 ms on one thread)."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an unknown build: say nothing rather than guess
        return True


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop provenance
        pass
    return ""


def numerics() -> dict[str, str]:
    """What decides a float32 product's bits beside the code: the matmul precision in force now
    ("highest" is IEEE fp32; "high" / "medium" let CUDA use TF32 or bf16 passes) and the CUDA
    and cuDNN builds ("" on a CPU build). Read at each call: a trial pins the precision."""
    try:
        import torch

        cudnn = torch.backends.cudnn.version() if torch.version.cuda else None
        return {"matmul_precision": matmul_precision(),
                "cuda": torch.version.cuda or "", "cudnn": str(cudnn or "")}
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop provenance
        return {"matmul_precision": "", "cuda": "", "cudnn": ""}


def matmul_precision() -> str:
    """torch's float32 matmul precision ("highest", "high", "medium"). Where the backends were set
    apart through the per-backend API (torch >= 2.9), the legacy getter raises: then each
    backend's own setting ("cuda=tf32,mkldnn=none")."""
    import torch

    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return (f"cuda={torch.backends.cuda.matmul.fp32_precision},"
                f"mkldnn={torch.backends.mkldnn.matmul.fp32_precision}")


def environment() -> dict[str, object]:
    """Versions, hardware and numerics of this process (what every row records)."""
    return {**_static_environment(), **numerics()}


@functools.cache
def _static_environment() -> dict[str, object]:
    """What does not change during a process (looked up once)."""
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "accelerate": _version("accelerate"),
        "numpy": _version("numpy"),
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count() or 0,
        "gpu": gpu_name(),
        "hostname": socket.gethostname(),
    }
