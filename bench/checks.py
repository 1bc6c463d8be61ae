"""The input check that both evaluator modules (metrics.py, parzen.py) need."""

from __future__ import annotations

import numpy as np


def check_positive_int(name: str, value) -> int:
    """A positive int (numpy integers too, bool not) as int; else ValueError in one line."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
