"""What the CUDA-only tests share: their marker and a count of the host's waits on the GPU.

Without a GPU every test marked here is skipped (CI and this project's machines); `pytest -m cuda`
runs exactly these where one exists (scripts/gpu_check.sh).
"""

import warnings

import pytest
import torch


def cuda(test):
    """CUDA-only: marked `cuda` and skipped without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def host_syncs(fn) -> int:
    """How many times fn makes the host wait on the GPU, a copy from the host included (CUDA's
    sync debug mode warns each time)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)
